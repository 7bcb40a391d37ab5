"""``handoffs import otlp-json`` hands the files to the OTLP JSON loader and stores its rows."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable
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
    store.migrate(ttl_days=0)  # kept forever: the same file imports the span left out
    main(["import", "otlp-json", str(path), "--store", f"chdb://{store.url.path}?database={store.url.database}"])
    assert "imported 1 spans from 1 path(s), 1 already stored" in capsys.readouterr().out
    assert store.scalar("SELECT arraySort(groupArray(SpanName)) FROM otel_traces") == ["hello", "old"]


@pytest.mark.parametrize("fmt", ["otlp-json", "who-and-when", "mast"])
def test_a_directory_with_nothing_to_import_is_an_error(fmt: str, store: Store, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "logs"
    empty.mkdir()
    (empty / "notes.txt").write_text("not a log")
    with pytest.raises(SystemExit) as exit_:
        main(["import", fmt, str(empty), "--store", f"chdb://{store.url.path}?database={store.url.database}"])
    assert exit_.value.code == 2
    assert f"{empty}: no *.json" in capsys.readouterr().err


def _spans_file(path: Path, trace: str, span_numbers: range) -> Path:
    """An OTLP/JSON file of one trace whose spans have ids 1, 2, ... as given."""
    spans = [{"traceId": trace, "spanId": f"{n:016x}", "name": f"s{n}", "kind": 1,
              "startTimeUnixNano": str(_NOW), "endTimeUnixNano": str(_NOW + 10**9)} for n in span_numbers]
    path.write_text(json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": spans}]}]}))
    return path


def test_a_broken_file_keeps_the_files_before_it_and_says_how_many(
        store: Store, run_import: Callable[..., int], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = _spans_file(tmp_path / "good.json", "a" * 32, range(1, 4))
    broken = tmp_path / "broken.json"
    broken.write_text(good.read_text()[:200])  # truncated mid-file
    assert run_import("otlp-json", good, broken) == 2
    assert store.scalar("SELECT count() FROM otel_traces") == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{broken}: not OTLP/JSON" in err[0]
    assert "(3 span(s) before it were imported; importing again stores them once)" in err[0]


def test_a_bad_line_keeps_the_lines_before_it(store: Store, run_import: Callable[..., int], tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    lines = [_spans_file(tmp_path / f"{n}.json", f"{n:032x}", range(1, 3)).read_text() for n in (1, 2)]
    path = tmp_path / "run.jsonl"
    path.write_text("\n".join([*lines, '{"resourceSpans": [', lines[0]]) + "\n")
    assert run_import("otlp-json", path) == 2
    assert store.scalar("SELECT uniqExact(TraceId) FROM otel_traces") == 2
    err = capsys.readouterr().err
    assert f"{path}: not OTLP/JSON (Expecting value: line 3 column 20)" in err
    assert "(4 span(s) before it were imported" in err


def test_importing_again_stores_each_span_once(store: Store, run_import: Callable[..., int], tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    first = _spans_file(tmp_path / "first.json", "b" * 32, range(1, 4))
    assert run_import("otlp-json", first, first) == 0  # the same file twice in one import
    assert "imported 3 spans from 2 path(s), 3 already stored" in capsys.readouterr().out
    assert run_import("otlp-json", first) == 0
    assert "imported 0 spans from 1 path(s), 3 already stored" in capsys.readouterr().out
    overlapping = _spans_file(tmp_path / "more.json", "b" * 32, range(2, 6))  # spans 2-3 again, 4-5 new
    assert run_import("otlp-json", overlapping) == 0
    assert "imported 2 spans from 1 path(s), 2 already stored" in capsys.readouterr().out
    assert store.scalar("SELECT count() FROM otel_traces") == 5
    assert store.scalar("SELECT uniqExact(SpanId) FROM otel_traces") == 5


def _with_ids(path: Path, ids: dict[str, str]) -> Path:
    """``path`` with the ids of its first span replaced."""
    doc = json.loads(path.read_text())
    doc["resourceSpans"][0]["scopeSpans"][0]["spans"][0].update(ids)
    path.write_text(json.dumps(doc))
    return path


def test_a_file_with_no_valid_span_is_an_error_saying_why(store: Store, run_import: Callable[..., int], tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    # As protobuf's MessageToJson writes it: base64 ids where OTLP/JSON has hex.
    path = _with_ids(_spans_file(tmp_path / "base64.json", "c" * 32, range(1, 2)),
                     {"traceId": "zMzMzMzMzMzMzMzMzMzMzA==", "spanId": "AAAAAAAAAAE="})
    assert run_import("otlp-json", path) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"handoffs: error: {path}: none of its 1 span(s) is valid: span #0: trace id and span id "
                   "are not hex ('zMzMzMzMzMzMzMzMzMzMzA=='): OTLP/JSON ids are hex strings, not base64; "
                   "fix or remove this file"]
    assert store.scalar("SELECT count() FROM otel_traces") == 0


def test_invalid_spans_beside_valid_ones_are_left_out_with_a_warning(
        store: Store, run_import: Callable[..., int], tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = _with_ids(_spans_file(tmp_path / "mixed.json", "d" * 32, range(1, 3)), {"traceId": "abc"})
    assert run_import("otlp-json", path) == 0
    assert "1 invalid span(s) left out: span #0 0000000000000001: trace id is not hex ('abc')" in caplog.text
    assert store.scalar("SELECT groupArray(SpanName) FROM otel_traces") == ["s2"]


def _stdin(monkeypatch: pytest.MonkeyPatch, data: bytes) -> None:
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(data)))


def test_otlp_json_is_read_from_standard_input_as_dash(store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    url = f"chdb://{store.url.path}?database={store.url.database}"
    lines = json.dumps(SPAN_FILE) + "\n" + json.dumps(SPAN_FILE).replace("0102030405060708\"", "0a0b0c0d0e0f0102\"")
    _stdin(monkeypatch, lines.encode())
    main(["import", "otlp-json", "-", "--store", url])
    assert "imported 2 spans from 1 path(s)" in capsys.readouterr().out
    assert store.scalar("SELECT groupUniqArray(ResourceAttributes['handoffs.source_id']) FROM otel_traces") == ["stdin"]
    _stdin(monkeypatch, b"  \n")
    with pytest.raises(SystemExit) as exit_:
        main(["import", "otlp-json", "-", "--store", url])
    assert exit_.value.code == 2 and "standard input (-): nothing was read" in capsys.readouterr().err


@pytest.mark.parametrize("fmt", ["who-and-when", "mast"])
def test_formats_named_by_their_files_refuse_standard_input(fmt: str, store: Store, monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    _stdin(monkeypatch, b"[]")
    with pytest.raises(SystemExit) as exit_:
        main(["import", fmt, "-", "--store", f"chdb://{store.url.path}?database={store.url.database}"])
    assert exit_.value.code == 2
    assert "records are named by their file" in capsys.readouterr().err
    assert store.scalar("SELECT count() FROM otel_traces") == 0
