"""OpenAI Agents SDK runs traced as hand-offs: ``handoffs`` between agents, and agents as tools.

    from handoffs.integrations import openai_agents as handoffs_agents
    result = await handoffs_agents.run(triage_agent, "Write the report")   # instead of Runner.run(...)

or, to keep your own ``Runner`` call: ``hooks = handoffs_agents.hooks("report")``, pass
``hooks=hooks`` to ``Runner.run`` and call ``hooks.finish(result_or_exception)`` after it (a
hooks object records one run at a time; after ``finish`` it starts afresh).
A hand-off (``on_handoff``) is a transfer; a tool made with ``Agent.as_tool`` is a delegation
the caller awaits, its result the worker's deliverable, and what runs inside it (the worker's
turns, tools, its own agents as tools) is recorded under it: the SDK runs an agent tool with a
``Runner`` of its own, so the first ``hooks()`` call wraps the SDK's default agent runner to
hand those nested runs the recording hooks. Each model response's text is its agent's message,
so what the delegating agent answers after a worker's result is judged against it (accepted,
modified, overwrote). ``MaxTurnsExceeded``, other errors and cancellation end the run without a
success claim. The Agents SDK is imported only when these functions are called; its own
tracing is left as it is.
"""

from __future__ import annotations

import contextvars
import functools
from types import SimpleNamespace
from typing import Any

from handoffs import conventions as c

from .recorder import Recorder, framework

# The recording hooks of the run in progress, for the nested runs of its agent tools.
_ACTIVE: contextvars.ContextVar[Any] = contextvars.ContextVar("handoffs_openai_agents_hooks", default=None)
_HOOK_METHODS = ("on_llm_start", "on_llm_end", "on_agent_start", "on_agent_end", "on_handoff",
                 "on_tool_start", "on_tool_end")


def _texts(response: Any) -> list[str]:
    """The assistant text of a model response (tool calls carry none)."""
    out = []
    for item in getattr(response, "output", []) or []:
        if getattr(item, "type", None) == "message":
            text = "".join(getattr(part, "text", "") or "" for part in getattr(item, "content", []) or [])
            if text:
                out.append(text)
    return out


def _agent_tool_worker(tool: Any) -> Any:
    """The agent behind a tool made with ``Agent.as_tool``, or None for other tools."""
    return getattr(tool, "_agent_instance", None) if getattr(tool, "_is_agent_tool", False) else None


def _failed_agent(outcome: BaseException) -> str | None:
    """The agent that was working when the run raised (the SDK's ``run_data``, when it says)."""
    return getattr(getattr(getattr(outcome, "run_data", None), "last_agent", None), "name", None)


