"""MAST / MAD records into span rows: trajectory splitting per system, ids, no labels."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from handoffs import conventions as c
from handoffs.errors import UsageError
from handoffs.importers import mast, read, write
from handoffs.store import Store

AG2_TRAJECTORY = """admin (to chat_manager):

Solve: what is 12 * 7?

--------------------------------------------------------------------------------
Planner (to chat_manager):

Plan: multiply 12 by 7 with code.

--------------------------------------------------------------------------------
Coder (to chat_manager):

```python
print(12 * 7)
```

--------------------------------------------------------------------------------
Executor (to chat_manager):

exitcode: 0 (execution succeeded)
Code output: 84
"""

MAGENTIC_TRAJECTORY = """Task: find the release year.
---------- user ----------
Find the release year of the film.
---------- MagenticOneOrchestrator ----------
We need to search the web.
---------- Orchestrator (-> WebSurfer) ----------
Please search for the film.
---------- TextMessage (WebSurfer) ----------
I typed the title into Bing.
"""

CHATDEV_TRAJECTORY = """ChatDev configuration: gpt-4o
**Chief Executive Officer<->Chief Product Officer on : DemandAnalysis, turn 0**
We should build a web app.
**Chief Product Officer<->Chief Executive Officer on : DemandAnalysis, turn 0**
<INFO> Web application
**Programmer<->Code Reviewer on : CodeReview, turn 1**
Here is the code.
"""

COLON_TRAJECTORY = """Planner: First, gather the data.
Note: this line is not a speaker.
Navigator: I found the file at src/app.py.
Planner: Good. Now edit it.
Navigator: Done.
"""


def _record(trajectory: str, trace_id: object = 17, mas_name: str = "AG2") -> dict:
    return {"mas_name": mas_name, "llm_name": "gpt-4o", "benchmark_name": "GSM-Plus",
            "trace_id": trace_id, "trace": {"trajectory": trajectory},
            "mast_annotation": {"1.1": 0, "1.3": 1, "3.3": 1}}


def test_ag2_trajectory_splits_at_to_chat_manager() -> None:
    messages, marker = mast.split_trajectory(AG2_TRAJECTORY)
    assert marker == "ag2"
    assert [m.agent for m in messages] == ["admin", "Planner", "Coder", "Executor"]
    assert messages[0].target == "chat_manager"
    assert messages[1].content == "Plan: multiply 12 by 7 with code."
    assert messages[3].content.startswith("exitcode: 0")


def test_magentic_one_console_keeps_the_agent_not_the_kind() -> None:
    messages, marker = mast.split_trajectory(MAGENTIC_TRAJECTORY)
    assert marker == "console"
    assert [m.agent for m in messages] == [
        mast.PREAMBLE_AGENT, "user", "MagenticOneOrchestrator", "Orchestrator", "WebSurfer"]
    assert messages[0].role == mast.PREAMBLE_ROLE
    assert messages[3].target == "WebSurfer"


def test_chatdev_phase_headers_name_speaker_and_partner() -> None:
    messages, marker = mast.split_trajectory(CHATDEV_TRAJECTORY)
    assert marker == "chatdev"
    assert [m.agent for m in messages[1:]] == [
        "Chief Executive Officer", "Chief Product Officer", "Programmer"]
    assert messages[1].target == "Chief Product Officer"


def test_generic_name_colon_needs_a_speaker_seen_twice() -> None:
    messages, marker = mast.split_trajectory(COLON_TRAJECTORY)
    assert marker == "colon"
    assert [m.agent for m in messages] == ["Planner", "Navigator", "Planner", "Navigator"]
    assert "Note: this line is not a speaker." in messages[0].content


def test_text_without_markers_stays_one_message() -> None:
    messages, marker = mast.split_trajectory("just some prose\nwith two lines")
    assert marker == "" and len(messages) == 1
    assert messages[0].content == "just some prose\nwith two lines"


def test_records_keep_their_trace_id_and_system(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "mad.json"
    path.write_text(json.dumps([_record(AG2_TRAJECTORY, 17), _record(COLON_TRAJECTORY, 17, "HyperAgent")]))
    result = write(store, read("mast", [path]))
    assert result.conversations == 2  # the same id in two systems is two traces
    rows = store.query(
        "SELECT ResourceAttributes['handoffs.source_id'] AS s, ResourceAttributes['handoffs.system'] AS sys, "
        "groupArray(SpanAttributes['handoff.step']) AS steps FROM otel_traces "
        "WHERE SpanAttributes['handoff.span.type'] = 'message' GROUP BY s, sys ORDER BY sys")
    assert [(r["s"], r["sys"]) for r in rows] == [("17", "AG2"), ("17", "HyperAgent")]
    assert sorted(rows[0]["steps"]) == ["0", "1", "2", "3"]
    text = json.dumps(store.query("SELECT SpanAttributes AS a FROM otel_traces"), default=str)
    assert "mast_annotation" not in text and '"1.3"' not in text
    model = store.scalar("SELECT SpanAttributes[{k:String}] FROM otel_traces WHERE "
                         "SpanAttributes['handoff.span.type'] = 'run' LIMIT 1", {"k": c.GEN_AI_REQUEST_MODEL})
    assert model == "gpt-4o"


def test_jsonl_and_missing_ids(tmp_path: Path) -> None:
    path = tmp_path / "part.jsonl"
    record = _record(AG2_TRAJECTORY, None)
    path.write_text("\n".join(json.dumps(r) for r in (record, record)) + "\n")
    assert [conv.source_id for conv in read("mast", [path])] == ["part:0", "part:1"]


def test_a_trajectory_given_as_plain_text(tmp_path: Path) -> None:
    path = tmp_path / "one.json"
    path.write_text(json.dumps({"mas_name": "AG2", "trace_id": "x1", "trace": AG2_TRAJECTORY}))
    (conv,) = read("mast", [path])
    assert conv.source_id == "x1" and len(conv.messages) == 4


def test_a_record_without_a_trajectory_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text(json.dumps([{"mas_name": "AG2", "trace": {"steps": []}}]))
    with pytest.raises(UsageError, match="broken.json"):
        list(read("mast", [path]))


def test_chatdev_log_lines_name_the_speaker_before_the_colon() -> None:
    text = ("[2024-05-01 10:00:00 INFO] Flow start\n"
            "[2024-05-01 10:00:01 INFO] Programmer: **Programmer<->Chief Technology Officer on : Coding, turn 0**\n"
            "Here is main.py.\n"
            "[2024-05-01 10:00:02 INFO] Code Reviewer: **Code Reviewer<->Programmer on : CodeReview, turn 0**\n"
            "The import is missing.\n")
    messages, marker = mast.split_trajectory(text)
    assert marker == "chatdev"
    assert [m.agent for m in messages[1:]] == ["Programmer", "Code Reviewer"]
    assert messages[2].content == "The import is missing."


def test_a_trajectory_that_is_a_list_of_messages() -> None:
    text = str([{"content": "Solve 2+2.", "role": "user", "name": "mathproxyagent"},
                {"content": "4", "role": "assistant", "name": "assistant"}])
    messages, marker = mast.split_trajectory(text)
    assert marker == "messages"
    assert [(m.agent, m.content) for m in messages] == [("mathproxyagent", "Solve 2+2."), ("assistant", "4")]


def test_one_systems_records_of_other_benchmarks_or_models_are_other_records(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "mad.json"
    path.write_text(json.dumps([_record(AG2_TRAJECTORY, 1), dict(_record(COLON_TRAJECTORY, 1), benchmark_name="MMLU"),
                                dict(_record(CHATDEV_TRAJECTORY, 1), llm_name="claude")]))
    result = write(store, read("mast", [path]))
    assert (result.conversations, result.skipped) == (3, 0)
    runs = store.query("SELECT run_id, source_id FROM handoffs_runs FINAL ORDER BY run_id")
    assert runs == [{"run_id": "mast:AG2:GSM-Plus/claude/1", "source_id": "1"},
                    {"run_id": "mast:AG2:GSM-Plus/gpt-4o/1", "source_id": "1"},
                    {"run_id": "mast:AG2:MMLU/gpt-4o/1", "source_id": "1"}]
    again = write(store, read("mast", [path]))  # the same records: stored once
    assert (again.conversations, again.skipped) == (0, 3)


def test_a_trajectory_nested_too_deeply_for_json_stays_text(tmp_path: Path) -> None:
    path = tmp_path / "deep.json"
    path.write_text(json.dumps({"mas_name": "AG2", "trace_id": 1, "trace": {"trajectory": "[" * 5000}}))
    (conv,) = read("mast", [path])
    assert [(m.role, len(m.content)) for m in conv.messages] == [(mast.TRAJECTORY_ROLE, 5000)]


def test_a_truncated_file_is_reported_where_it_ends(tmp_path: Path) -> None:
    path = tmp_path / "cut.json"
    path.write_text('{\n "mas_name": "AG2",\n "trace": {\n  "trajec')
    with pytest.raises(UsageError, match=r"cut.json: not a MAST/MAD record file \(Unterminated string "
                                         r"starting at: line 4 column 3\)"):
        list(read("mast", [path]))
