"""``handoffs import otlp-json``: OTLP/JSON files through the collector's decoder into the store."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from collector_helpers import request, to_otlp_json

from handoffs import conventions as conv
from handoffs.cli import cli
from handoffs.errors import UsageError
from handoffs.importers import otlp_json
from handoffs.store import Store


def _sources(table) -> list[str]:
    return [dict(r)[conv.RESOURCE_SOURCE_ID] for r in table.column("ResourceAttributes").to_pylist()]


def test_files_and_json_lines_keep_their_stem_as_source_id(tmp_path: Path) -> None:
    (tmp_path / "run-a.json").write_bytes(to_otlp_json(request(20, 0, 3)))
    labelled = request(21, 0, 2)
    labelled.resource_spans[0].resource.attributes.add(key=conv.RESOURCE_SOURCE_ID).value.string_value = "own"
    lines = [to_otlp_json(request(22, 0, 2, bad={1})), to_otlp_json(labelled)]
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "run-b.jsonl").write_bytes(b"\n".join(lines) + b"\n\n")
    (tmp_path / "sub" / "notes.txt").write_text("ignored: not an OTLP/JSON suffix")
    tables = list(otlp_json.load([tmp_path]))
    assert len(tables) == 1 and tables[0].num_rows == 3 + 1 + 2
    assert sorted(set(_sources(tables[0]))) == ["own", "run-a", "run-b"]
    formats = {dict(r)[conv.RESOURCE_SOURCE_FORMAT] for r in tables[0].column("ResourceAttributes").to_pylist()}
    assert formats == {"otlp-json"}


@pytest.mark.parametrize("content", [b"{not json", b"[1, 2]", b'{"resourceSpans": 7}'])
def test_an_unreadable_file_is_named_in_a_usage_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "broken.json"
    path.write_bytes(content)
    with pytest.raises(UsageError, match="broken.json"):
        list(otlp_json.load([path]))


@pytest.mark.parametrize("content", [
    b'{"question": "who failed?", "history": []}',  # a Who&When log given to the wrong importer
    b"{}",
    b'{"resourceSpans": []}\n{"spans": []}\n',  # JSON lines: the second is not a request
])
def test_json_that_is_not_a_trace_export_is_refused_not_imported_as_nothing(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "other.json"
    path.write_bytes(content)
    with pytest.raises(UsageError, match=r"other.json(:2)?: not OTLP/JSON \(no resourceSpans\)"):
        list(otlp_json.load([path]))


def test_cli_import_stores_the_spans(store: Store, tmp_path: Path) -> None:
    (tmp_path / "t1.json").write_bytes(to_otlp_json(request(23, 0, 4)))
    url = f"chdb://{store.url.path}?database={store.url.database}"
    result = CliRunner().invoke(cli, ["import", "otlp-json", str(tmp_path / "t1.json"), "--store", url])
    assert result.exit_code == 0, result.output
    assert "imported 4 spans" in result.output
    rows = store.query("SELECT ResourceAttributes[{k:String}] AS s FROM otel_traces", {"k": conv.RESOURCE_SOURCE_ID})
    assert [r["s"] for r in rows] == ["t1"] * 4


def test_spans_of_other_instrumentations_are_normalised_as_at_the_collector(tmp_path: Path) -> None:
    # An OpenLLMetry-style hand-off span, as another instrumentation would export it.
    payload = (b'{"resourceSpans": [{"resource": {"attributes": [{"key": "service.name", '
               b'"value": {"stringValue": "team"}}]}, "scopeSpans": [{"scope": {"name": "traceloop"}, '
               b'"spans": [{"traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174", '
               b'"name": "handoff", "kind": 1, "startTimeUnixNano": "1700000000000000000", '
               b'"endTimeUnixNano": "1700000001000000000", "attributes": ['
               b'{"key": "gen_ai.operation.name", "value": {"stringValue": "handoff"}}, '
               b'{"key": "gen_ai.handoff.from_agent", "value": {"stringValue": "triage"}}, '
               b'{"key": "gen_ai.handoff.to_agent", "value": {"stringValue": "billing"}}]}]}]}]}')
    (tmp_path / "openllmetry.json").write_bytes(payload)
    (table,) = list(otlp_json.load([tmp_path]))
    attrs = dict(table.column("SpanAttributes")[0].as_py())
    assert attrs["gen_ai.handoff.from_agent"] == "triage"  # the original is kept
    assert attrs[conv.SPAN_TYPE] == "delegation"
    assert (attrs[conv.SOURCE_AGENT], attrs[conv.TARGET_AGENT]) == ("triage", "billing")
