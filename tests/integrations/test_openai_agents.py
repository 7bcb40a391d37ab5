"""The OpenAI Agents SDK, run for real on its own ScriptedModel: agents as tools and hand-offs
become delegations; an answer written over the researcher's is an overwrite; a hand-off cut
short by the turn limit is premature termination."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from handoffs import taxonomy as t

from .conftest import delegations, detected_codes, example, terminations, tools, turns

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


BLUE = "Blue light is scattered most by the molecules of the air, so the whole sky looks blue to us."
RED = "Sunsets are red because the blue light is scattered away along the long path through the air."


def _agent(name: str, *steps: Any, **kwargs: Any) -> Any:
    """An agent on a ScriptedModel: each step a list of output items or a ``ModelStep``."""
    from agents import Agent
    from agents.testing import ScriptedModel

    return Agent(name=name, model=ScriptedModel(list(steps)),
                 **kwargs)


def _call(tool: str, args: dict[str, Any], call_id: str) -> Any:
    from agents.testing import function_call

    return function_call(tool, args, call_id=call_id)


def _say(text: str) -> Any:
    from agents.testing import assistant_message

    return assistant_message(text)


def _run(agent: Any, **kwargs: Any) -> Any:
    from handoffs.integrations import openai_agents as handoffs_agents

    return asyncio.run(handoffs_agents.run(agent, "Explain the sky.", **kwargs))


def test_two_agent_tools_called_at_once_are_two_completed_delegations(traced):
    physicist = _agent("physicist", [_say(BLUE)])
    painter = _agent("painter", [_say(RED)])
    editor = _agent("editor", [_call("ask_physicist", {"input": "why blue"}, "c1"),
                               _call("ask_painter", {"input": "why red"}, "c2")], [_say(f"{BLUE} {RED}")],
                    tools=[physicist.as_tool(tool_name="ask_physicist", tool_description="physics"),
                           painter.as_tool(tool_name="ask_painter", tool_description="colour")])
    _run(editor)
    rows = delegations(traced)
    assert [(r["target"], r["status"], r["outputs"], r["decisions"]) for r in rows] == [
        ("physicist", "completed", [BLUE], ["accepted"]), ("painter", "completed", [RED], ["accepted"])]
    assert [(r["agent"], r["within"]) for r in turns(traced)] == [
        ("editor", ""), ("physicist", "physicist"), ("painter", "painter"), ("editor", "")]
    assert t.PREMATURE_TERMINATION not in detected_codes(traced)


def test_what_runs_inside_an_agent_tool_is_recorded_under_it(traced):
    from agents import function_tool

    @function_tool
    def lookup(q: str) -> str:
        """Look it up."""
        return "Rayleigh scattering"

    physicist = _agent("physicist", [_call("lookup", {"q": "sky"}, "p1")], [_say(BLUE)], tools=[lookup])
    manager = _agent("manager", [_call("ask_physicist", {"input": "why blue"}, "m1")], [_say(f"Answer: {BLUE}")],
                     tools=[physicist.as_tool(tool_name="ask_physicist", tool_description="physics")])
    director = _agent("director", [_call("ask_manager", {"input": "explain"}, "d1")], [_say(f"Final: {BLUE}")],
                      tools=[manager.as_tool(tool_name="ask_manager", tool_description="manage")])
    _run(director)
    rows = delegations(traced)
    assert [(r["source"], r["target"], r["status"]) for r in rows] == [
        ("director", "manager", "completed"), ("manager", "physicist", "completed")]
    assert rows[1]["outputs"] == [BLUE]
    assert tools(traced) == [{"tool": "lookup", "agent": "physicist", "failed": False}]
    assert ("physicist", "physicist") in [(r["agent"], r["within"]) for r in turns(traced)]


def test_an_agent_tool_whose_worker_raised_is_a_failed_delegation(traced):
    from agents.testing import ModelStep

    physicist = _agent("physicist", ModelStep.raise_error(RuntimeError("model crashed")))
    editor = _agent("editor", [_call("ask_physicist", {"input": "why blue"}, "c1")], [_say(BLUE)],
                    tools=[physicist.as_tool(tool_name="ask_physicist", tool_description="physics")])
    _run(editor)
    rows = delegations(traced)
    assert [(r["status"], r["outputs"], r["decisions"]) for r in rows] == [("failed", [], [])]
    assert t.OVERWRITE not in detected_codes(traced)


def test_a_function_tool_that_raised_is_a_failed_tool_call(traced):
    from agents import function_tool

    @function_tool
    def lookup(q: str) -> str:
        """Look it up."""
        raise RuntimeError("database is down")

    _run(_agent("solo", [_call("lookup", {"q": "x"}, "c1")], [_say("I could not look it up.")], tools=[lookup]))
    assert tools(traced) == [{"tool": "lookup", "agent": "solo", "failed": True}]


def test_a_cancelled_run_is_recorded_without_success_and_reraised(traced):
    from agents import function_tool

    from handoffs.integrations import openai_agents as handoffs_agents

    started = asyncio.Event()

    @function_tool
    async def slow(q: str) -> str:
        """Never finishes in time."""
        started.set()
        await asyncio.sleep(30)
        return "late"

    writer = _agent("writer", [_call("slow", {"q": "x"}, "s1")], [_say(BLUE)], tools=[slow])
    triage = _agent("triage", [_call("transfer_to_writer", {}, "t1")], handoffs=[writer])

    async def cancel_once_the_writer_works() -> None:
        task = asyncio.ensure_future(handoffs_agents.run(triage, "go"))
        await started.wait()
        task.cancel()
        await task

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(cancel_once_the_writer_works())
    assert terminations(traced) == [{"reason": "CancelledError", "success": "false"}]
    assert [(r["target"], r["status"]) for r in delegations(traced)] == [("writer", "open")]


def test_a_run_stopped_by_its_turn_limit_invents_no_acceptance(traced):
    from agents.exceptions import MaxTurnsExceeded

    physicist = _agent("physicist", [_say(BLUE)])
    editor = _agent("editor", [_call("ask_physicist", {"input": "why blue"}, "c1")], [_say(BLUE)],
                    tools=[physicist.as_tool(tool_name="ask_physicist", tool_description="physics")])
    with pytest.raises(MaxTurnsExceeded):
        _run(editor, max_turns=1)
    assert [(r["status"], r["decisions"]) for r in delegations(traced)] == [("completed", [])]


def test_one_hooks_object_for_two_runs_records_two_runs(traced):
    from agents import Runner

    from handoffs.integrations import openai_agents as handoffs_agents

    async def main() -> None:
        hooks = handoffs_agents.hooks("reused")
        for i in range(2):
            writer = _agent("writer", [_say(f"run {i}: {BLUE}")])
            triage = _agent("triage", [_call("transfer_to_writer", {}, "t1")], handoffs=[writer])
            hooks.finish(await Runner.run(triage, f"question {i}", hooks=hooks))

    asyncio.run(main())
    rows = delegations(traced)
    assert len(rows) == 2 and len({r["trace"] for r in rows}) == 2
    assert sorted(r["outputs"][0][:6] for r in rows) == ["run 0:", "run 1:"]


def test_a_response_of_two_messages_counts_its_usage_once(traced):
    from agents.testing import ModelStep
    from agents.usage import Usage

    writer = _agent("writer", ModelStep(output=[_say(BLUE), _say("That is all.")],
                                        usage=Usage(requests=1, input_tokens=10, output_tokens=100, total_tokens=110)))
    _run(_agent("triage", [_call("transfer_to_writer", {}, "t1")], handoffs=[writer]))
    assert [sum(int(x) for x in r["tokens"]) for r in delegations(traced)] == [100]


def test_your_own_hooks_run_alongside_the_recording(traced):
    from agents import RunHooks

    seen: list[str] = []

    class Mine(RunHooks):  # type: ignore[misc,type-arg]
        async def on_agent_start(self, context: Any, agent: Any) -> None:
            seen.append(agent.name)

    result = _run(_agent("solo", [_say(BLUE)]), hooks=Mine())
    assert result.final_output == BLUE and seen == ["solo"]
    assert terminations(traced) == [{"reason": "final_output", "success": "true"}]
