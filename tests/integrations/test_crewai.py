"""CrewAI, run for real with a scripted BaseLLM: a hierarchical crew's manager delegates to the
writer with the coworker tool; a final answer written over the writer's is an overwrite, an
interrupt while the writer works leaves the delegation open (premature termination)."""

from __future__ import annotations

import json
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from handoffs import conventions as c
from handoffs import sdk
from handoffs import taxonomy as t

from .conftest import delegations, detected_codes, example, terminations, tools

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


def _crew(manager: str, worker: str, worker_replies: list[Any], *, llm: type | None = None,
          tools: list[Any] | None = None) -> Any:
    """A hierarchical crew of ``manager`` delegating to ``worker`` (scripted: the worker answers
    ``worker_replies``, the manager passes its answer on)."""
    from crewai import Agent, Crew, Process, Task

    ex = example("crewai_team")
    args = {"task": ex.TASK, "context": "For a general audience.", "coworker": worker}
    manager_llm = ex.ScriptedLLM(model="scripted-manager", replies=[
        f"Thought: {worker} should do this.\nAction: Delegate work to coworker\nAction Input: {json.dumps(args)}",
        f"Thought: I now know the final answer\nFinal Answer: {ex.RESEARCH}"])
    worker_agent = Agent(role=worker, goal="Answer well", backstory="A specialist.", tools=tools or [],
                         llm=(llm or ex.ScriptedLLM)(model="scripted-worker", replies=worker_replies),
                         allow_delegation=False, max_retry_limit=0)
    boss = Agent(role=manager, goal="Deliver the answer", backstory="Runs the team.", llm=manager_llm,
                 allow_delegation=True)
    return Crew(agents=[worker_agent], tasks=[Task(description=ex.TASK, expected_output="Two sentences.")],
                process=Process.hierarchical, manager_agent=boss)


def _answer() -> str:
    return f"Thought: I know the answer\nFinal Answer: {example('crewai_team').RESEARCH}"


def _runs(store: Any) -> dict[str, dict[str, Any]]:
    """By run name: its delegations (source, target) and the agents that took turns in it."""
    sdk.flush()
    names = {r["trace"]: r["name"] for r in store.query(f"""
SELECT TraceId AS trace, SpanAttributes['{c.RUN_NAME}'] AS name FROM otel_traces FINAL
WHERE SpanAttributes['{c.SPAN_TYPE}'] = '{c.SpanType.RUN.value}'""")}
    runs: dict[str, dict[str, Any]] = {name: {"delegations": [], "agents": set()} for name in names.values()}
    for row in delegations(store):
        runs[names[row["trace"]]]["delegations"].append((row["source"], row["target"]))
    for row in store.query(f"""
SELECT TraceId AS trace, SpanAttributes['{c.GEN_AI_AGENT_NAME}'] AS agent FROM otel_traces FINAL
WHERE SpanAttributes['{c.SPAN_TYPE}'] = '{c.SpanType.AGENT.value}'"""):
        runs[names[row["trace"]]]["agents"].add(row["agent"])
    return runs


def test_other_handlers_on_the_bus_keep_receiving_events(traced):
    """Recording adds handlers beside the ones already there (CrewAI's console and tracing
    listeners, the user's own) and removes only its own afterwards."""
    from crewai.events import crewai_event_bus
    from crewai.events.types.agent_events import AgentExecutionCompletedEvent

    from handoffs.integrations import crewai as handoffs_crewai

    seen: list[str] = []

    def mine(source: Any, event: Any) -> None:
        seen.append(event.agent.role)

    before = dict(crewai_event_bus._sync_handlers)
    crewai_event_bus.on(AgentExecutionCompletedEvent)(mine)
    try:
        handoffs_crewai.kickoff(_crew("Manager", "Writer", [_answer()]))
        crewai_event_bus.flush()
        assert sorted(seen) == ["Manager", "Writer"]
        assert mine in crewai_event_bus._sync_handlers[AgentExecutionCompletedEvent]
    finally:
        crewai_event_bus.off(AgentExecutionCompletedEvent, mine)
    assert crewai_event_bus._sync_handlers == before  # none of ours left behind
    assert _runs(traced)["crew"]["delegations"] == [("Manager", "Writer")]


def test_crews_kicked_off_together_in_threads_each_record_their_own_run(traced):
    from handoffs.integrations import crewai as handoffs_crewai

    ex = example("crewai_team")
    # Both workers answer only once both are at work: the two kickoffs overlap.
    meeting = threading.Barrier(2, timeout=60)

    class Meeting(ex.ScriptedLLM):
        def call(self, *args: Any, **kwargs: Any) -> str:
            meeting.wait()
            return super().call(*args, **kwargs)

    crews = {"newsroom": _crew("Editor", "Reporter", [_answer()], llm=Meeting),
             "lab": _crew("Chief", "Analyst", [_answer()], llm=Meeting)}
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = [pool.submit(handoffs_crewai.kickoff, crew, name=name) for name, crew in crews.items()]
        for future in results:
            future.result()

    assert _runs(traced) == {
        "newsroom": {"delegations": [("Editor", "Reporter")], "agents": {"Editor", "Reporter"}},
        "lab": {"delegations": [("Chief", "Analyst")], "agents": {"Chief", "Analyst"}},
    }


def test_a_crew_kicked_off_inside_a_tool_of_another_is_a_run_of_its_own(traced):
    from crewai.tools import tool

    from handoffs.integrations import crewai as handoffs_crewai

    inner = _crew("Chief", "Analyst", [_answer()])

    @tool("consult")
    def consult(question: str) -> str:
        """Ask the lab's crew."""
        return str(handoffs_crewai.kickoff(inner, name="lab").raw)

    call = json.dumps({"question": "Why is the sky blue?"})
    outer = _crew("Editor", "Reporter", [f"Thought: ask the lab\nAction: consult\nAction Input: {call}", _answer()],
                  tools=[consult])
    handoffs_crewai.kickoff(outer, name="newsroom")

    assert _runs(traced) == {
        "newsroom": {"delegations": [("Editor", "Reporter")], "agents": {"Editor", "Reporter"}},
        "lab": {"delegations": [("Chief", "Analyst")], "agents": {"Chief", "Analyst"}},
    }
    assert tools(traced) == [{"tool": "consult", "agent": "Reporter", "failed": False}]
