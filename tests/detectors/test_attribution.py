"""Root-cause attribution: structure for SDK traces, the text models' interface for message logs."""

from __future__ import annotations

import pytest

from handoffs import sdk
from handoffs.detectors import attribution, detect, textual
from handoffs.detectors.textual import Message, TextFinding
from handoffs.importers.conversation import Conversation, ImportedMessage, write
from handoffs.store import Store


def test_structural_root_cause_is_the_cascade_root(store: Store, traced) -> None:
    with traced():
        with sdk.run("cascade") as run:
            with sdk.agent("sup", role="supervisor") as sup:
                with sup.delegate("planner", task="plan") as d1:
                    with sdk.agent("planner") as p:
                        with p.tool("estimate", {"x": 1}) as root:
                            root.error("negative duration")
                        out = d1.output("plan", tokens=5, unit_complete=True)
                    d1.decision("accepted", output=out)
                with sup.delegate("coder", task="code", consumes=[out]) as d2:
                    with sdk.agent("coder", consumes=[out]) as c:
                        with c.tool("build", {"y": 2}) as later:
                            later.error("schedule overflow")
                        d2.output("code", tokens=5, unit_complete=True)
            run.terminate("done", success_claimed=True, agent="sup")
        with sdk.run("overwrite-only") as run2:
            with sdk.agent("sup", role="supervisor") as sup:
                with sup.delegate("writer", task="w") as d:
                    with sdk.agent("writer"):
                        o = d.output("draft", tokens=3)
                    step = d.decision("overwrote", output=o, result="mine")
            run2.terminate("done", success_claimed=True, agent="sup")
        with sdk.run("clean") as run3:
            with sdk.agent("solo"):
                pass
            run3.terminate("done", success_claimed=True)
    rows = {r["trace_id"]: r for r in attribution.attribute(store)}
    assert (rows[root.trace_id]["agent"], rows[root.trace_id]["step"]) == ("planner", root.step)
    assert later.trace_id == root.trace_id
    assert (rows[d.trace_id]["agent"], rows[d.trace_id]["step"]) == ("sup", step)
    assert run3.trace_id not in rows


@pytest.fixture
def fake_text_models(monkeypatch: pytest.MonkeyPatch) -> list[list[Message]]:
    """Stand-ins with the text models' interface: blame the first message that says 'error'."""
    seen: list[list[Message]] = []

    def attribute_messages(messages: list[Message]) -> tuple[str, int, float]:
        seen.append(messages)
        first = next(m for m in messages if "error" in m.content)
        return first.agent, first.step, 0.7

    def classify_messages(messages: list[Message]) -> list[TextFinding]:
        return [TextFinding("FM-3.1", 0.6, m.step, m.agent, "stopped after an error")
                for m in messages if "TERMINATE" in m.content]

    monkeypatch.setattr(textual, "attribute_messages", attribute_messages)
    monkeypatch.setattr(textual, "classify_messages", classify_messages)
    return seen


def test_message_logs_go_to_the_text_models(store: Store, fake_text_models: list[list[Message]]) -> None:
    conv = Conversation("rec-7", "who-and-when", [
        ImportedMessage("Planner", "assistant", "plan: fetch the page"),
        ImportedMessage("WebSurfer", "assistant", "error: 404 on the page"),
        ImportedMessage("Orchestrator", "assistant", "TERMINATE"),
    ], system="magentic-one")
    write(store, [conv])
    [row] = attribution.attribute(store)
    assert row == {"trace_id": conv.trace_id, "source_id": "rec-7", "agent": "WebSurfer", "step": 1,
                   "confidence": 0.7}
    assert [m.step for m in fake_text_models[0]] == [0, 1, 2]
    [tf] = detect(store)
    assert tf.source_id == "rec-7"
    assert [(f.code, f.agent, f.step, f.detector) for f in tf.findings] == [("FM-3.1", "Orchestrator", 2, "textual")]
