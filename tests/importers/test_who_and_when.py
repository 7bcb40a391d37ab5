"""Who&When logs into span rows: one trace per file, speakers, steps, no labels, failures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from handoffs import conventions as c
from handoffs.cli import main
from handoffs.errors import UsageError
from handoffs.importers import read, split_speaker, write
from handoffs.store import Store

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "who-and-when" / "algorithm-generated"

AG2_RECORD = {
    "is_correct": False,
    "question": "How many studio albums did the band release before 2000?",
    "question_ID": "q-1",
    "level": "1",
    "ground_truth": "GROUND-TRUTH seven",
    "history": [
        {"content": "You are given a task and a plan.", "role": "assistant", "name": "Music_Expert"},
        {"content": "```python\nprint(count_albums())\n```", "role": "user", "name": "Data_Expert"},
        {"content": "exitcode: 1 (execution failed)\nTraceback (most recent call last):", "role": "user",
         "name": "Computer_terminal"},
        {"content": "The answer is 9. TERMINATE", "role": "user", "name": "Data_Expert"},
    ],
    "mistake_agent": "Data_Expert",
    "mistake_step": "1",
    "mistake_reason": "LABEL-ONLY reason text that must never reach the store",
    "system_prompt": {"Music_Expert": "You are a music expert."},
}

MAGENTIC_RECORD = {
    "question": "Find the paper's first author.",
    "history": [
        {"content": "Find the paper's first author.", "role": "human"},
        {"content": "Initial plan: search the web.", "role": "Orchestrator (thought)"},
        {"content": "Please search for the paper.", "role": "Orchestrator (-> WebSurfer)"},
        {"content": "I typed 'paper' into the search bar.", "role": "WebSurfer"},
        {"content": "FINAL ANSWER: Smith", "role": "Orchestrator (final answer)"},
    ],
}


def _write(path: Path, record: object) -> Path:
    path.write_text(json.dumps(record), encoding="utf-8")
    return path


def _spans(store: Store, source_id: str) -> list[dict]:
    return store.query(
        "SELECT SpanId, ParentSpanId, SpanName, ResourceAttributes AS res, SpanAttributes AS attrs "
        "FROM otel_traces WHERE ResourceAttributes['handoffs.source_id'] = {s:String} ORDER BY Timestamp",
        {"s": source_id},
    )


def test_split_speaker_keeps_the_agent_not_the_message_kind() -> None:
    assert split_speaker("Orchestrator (-> WebSurfer)") == ("Orchestrator", "WebSurfer")
    assert split_speaker("Orchestrator (thought)") == ("Orchestrator", "")
    assert split_speaker("Movie_Expert") == ("Movie_Expert", "")
    assert split_speaker("") == ("", "")


def test_a_file_becomes_one_run_and_one_span_per_message(store: Store, tmp_path: Path) -> None:
    result = write(store, read("who-and-when", [_write(tmp_path / "41.json", AG2_RECORD)]))
    assert (result.conversations, result.spans) == (1, 5)
    spans = _spans(store, "41")
    run, messages = spans[0], spans[1:]
    assert dict(run["attrs"])[c.SPAN_TYPE] == c.SpanType.RUN.value
    assert dict(run["attrs"])[c.TASK] == AG2_RECORD["question"]
    assert all(m["ParentSpanId"] == run["SpanId"] for m in messages)
    attrs = [dict(m["attrs"]) for m in messages]
    assert [a[c.STEP] for a in attrs] == ["0", "1", "2", "3"]
    assert [a[c.GEN_AI_AGENT_NAME] for a in attrs] == [
        "Music_Expert", "Data_Expert", "Computer_terminal", "Data_Expert"]
    assert [a[c.MESSAGE_ROLE] for a in attrs] == ["assistant", "user", "user", "user"]
    assert attrs[2][c.MESSAGE_CONTENT].startswith("exitcode: 1")
    res = dict(messages[0]["res"])
    assert res[c.RESOURCE_SOURCE_ID] == "41" and res[c.RESOURCE_SOURCE_FORMAT] == "who-and-when"
    runs = store.query("SELECT source_id FROM handoffs_runs")
    assert runs == [{"source_id": "41"}]


def test_labels_are_not_imported(store: Store, tmp_path: Path) -> None:
    write(store, read("who-and-when", [_write(tmp_path / "7.json", AG2_RECORD)]))
    text = json.dumps(_spans(store, "7"), default=str)
    assert "LABEL-ONLY" not in text and "mistake" not in text
    assert "GROUND-TRUTH" not in text


def test_magentic_one_speaker_is_in_the_role(store: Store, tmp_path: Path) -> None:
    write(store, read("who-and-when", [_write(tmp_path / "m1.json", MAGENTIC_RECORD)]))
    attrs = [dict(s["attrs"]) for s in _spans(store, "m1")[1:]]
    assert [a[c.GEN_AI_AGENT_NAME] for a in attrs] == [
        "human", "Orchestrator", "Orchestrator", "WebSurfer", "Orchestrator"]
    assert attrs[2][c.TARGET_AGENT] == "WebSurfer"
    assert attrs[2][c.MESSAGE_ROLE] == "Orchestrator (-> WebSurfer)"
    assert c.TARGET_AGENT not in attrs[1]


def test_importing_twice_stores_each_record_once(store: Store, tmp_path: Path) -> None:
    path = _write(tmp_path / "9.json", AG2_RECORD)
    write(store, read("who-and-when", [path]))
    again = write(store, read("who-and-when", [path, path]))
    assert (again.conversations, again.skipped) == (0, 2)
    assert store.scalar("SELECT count() FROM otel_traces") == 5


def test_small_batches_store_everything(store: Store, tmp_path: Path) -> None:
    paths = [_write(tmp_path / f"{i}.json", AG2_RECORD) for i in range(5)]
    result = write(store, read("who-and-when", paths), batch_rows=3)
    assert result.conversations == 5
    assert store.scalar("SELECT uniqExact(TraceId) FROM otel_traces") == 5


def test_a_broken_file_is_named_and_earlier_files_stay(store: Store, tmp_path: Path) -> None:
    good = _write(tmp_path / "1.json", AG2_RECORD)
    bad = tmp_path / "2.json"
    bad.write_text('{"history": [', encoding="utf-8")
    with pytest.raises(UsageError, match="2.json"):
        write(store, read("who-and-when", [good, bad]))
    assert store.scalar("SELECT count() FROM otel_traces") == 5


def test_cli_exits_2_with_one_line_naming_the_file(store: Store, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    url = f"chdb://{store.url.path}?database={store.url.database}"
    good = _write(tmp_path / "1.json", AG2_RECORD)
    bad = _write(tmp_path / "2.json", {"history": "not a list"})
    with pytest.raises(SystemExit) as exit_:
        main(["import", "who-and-when", str(good), str(bad), "--store", url])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "2.json" in err[0]
    assert err[0].endswith("(1 trace(s) before it were imported; importing again stores them once)")
    assert store.scalar("SELECT uniqExact(TraceId) FROM otel_traces") == 1


def test_cli_imports_a_directory(store: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"chdb://{store.url.path}?database={store.url.database}"
    _write(tmp_path / "1.json", AG2_RECORD)
    _write(tmp_path / "2.json", MAGENTIC_RECORD)
    main(["import", "who-and-when", str(tmp_path), "--store", url])
    assert "imported 2 traces" in capsys.readouterr().out
    assert sorted(r["s"] for r in store.query(
        "SELECT DISTINCT ResourceAttributes['handoffs.source_id'] AS s FROM otel_traces")) == ["1", "2"]


@pytest.mark.skipif(not DATA.is_dir(), reason="the shared Who&When split is not on this machine")
def test_the_shared_split_imports_with_its_own_ids_and_steps(store: Store) -> None:
    write(store, read("who-and-when", [DATA]))
    rows = store.query(
        "SELECT ResourceAttributes['handoffs.source_id'] AS s, count() AS n, "
        "max(toInt32OrZero(SpanAttributes['handoff.step'])) AS last "
        "FROM otel_traces WHERE SpanAttributes['handoff.span.type'] = 'message' GROUP BY s")
    assert len(rows) == len(list(DATA.glob("*.json")))
    for row in rows:
        history = json.loads((DATA / f"{row['s']}.json").read_text())["history"]
        assert row["n"] == len(history) and row["last"] == len(history) - 1


def test_files_numbered_per_folder_are_different_records(store: Store, tmp_path: Path) -> None:
    # The dataset numbers its files per folder: Algorithm-Generated/1.json and Hand-Crafted/1.json.
    (tmp_path / "Algorithm-Generated").mkdir()
    (tmp_path / "Hand-Crafted").mkdir()
    algorithm = _write(tmp_path / "Algorithm-Generated" / "1.json", AG2_RECORD)
    hand = _write(tmp_path / "Hand-Crafted" / "1.json", MAGENTIC_RECORD)
    result = write(store, read("who-and-when", [tmp_path]))
    assert (result.conversations, result.skipped) == (2, 0)
    # Both keep the dataset's own id, which labels are joined on; the run says which folder.
    runs = store.query("SELECT run_id, source_id, name FROM handoffs_runs FINAL ORDER BY run_id")
    assert runs == [{"run_id": "who-and-when:Algorithm-Generated/1", "source_id": "1", "name": "Algorithm-Generated/1"},
                    {"run_id": "who-and-when:Hand-Crafted/1", "source_id": "1", "name": "Hand-Crafted/1"}]
    # Named another way on the command line, they are the same records: stored once.
    again = write(store, read("who-and-when", [hand, algorithm.parent]))
    assert (again.conversations, again.skipped) == (0, 2)
    assert store.scalar("SELECT count() FROM otel_traces") == 5 + 6
