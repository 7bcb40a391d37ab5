"""LangGraph, run for real on LangChain's scripted chat models: a supervisor node hands off to
a tool-calling ReAct worker by a transfer tool call and Command(goto=); answering over the
worker is an overwrite, a recursion limit right after the hand-off premature termination."""

from __future__ import annotations

import warnings

import pytest

from handoffs import taxonomy as t

from .conftest import delegations, detected_codes, example, terminations, tools

pytest.importorskip("langgraph.prebuilt", reason="LangGraph is not installed (pip install 'handoffs[langgraph]')")
pytestmark = [pytest.mark.frameworks,
              pytest.mark.filterwarnings("ignore:create_react_agent has been moved")]


def _example():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return example("langgraph_team")


def test_supervisor_answering_over_the_worker_is_an_overwrite(traced):
    ex = _example()
    state = ex.main("overwrite")
    assert state["messages"][-1].content == ex.REWRITE

    rows = delegations(traced)
    # The transfer tool call and the Command(goto=) that follows it are one hand-off.
    assert [(r["source"], r["target"]) for r in rows] == [("supervisor", "researcher")]
    assert rows[0]["outputs"] == [ex.RESEARCH]
    assert rows[0]["decisions"] == ["overwrote"] and rows[0]["status"] == "completed"
    assert tools(traced) == [{"tool": "search", "agent": "researcher", "failed": False}]
    assert t.OVERWRITE in detected_codes(traced)


def test_supervisor_passing_the_answer_on_accepts_it(traced):
    ex = _example()
    ex.main("accept")
    rows = delegations(traced)
    assert rows[0]["decisions"] == ["accepted"]
    codes = detected_codes(traced)
    assert t.OVERWRITE not in codes and t.PREMATURE_TERMINATION not in codes


def test_recursion_limit_after_the_handoff_is_premature_termination(traced):
    from langgraph.errors import GraphRecursionError

    ex = _example()
    assert isinstance(ex.main("open"), GraphRecursionError)

    rows = delegations(traced)
    assert [(r["source"], r["target"], r["status"]) for r in rows] == [("supervisor", "researcher", "open")]
    assert terminations(traced) == [{"reason": "GraphRecursionError", "success": "false"}]
    assert t.PREMATURE_TERMINATION in detected_codes(traced)
