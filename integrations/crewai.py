"""CrewAI crews traced as hand-offs: a hierarchical crew's manager delegating to its workers.

    from handoffs.integrations import crewai as handoffs_crewai
    result = handoffs_crewai.kickoff(crew, inputs={...})       # instead of crew.kickoff(...)

CrewAI announces its work on its event bus: each agent execution's output is that agent's
message; the coworker tools (``Delegate work to coworker``, ``Ask question to coworker``) are
delegations the caller awaits, the tool result the worker's deliverable. Handlers of that bus
run on a thread pool, so events are collected while the crew runs and read in CrewAI's own
emission order once it is over. The bus is shared: ``kickoff`` adds its handlers beside the
ones already there (CrewAI's console and tracing listeners, your own) and removes only its own;
each handler keeps only the events of its own kickoff, told apart by the context they were
emitted from, so crews kicked off together in threads, or one inside a tool of another, are
runs of their own. A worker's error (which CrewAI hands back as the tool's text)
fails its delegation; a crew that raises or is interrupted ends the run without a success
claim, and a delegation that never came back stays open. CrewAI is imported only when ``kickoff`` runs.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from handoffs import conventions as c

from .recorder import Recorder, framework

# CrewAI's coworker tools turn a worker's exception into this text (its agent_tool_execution_error).
WORKER_ERROR_PREFIX = "Error executing task with agent"
DELEGATE_TOOLS = frozenset({"delegate work to coworker", "delegate_work_to_coworker",
                            "ask question to coworker", "ask_question_to_coworker"})
# The kickoff recording the current context. CrewAI runs bus handlers in a copy of the emitting
# context (and copies it into the threads it starts), so a handler reads here whose event it has.
_recording: ContextVar[_Collector | None] = ContextVar("handoffs_crewai_recording", default=None)


def _args(raw: Any) -> dict[str, Any]:
    if isinstance(raw, dict):
        return raw
    try:
        found = json.loads(raw) if isinstance(raw, str) else None
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}


def _role(event: Any) -> str:
    agent = getattr(event, "agent", None)
    return str(getattr(agent, "role", None) or getattr(event, "agent_role", None) or "").strip()


class _Collector:
    """Bus events of one kickoff, in CrewAI's emission order, fed to a ``Recorder``."""

    def __init__(self) -> None:
        self.events: list[tuple[int, float, str, Any]] = []
        self.lock = threading.Lock()

    def add(self, kind: str) -> Any:
        def handler(source: Any, event: Any) -> None:
            if _recording.get() is not self:  # another kickoff's, or no kickoff's
                return
            seq = getattr(event, "emission_sequence", None)
            stamp = getattr(event, "timestamp", None)
            with self.lock:
                self.events.append((seq if seq is not None else 1 << 62,
                                    stamp.timestamp() if stamp is not None else 0.0, kind, event))
        return handler

    def replay(self, recorder: Recorder) -> None:
        open_delegations: list[tuple[str, str]] = []
        with self.lock:
            events = sorted(self.events, key=lambda e: (e[0], e[1]))
        for _, _, kind, event in events:
            if kind == "tool_started" and str(event.tool_name).lower() in DELEGATE_TOOLS:
                args = _args(event.tool_args)
                target = str(args.get("coworker") or "").strip()
                source = _role(event)
                if target:
                    recorder.handoff(source, target, task=args.get("task") or args.get("question"),
                                     mode=c.HandoffMode.DELEGATE.value)
                    open_delegations.append((source, target))
            elif kind in ("tool_finished", "tool_error") and str(event.tool_name).lower() in DELEGATE_TOOLS:
                target = str(_args(event.tool_args).get("coworker") or "").strip()
                match = next((d for d in reversed(open_delegations) if d[1] == target), None)
                if match is not None:
                    open_delegations.remove(match)
                    output = getattr(event, "output", None)
                    text = None if output is None else str(output)
                    error = str(getattr(event, "error", "")) if kind == "tool_error" else None
                    if text is not None and text.startswith(WORKER_ERROR_PREFIX):
                        text, error = None, text
                    recorder.returned(match[0], target, text, error=error)
            elif kind in ("tool_finished", "tool_error"):
                error = str(getattr(event, "error", "")) if kind == "tool_error" else None
                args = event.tool_args if isinstance(event.tool_args, str) else json.dumps(event.tool_args, default=str)
                recorder.tool(_role(event), str(event.tool_name), args, error=error)
            elif kind == "agent_completed":
                recorder.message(_role(event), str(getattr(event, "output", "") or ""))


@contextmanager
def _listening(bus: Any, collector: _Collector, kinds: dict[str, type]) -> Iterator[None]:
    """``collector``'s handlers on ``bus`` while the block runs, and this context routed to it."""
    handlers = [(event_type, collector.add(kind)) for kind, event_type in kinds.items()]
    for event_type, handler in handlers:
        bus.on(event_type)(handler)
    token = _recording.set(collector)
    try:
        yield
    finally:
        _recording.reset(token)
        bus.flush()  # the handlers run on CrewAI's thread pool: let them see every event emitted
        for event_type, handler in handlers:
            bus.off(event_type, handler)


def kickoff(crew: Any, inputs: dict[str, Any] | None = None, *, name: str | None = None) -> Any:
    """``crew.kickoff(inputs=inputs)``, recorded; returns its CrewOutput (or raises its error)."""
    with framework("crewai"):
        from crewai.events import crewai_event_bus
        from crewai.events.types.agent_events import AgentExecutionCompletedEvent
        from crewai.events.types.tool_usage_events import (
            ToolUsageErrorEvent,
            ToolUsageFinishedEvent,
            ToolUsageStartedEvent,
        )

    collector = _Collector()
    recorder = Recorder(name or str(getattr(crew, "name", None) or "crew"),
                        topology="centralized" if "hierarchical" in str(getattr(crew, "process", "")) else None)
    kinds = {"tool_started": ToolUsageStartedEvent, "tool_finished": ToolUsageFinishedEvent,
             "tool_error": ToolUsageErrorEvent, "agent_completed": AgentExecutionCompletedEvent}
    try:
        with _listening(crewai_event_bus, collector, kinds):
            result = crew.kickoff(inputs=inputs)
    except BaseException as exc:
        # Interrupts too (Ctrl-C, a CI job's timeout): the run that was cut short is the one to see.
        collector.replay(recorder)
        recorder.end(type(exc).__name__, success_claimed=False, error=str(exc) or type(exc).__name__)
        recorder.emit()
        raise
    collector.replay(recorder)
    recorder.end("completed", success_claimed=True)
    recorder.emit()
    return result
