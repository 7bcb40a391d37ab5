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


def test_spans_older_than_the_retention_are_left_out_and_named(store: Store, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    # The store would delete them on arrival: "imported 2 spans" and then none stored.
    year_ago = _NOW - 365 * 86_400 * 10**9
    old = json.loads(json.dumps(SPAN_FILE))
    old_span = dict(old["resourceSpans"][0]["scopeSpans"][0]["spans"][0], spanId="0a0b0c0d0e0f0102", name="old",
                    startTimeUnixNano=str(year_ago), endTimeUnixNano=str(year_ago + 10**9))
    old["resourceSpans"][0]["scopeSpans"][0]["spans"].append(old_span)
    path = tmp_path / "mixed.json"
    path.write_text(json.dumps(old))
    main(["import", "otlp-json", str(path), "--store", f"chdb://{store.url.path}?database={store.url.database}"])
    out, err = capsys.readouterr()
    assert "imported 1 spans" in out
    assert "left out 1 span(s) that started more than 90 days ago" in err and "--ttl-days 0" in err
    assert store.scalar("SELECT groupArray(SpanName) FROM otel_traces") == ["hello"]
    store.migrate(ttl_days=0)  # kept forever: the same file imports whole
    main(["import", "otlp-json", str(path), "--store", f"chdb://{store.url.path}?database={store.url.database}"])
    assert "imported 2 spans" in capsys.readouterr().out


@pytest.mark.parametrize("fmt", ["otlp-json", "who-and-when", "mast"])
def test_a_directory_with_nothing_to_import_is_an_error(fmt: str, store: Store, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "logs"
    empty.mkdir()
    (empty / "notes.txt").write_text("not a log")
    with pytest.raises(SystemExit) as exit_:
        main(["import", fmt, str(empty), "--store", f"chdb://{store.url.path}?database={store.url.database}"])
    assert exit_.value.code == 2
    assert f"{empty}: no *.json or *.jsonl" in capsys.readouterr().err