@functools.cache
def _sdk() -> SimpleNamespace:
    """The classes that need the Agents SDK, made once on first use."""
    with framework("openai-agents"):
        from agents import RunHooks
        from agents.run import AgentRunner, get_default_agent_runner, set_default_agent_runner
        from agents.tool import default_tool_error_function

    # What the SDK hands the model in place of a tool's result when the tool raised (its default
    # failure_error_function): the only sign of the failure that reaches on_tool_end.
    tool_failed_text = default_tool_error_function(None, RuntimeError())  # type: ignore[arg-type]

    class HandoffsHooks(RunHooks):  # type: ignore[misc,type-arg]
        """Notes messages, hand-offs, tool and agent-tool calls for ``Recorder``."""

        def __init__(self, name: str) -> None:
            self.name = name
            self.recorder = Recorder(name, topology="centralized")

        async def on_llm_end(self, context: Any, agent: Any, response: Any) -> None:
            texts = _texts(response)
            if texts:
                # One response is one message: its usage is counted once, whatever its parts.
                usage = getattr(response, "usage", None)
                self.recorder.message(agent.name, "\n".join(texts), tokens=getattr(usage, "output_tokens", None))

        async def on_handoff(self, context: Any, from_agent: Any, to_agent: Any) -> None:
            self.recorder.handoff(from_agent.name, to_agent.name)

        async def on_tool_start(self, context: Any, agent: Any, tool: Any) -> None:
            worker = _agent_tool_worker(tool)
            if worker is not None:
                self.recorder.handoff(agent.name, worker.name, task=getattr(context, "tool_arguments", None),
                                      mode=c.HandoffMode.DELEGATE.value)

        async def on_tool_end(self, context: Any, agent: Any, tool: Any, result: object) -> None:
            text = None if result is None else str(result)
            error = text if text is not None and text.startswith(tool_failed_text) else None
            worker = _agent_tool_worker(tool)
            if worker is not None:
                self.recorder.returned(agent.name, worker.name, None if error else text, error=error)
            else:
                self.recorder.tool(agent.name, getattr(tool, "name", type(tool).__name__),
                                   getattr(context, "tool_arguments", None), error=error)

        def nested_failed(self, agent: str, error: BaseException) -> None:
            """The run of agent tool ``agent`` raised: its delegation failed."""
            self.recorder.failed(agent, f"{type(error).__name__}: {error}" if str(error) else type(error).__name__)

        def finish(self, outcome: Any) -> str:
            """Close the run (a RunResult, or the exception the run raised); returns the run id.

            The hooks then start a fresh run, so one object can serve consecutive runs.
            """
            if isinstance(outcome, BaseException):
                self.recorder.end(type(outcome).__name__, success_claimed=False, agent=_failed_agent(outcome),
                                  error=str(outcome) or type(outcome).__name__)
            else:
                agent = getattr(getattr(outcome, "last_agent", None), "name", None)
                self.recorder.end("final_output", success_claimed=True, agent=agent)
            try:
                return self.recorder.emit()
            finally:
                self.recorder = Recorder(self.name, topology="centralized")

    class BothHooks(RunHooks):  # type: ignore[misc,type-arg]
        """Your ``RunHooks`` and the recording ones, each called in turn."""

        def __init__(self, yours: Any, ours: HandoffsHooks) -> None:
            self.yours, self.ours = yours, ours

    def _forward(method: str) -> Any:
        async def call(self: BothHooks, *args: Any, **kwargs: Any) -> None:
            await getattr(self.yours, method)(*args, **kwargs)
            await getattr(self.ours, method)(*args, **kwargs)
        return call

    for method in _HOOK_METHODS:
        setattr(BothHooks, method, _forward(method))

    def recording(hooks: Any) -> HandoffsHooks | None:
        if isinstance(hooks, HandoffsHooks):
            return hooks
        return hooks.ours if isinstance(hooks, BothHooks) else None

    class NestedRunsRunner(AgentRunner):  # type: ignore[misc]
        """The SDK's agent runner, handing a recorded run's hooks to the runs nested in it.

        ``Agent.as_tool`` starts its worker with ``Runner.run(..., hooks=None)``; inside a
        recorded run (``_ACTIVE``) that nested run gets the recording hooks too, and its error
        fails the delegation. Outside one it is the wrapped runner, unchanged.
        """

        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        async def run(self, starting_agent: Any, input: Any, **kwargs: Any) -> Any:
            outer = _ACTIVE.get()
            ours = recording(kwargs.get("hooks"))
            if ours is None and outer is not None:
                given = kwargs.get("hooks")
                kwargs["hooks"] = outer if given is None else BothHooks(given, outer)
                ours = outer
            if ours is None:
                return await self.inner.run(starting_agent, input, **kwargs)
            token = _ACTIVE.set(ours)
            try:
                return await self.inner.run(starting_agent, input, **kwargs)
            except Exception as exc:
                if ours is outer:
                    ours.nested_failed(starting_agent.name, exc)
                raise
            finally:
                _ACTIVE.reset(token)

        def run_sync(self, *args: Any, **kwargs: Any) -> Any:
            return self.inner.run_sync(*args, **kwargs)

        def run_streamed(self, *args: Any, **kwargs: Any) -> Any:
            return self.inner.run_streamed(*args, **kwargs)

    def install() -> None:
        """Wrap the SDK's default agent runner once (again if something replaced it since)."""
        current = get_default_agent_runner()
        if not isinstance(current, NestedRunsRunner):
            set_default_agent_runner(NestedRunsRunner(current))

    return SimpleNamespace(HandoffsHooks=HandoffsHooks, BothHooks=BothHooks, install=install)


def hooks(name: str = "openai-agents") -> Any:
    """A ``RunHooks`` that records the run; call its ``finish(result_or_exception)`` when it is over."""
    sdk = _sdk()
    sdk.install()
    return sdk.HandoffsHooks(name)


async def run(agent: Any, input: Any, *, name: str | None = None, **kwargs: Any) -> Any:
    """``Runner.run(agent, input, **kwargs)``, recorded; returns its RunResult (or raises its error).

    Your own ``hooks=`` are called too. Cancellation and ``KeyboardInterrupt`` are recorded
    (no success claimed, unanswered hand-offs open), then re-raised.
    """
    with framework("openai-agents"):
        from agents import Runner

    recorder_hooks = hooks(name or agent.name)
    yours = kwargs.pop("hooks", None)
    run_hooks = recorder_hooks if yours is None else _sdk().BothHooks(yours, recorder_hooks)
    try:
        result = await Runner.run(agent, input, hooks=run_hooks, **kwargs)
    except BaseException as exc:
        recorder_hooks.finish(exc)
        raise
    recorder_hooks.finish(result)
    return result
