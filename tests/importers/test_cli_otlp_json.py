"""``handoffs import otlp-json`` hands the files to the OTLP JSON loader and stores its rows."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from handoffs.cli import main
from handoffs.store import Store

# Start now: the span table's retention TTL drops rows older than 90 days.
_NOW = time.time_ns()
SPAN_FILE = {"resourceSpans": [{
    "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "svc"}}]},
    "scopeSpans": [{"scope": {"name": "s"}, "spans": [{
        "traceId": "0102030405060708090a0b0c0d0e0f10", "spanId": "0102030405060708", "name": "hello",
        "kind": 1, "startTimeUnixNano": str(_NOW), "endTimeUnixNano": str(_NOW + 10**9)}]}],
}]}


def test_otlp_json_files_are_imported(store: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "spans.json"
    path.write_text(json.dumps(SPAN_FILE))
    main(["import", "otlp-json", str(path), "--store", f"chdb://{store.url.path}?database={store.url.database}"])
    assert "imported 1 spans" in capsys.readouterr().out
    assert store.scalar("SELECT SpanName FROM otel_traces") == "hello"
