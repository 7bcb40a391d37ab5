"""AutoGen AgentChat teams (round-robin, selector, swarm) traced as hand-offs.

    from handoffs.integrations import autogen as handoffs_autogen
    result = await handoffs_autogen.run(team, task="Write the report")   # instead of team.run(...)

Every chat message becomes part of its sender's turn; a swarm's ``HandoffMessage`` is a
delegation; in round-robin and selector chats, which carry no hand-off marker, a change of
speaker is one (from the last speaker, unless the new speaker is the one who delegated).
Agents working inside a participant are not the team's: a SocietyOfMindAgent's inner team is
not recorded (the society's summary is its answer), and a team taking part as a participant
speaks through its members' messages, under its own name. The team's stop reason becomes the
run's termination: a message limit or timeout is not a claim of success, a stop or
termination text is. AutoGen itself is imported only here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from .recorder import Recorder, framework

USER = "user"
TRANSFER_PREFIX = "transfer_to_"
# Stop reasons that a limit, not the team, decided (AutoGen's termination conditions' texts).
LIMIT_REASONS = ("Maximum number of", "timeout", "Timeout", "token limit", "Token usage limit")


def _is_swarm(team: Any) -> bool:
    return type(team).__name__ == "Swarm"


def _topology(team: Any) -> str:
    return "decentralized" if _is_swarm(team) else "centralized"


def _next_speaker(team: Any, last: str | None) -> str | None:
    """The participant a round-robin team would have asked next (others do not say)."""
    if type(team).__name__ != "RoundRobinGroupChat" or last is None:
        return None
    names = [p.name for p in getattr(team, "_participants", [])]
    return names[(names.index(last) + 1) % len(names)] if last in names else None


def _inner_agents(team: Any) -> dict[str, str | None]:
    """Agents working inside the team's participants, whose messages the team's stream also
    carries: each mapped to the participant it works for when its messages are that participant's
    own (a team taking part as a participant has no voice but its members'), or to None when they
    are not what the participant delivers (a SocietyOfMindAgent's inner team: its answer is the
    summary it writes after it)."""
    inner: dict[str, str | None] = {}

    def visit(member: Any, owner: str | None) -> None:
        society_team = getattr(member, "_team", None)  # SocietyOfMindAgent's; teams keep ``_participants``
        for sub in getattr(society_team, "_participants", None) or []:
            inner.setdefault(sub.name, None)
            visit(sub, None)
        for sub in getattr(member, "_participants", None) or []:
            inner.setdefault(sub.name, owner)
            visit(sub, owner)

    participants = getattr(team, "_participants", None) or []
    for participant in participants:
        visit(participant, participant.name)
    # A name the outer team also uses is that participant speaking.
    return {k: v for k, v in inner.items() if k not in {p.name for p in participants}}


async def trace(team: Any, task: Any = None, *, name: str | None = None) -> AsyncIterator[Any]:
    """``team.run_stream(task=...)``, recorded: yields the same messages and the final TaskResult."""
    with framework("autogen"):
        from autogen_agentchat.base import TaskResult
        from autogen_agentchat.messages import (
            BaseChatMessage,
            HandoffMessage,
            StopMessage,
            ToolCallExecutionEvent,
            ToolCallRequestEvent,
        )

    recorder = Recorder(name or type(team).__name__, topology=_topology(team),
                        implicit_handoffs=not _is_swarm(team))
    calls: dict[str, str] = {}
    inner = _inner_agents(team)
    try:
        async for item in team.run_stream(task=task):
            source = getattr(item, "source", None)
            if source in inner:
                # Inside a participant: never a hand-off or a stop of the outer team.
                owner = inner[source]
                if owner is None or isinstance(item, HandoffMessage | StopMessage):
                    yield item
                    continue
                source = owner
            if isinstance(item, TaskResult):
                reason = item.stop_reason or "completed"
                limited = any(x in reason for x in LIMIT_REASONS)
                recorder.end(reason, success_claimed=not limited,
                             waiting_on=_next_speaker(team, recorder.last_speaker) if limited else None)
            elif isinstance(item, ToolCallRequestEvent):
                calls.update({call.id: call.arguments for call in item.content})
            elif isinstance(item, ToolCallExecutionEvent):
                for done in item.content:
                    if not done.name.startswith(TRANSFER_PREFIX):  # hand-offs come as HandoffMessage
                        recorder.tool(source, done.name, calls.get(done.call_id),
                                      error=done.content if done.is_error else None)
            elif isinstance(item, HandoffMessage):
                recorder.handoff(source, item.target)
            elif isinstance(item, StopMessage):
                recorder.message(source, item.content)
                recorder.end(item.content or "stop", success_claimed=True, agent=source)
            elif isinstance(item, BaseChatMessage) and source != USER:
                usage = item.models_usage
                recorder.message(source, item.to_model_text(),
                                 tokens=usage.completion_tokens if usage is not None else None)
            yield item
    except BaseException as exc:
        if isinstance(exc, Exception) and _is_swarm(team) and recorder.open:
            # A swarm's speaker is the target of its last hand-off: the error is that worker's.
            recorder.failed(recorder.open[-1].target, f"{type(exc).__name__}: {exc}")
        recorder.end(type(exc).__name__, success_claimed=False, error=str(exc) or type(exc).__name__)
        raise
    finally:
        recorder.emit()


async def run(team: Any, task: Any = None, *, name: str | None = None) -> Any:
    """``team.run(task=...)``, recorded: returns AutoGen's TaskResult."""
    result = None
    async for item in trace(team, task, name=name):
        result = item
    return result

