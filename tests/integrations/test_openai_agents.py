"""The OpenAI Agents SDK, run for real on its own ScriptedModel: agents as tools and hand-offs
become delegations; an answer written over the researcher's is an overwrite; a hand-off cut
short by the turn limit is premature termination."""

from __future__ import annotations

import asyncio

import pytest

from handoffs import taxonomy as t

from .conftest import delegations, detected_codes, example, terminations

pytest.importorskip("agents.testing", reason="the OpenAI Agents SDK is not installed (pip install 'handoffs[openai-agents]')")
pytestmark = pytest.mark.frameworks


def test_editor_answering_over_the_researcher_is_an_overwrite(traced):
    ex = example("openai_agents_team")
    result = asyncio.run(ex.main("overwrite"))
    assert result.final_output == ex.REWRITE

    rows = delegations(traced)
    assert [(r["source"], r["target"], r["mode"]) for r in rows] == [("editor", "researcher", "delegate")]
    assert rows[0]["outputs"] == [ex.RESEARCH]
    assert rows[0]["decisions"] == ["overwrote"] and rows[0]["status"] == "completed"
    assert t.OVERWRITE in detected_codes(traced)


def test_handoff_whose_answer_is_the_result_is_accepted(traced):
    ex = example("openai_agents_team")
    result = asyncio.run(ex.main("handoff"))
    assert result.final_output == ex.RESEARCH

    rows = delegations(traced)
    assert [(r["source"], r["target"], r["mode"]) for r in rows] == [("triage", "writer", "transfer")]
    assert rows[0]["decisions"] == ["accepted"] and rows[0]["status"] == "completed"
    codes = detected_codes(traced)
    assert t.OVERWRITE not in codes and t.PREMATURE_TERMINATION not in codes


def test_turn_limit_after_the_handoff_is_premature_termination(traced):
    from agents.exceptions import MaxTurnsExceeded

    ex = example("openai_agents_team")
    outcome = asyncio.run(ex.main("open"))
    assert isinstance(outcome, MaxTurnsExceeded)

    rows = delegations(traced)
    assert [(r["source"], r["target"], r["status"]) for r in rows] == [("triage", "writer", "open")]
    assert terminations(traced) == [{"reason": "MaxTurnsExceeded", "success": "false"}]
    assert t.PREMATURE_TERMINATION in detected_codes(traced)
