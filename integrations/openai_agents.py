"""OpenAI Agents SDK runs traced as hand-offs: ``handoffs`` between agents, and agents as tools.

    from handoffs.integrations import openai_agents as handoffs_agents
    result = await handoffs_agents.run(triage_agent, "Write the report")   # instead of Runner.run(...)

or, to keep your own ``Runner`` call: ``hooks = handoffs_agents.hooks("report")``, pass
``hooks=hooks`` to ``Runner.run`` and call ``hooks.finish(result_or_exception)`` after it.
A hand-off (``on_handoff``) is a transfer; a tool made with ``Agent.as_tool`` is a delegation
the caller awaits, its result the worker's deliverable. Each model response's text is its
agent's message, so what the delegating agent answers after a worker's result is judged
against it (accepted, modified, overwrote). ``MaxTurnsExceeded`` and other errors end the run
without a success claim. The Agents SDK is imported only when these functions are called;
its own tracing is left as it is.
"""

from __future__ import annotations

from typing import Any

from handoffs import conventions as c

from .recorder import Recorder, framework


def _texts(response: Any) -> list[str]:
    """The assistant text of a model response (tool calls carry none)."""
    out = []
    for item in getattr(response, "output", []) or []:
        if getattr(item, "type", None) == "message":
            text = "".join(getattr(part, "text", "") or "" for part in getattr(item, "content", []) or [])
            if text:
                out.append(text)
    return out


def hooks(name: str = "openai-agents") -> Any:
    """A ``RunHooks`` that records the run; call its ``finish(result_or_exception)`` when it is over."""
    with framework("openai-agents"):
        from agents import RunHooks

    class HandoffsHooks(RunHooks):  # type: ignore[misc,type-arg]
        """Notes messages, hand-offs and agent-tool calls for ``Recorder``."""

        def __init__(self) -> None:
            self.recorder = Recorder(name, topology="centralized")

        async def on_llm_end(self, context: Any, agent: Any, response: Any) -> None:
            usage = getattr(response, "usage", None)
            for text in _texts(response):
                self.recorder.message(agent.name, text, tokens=getattr(usage, "output_tokens", None))

        async def on_handoff(self, context: Any, from_agent: Any, to_agent: Any) -> None:
            self.recorder.handoff(from_agent.name, to_agent.name)

        async def on_tool_start(self, context: Any, agent: Any, tool: Any) -> None:
            worker = getattr(tool, "_agent_instance", None)
            if getattr(tool, "_is_agent_tool", False) and worker is not None:
                self.recorder.handoff(agent.name, worker.name, task=getattr(context, "tool_arguments", None),
                                      mode=c.HandoffMode.DELEGATE.value)

        async def on_tool_end(self, context: Any, agent: Any, tool: Any, result: object) -> None:
            worker = getattr(tool, "_agent_instance", None)
            if getattr(tool, "_is_agent_tool", False) and worker is not None:
                self.recorder.returned(agent.name, worker.name, None if result is None else str(result))
            else:
                self.recorder.tool(agent.name, getattr(tool, "name", type(tool).__name__),
                                   getattr(context, "tool_arguments", None))

        def finish(self, outcome: Any) -> str:
            """Close the run (a RunResult, or the exception the run raised); returns the run id."""
            if isinstance(outcome, BaseException):
                self.recorder.end(type(outcome).__name__, success_claimed=False,
                                  error=str(outcome) or type(outcome).__name__)
            else:
                agent = getattr(getattr(outcome, "last_agent", None), "name", None)
                self.recorder.end("final_output", success_claimed=True, agent=agent)
            return self.recorder.emit()

    return HandoffsHooks()


async def run(agent: Any, input: Any, *, name: str | None = None, **kwargs: Any) -> Any:
    """``Runner.run(agent, input, **kwargs)``, recorded; returns its RunResult (or raises its error)."""
    with framework("openai-agents"):
        from agents import Runner

    recorder_hooks = hooks(name or agent.name)
    try:
        result = await Runner.run(agent, input, hooks=recorder_hooks, **kwargs)
    except Exception as exc:
        recorder_hooks.finish(exc)
        raise
    recorder_hooks.finish(result)
    return result
