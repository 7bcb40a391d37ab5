"""CrewAI, run for real with a scripted BaseLLM: a hierarchical crew's manager delegates to the
writer with the coworker tool; a final answer written over the writer's is an overwrite, an
interrupt while the writer works leaves the delegation open (premature termination)."""

from __future__ import annotations

import os

import pytest

from handoffs import taxonomy as t

from .conftest import delegations, detected_codes, example, terminations

os.environ.setdefault("CREWAI_DISABLE_TELEMETRY", "true")
os.environ.setdefault("CREWAI_TRACING_ENABLED", "false")
pytest.importorskip("crewai", reason="CrewAI is not installed (pip install 'handoffs[crewai]', in its own venv)")
pytestmark = pytest.mark.frameworks


def test_manager_answering_over_the_writer_is_an_overwrite(traced):
    ex = example("crewai_team")
    result = ex.main("overwrite")
    assert result.raw == ex.REWRITE

    rows = delegations(traced)
    assert [(r["source"], r["target"], r["mode"]) for r in rows] == [("Manager", "Writer", "delegate")]
    assert rows[0]["outputs"] == [ex.RESEARCH]
    assert rows[0]["decisions"] == ["overwrote"] and rows[0]["status"] == "completed"
    assert t.OVERWRITE in detected_codes(traced)


def test_manager_passing_the_answer_on_accepts_it(traced):
    ex = example("crewai_team")
    ex.main("accept")
    rows = delegations(traced)
    assert rows[0]["decisions"] == ["accepted"]
    codes = detected_codes(traced)
    assert t.OVERWRITE not in codes and t.PREMATURE_TERMINATION not in codes


def test_interrupt_while_the_writer_works_is_premature_termination(traced):
    ex = example("crewai_team")
    assert isinstance(ex.main("open"), KeyboardInterrupt)

    rows = delegations(traced)
    assert [(r["source"], r["target"], r["status"]) for r in rows] == [("Manager", "Writer", "open")]
    assert terminations(traced) == [{"reason": "KeyboardInterrupt", "success": "false"}]
    assert t.PREMATURE_TERMINATION in detected_codes(traced)


def test_worker_error_fails_the_delegation(traced):
    """CrewAI hands a worker's exception back as the tool's text: that is a failure, not a deliverable."""
    from handoffs.integrations import crewai as handoffs_crewai

    ex = example("crewai_team")
    crew = ex.build("overwrite")
    writer = crew.agents[0]
    writer.llm.replies[:] = [RuntimeError("the writer's model provider is unavailable")]
    handoffs_crewai.kickoff(crew)
    rows = delegations(traced)
    assert [(r["target"], r["status"], r["outputs"]) for r in rows] == [("Writer", "failed", [])]
