"""What every framework integration shares: a log of who said what and who handed off to whom,
replayed through ``handoffs.sdk`` as run, agent and delegation spans once the run is over.

Frameworks report a run as a stream of callbacks (messages, hand-offs, tool results) from
tasks and threads that do not nest the way ``with`` blocks do. So an integration only notes
what happened, in order, and ``Recorder.emit`` replays it in one place: each agent turn an
``invoke_agent`` span, each hand-off a delegation span holding the target's turns, the
target's messages its outputs, and what the delegating agent said next judged against them
(``judge``: accepted, modified or overwrote). The run ends with a termination event; a
delegation whose target never answered stays ``open``. Span times are those of the replay;
order and steps are the run's own.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from handoffs import conventions as c
from handoffs import sdk
from handoffs.errors import UsageError

# A reply that shares at least this much of its vocabulary with the worker's output (Jaccard
# on word sets) is an edit of it; below, a reply at least MIN_REPLACEMENT times the output's
# length is a replacement (overwrite); a shorter one (an acknowledgement) leaves it standing.
MODIFIED_SIMILARITY = 0.5
MIN_REPLACEMENT = 0.5
# Framework markers that are not part of the text an agent delivers.
_MARKERS = re.compile(r"\b(TERMINATE|APPROVE)\b")
_WORD = re.compile(r"\w+")

@contextmanager
def framework(extra: str) -> Iterator[None]:
    """Around a framework's import: if it is missing, say which extra installs it."""
    try:
        yield
    except ModuleNotFoundError as exc:
        raise UsageError(f"handoffs.integrations needs {exc.name!r} here, which is not installed: "
                         f"pip install 'handoffs[{extra}]'") from exc



def _words(text: str) -> list[str]:
    return _WORD.findall(_MARKERS.sub(" ", text).lower())


def judge(output: str, reply: str) -> c.DecisionAction:
    """What the delegating agent did with ``output``, judged from its next ``reply``.

    Accepted when the reply contains the output or only acknowledges it; modified when it
    reworks it (shares most of its words); overwrote when it delivers a text of its own of
    comparable size in place of it.
    """
    out_words, reply_words = _words(output), _words(reply)
    if not out_words or not reply_words:
        return c.DecisionAction.ACCEPTED
    if " ".join(out_words) in " ".join(reply_words):
        return c.DecisionAction.ACCEPTED
    a, b = set(out_words), set(reply_words)
    if len(a & b) / len(a | b) >= MODIFIED_SIMILARITY:
        return c.DecisionAction.MODIFIED
    if len(reply_words) >= MIN_REPLACEMENT * len(out_words):
        return c.DecisionAction.OVERWROTE
    return c.DecisionAction.ACCEPTED


@dataclass
class ToolCall:
    """A tool an agent called (hand-off tools are ``Handoff``s instead)."""

    name: str
    args: str | None
    error: str | None = None


@dataclass
class Turn:
    """One agent's contiguous stretch of work: its messages, tool calls and the hand-offs it made."""

    agent: str
    items: list[str | ToolCall | Handoff] = field(default_factory=list)
    tokens: int | None = None


@dataclass
class Handoff:
    """A delegation: the target's turns inside it, their outputs, and the source's decision."""

    source: str
    target: str
    task: str | None
    mode: str
    turns: list[Turn] = field(default_factory=list)
    outputs: list[tuple[int, str]] = field(default_factory=list)  # (turn index, text)
    decision: tuple[c.DecisionAction, str] | None = None
    failed: str | None = None
    returned: bool = False


@dataclass
class Ending:
    reason: str
    success_claimed: bool
    agent: str | None
    error: str | None


class Recorder:
    """Notes a run as it happens (``message``, ``handoff``, ``delegated``, ``end``), then ``emit``s it.

    ``implicit_handoffs`` is for teams whose hand-offs have no marker (AutoGen's round-robin and
    selector chats): a change of speaker counts as a hand-off from the last speaker.
    """

    def __init__(self, name: str, *, topology: str | None = None, implicit_handoffs: bool = False) -> None:
        self.name = name
        self.topology = topology
        self.implicit = implicit_handoffs
        self.root: list[Turn] = []
        self.stack: list[Handoff] = []
        self.awaiting: dict[str, list[Handoff]] = {}
        self.all_handoffs: list[Handoff] = []
        self.sources: set[str] = set()
        self.last_speaker: str | None = None
        self.last_text: str = ""
        self.ending: Ending | None = None
        self.run_id: str | None = None

    # --- what happened -----------------------------------------------------------------
    def _level(self) -> list[Turn]:
        return self.stack[-1].turns if self.stack else self.root

    def _turn(self, agent: str) -> Turn:
        level = self._level()
        # A turn that handed work away ended there: what the agent says after the hand-off is a new turn.
        if not level or level[-1].agent != agent or (level[-1].items and isinstance(level[-1].items[-1], Handoff)):
            level.append(Turn(agent))
        return level[-1]

    def message(self, agent: str, text: str, tokens: int | None = None) -> None:
        """``agent`` said ``text`` (its reply, an answer, a final output)."""
        if not agent:
            return
        text = text or ""
        self._settle(agent, text)
        if (self.implicit and self.last_speaker not in (None, agent) and agent not in self.sources
                and not (self.stack and self.stack[-1].target == agent)):
            self.handoff(self.last_speaker, agent, task=self.last_text or None)
        turn = self._turn(agent)
        if text:
            turn.items.append(text)
        if tokens is not None:
            turn.tokens = (turn.tokens or 0) + tokens
        top = self.stack[-1] if self.stack else None
        if top is not None and top.target == agent and text.strip():
            top.outputs.append((len(top.turns) - 1, text))
        self.last_speaker, self.last_text = agent, text

    def _settle(self, agent: str, text: str) -> None:
        """``agent`` speaks: delegations it is not working on are over; its pending decisions are made."""
        while self.stack and self.stack[-1].target != agent:
            done = self.stack.pop()
            if done.outputs:
                self.awaiting.setdefault(done.source, []).append(done)
        if text.strip():
            for pending in self.awaiting.pop(agent, []):
                pending.decision = (judge(pending.outputs[-1][1], text), text)

    def tool(self, agent: str, name: str, args: str | None = None, error: str | None = None) -> None:
        """``agent`` called tool ``name`` (arguments are hashed by the SDK, never stored)."""
        if agent and name:
            self._turn(agent).items.append(ToolCall(name, args, error))

    def handoff(self, source: str, target: str, task: str | None = None,
                mode: str = c.HandoffMode.TRANSFER.value) -> None:
        """``source`` hands work to ``target`` (a transfer of control, or a delegation it awaits)."""
        if not source or not target or source == target:
            return
        top = self.stack[-1] if self.stack else None
        if top is not None and top.source == target and top.target == source:
            # Handing back to the agent that delegated: the delegation returns, it is not a new one.
            top.returned = True
            self.stack.pop()
            if top.outputs:
                self.awaiting.setdefault(top.source, []).append(top)
            return
        self._settle(source, "")
        turn = self._turn(source)
        h = Handoff(source, target, task, mode)
        turn.items.append(h)
        self.stack.append(h)
        self.all_handoffs.append(h)
        self.sources.add(source)

    def returned(self, source: str, target: str, result: str | None, error: str | None = None) -> None:
        """The delegation ``source`` awaited from ``target`` came back with ``result`` (or failed).

        For delegations opened with ``handoff(..., mode="delegate")``: agents as tools, CrewAI's
        coworker tools. The result is the target's output unless its own messages were seen.
        """
        h = next((x for x in reversed(self.stack) if x.source == source and x.target == target), None)
        if h is None:
            return
        while self.stack and self.stack[-1] is not h:
            self.stack.pop()
        if result and not h.outputs:
            self.message(target, result)
        if error is not None:
            h.failed = error
        self.stack.remove(h)
        if h.outputs:
            self.awaiting.setdefault(source, []).append(h)
        self.last_speaker = target

    def end(self, reason: str, *, success_claimed: bool, agent: str | None = None,
            error: str | None = None, waiting_on: str | None = None) -> None:
        """The run stopped: why, and whether the team claimed it was done.

        ``waiting_on`` names the agent the team would have handed to next (a round-robin's next
        speaker) when the run was cut short: that hand-off is recorded, and stays open.
        """
        if waiting_on and self.last_speaker and not (self.stack and self.stack[-1].target == waiting_on):
            self.handoff(self.last_speaker, waiting_on, task=self.last_text or None)
        self.ending = Ending(reason, success_claimed, agent or self.last_speaker, error)

    # --- replay ------------------------------------------------------------------------
    def emit(self) -> str:
        """Write the run through ``handoffs.sdk``; returns its run id."""
        for h in self.all_handoffs:
            # Never answered by the source: it stands as delivered if it is the run's result.
            if h.decision is None and h.outputs and self.last_text and h.outputs[-1][1] == self.last_text:
                h.decision = (c.DecisionAction.ACCEPTED, self.last_text)
        sources = {h.source for h in self.all_handoffs}
        targets = {h.target for h in self.all_handoffs}
        roles = {a: ("supervisor" if a in sources else "worker") for a in sources | targets}
        ending = self.ending or Ending("completed", True, self.last_speaker, None)
        with sdk.run(self.name, topology=self.topology) as run:
            self._emit_turns(self.root, roles)
            run.terminate(ending.reason, success_claimed=ending.success_claimed, agent=ending.agent)
            if ending.error:
                run.error(ending.error)
            self.run_id = run.run_id
        return run.run_id

    def _emit_turns(self, turns: list[Turn], roles: dict[str, str]) -> None:
        for turn in turns:
            with sdk.agent(turn.agent, role=roles.get(turn.agent)) as ag:
                for item in turn.items:
                    if isinstance(item, Handoff):
                        self._emit_handoff(ag, item, roles)
                    elif isinstance(item, ToolCall):
                        with ag.tool(item.name, item.args) as call:
                            if item.error:
                                call.error(item.error)

    def _emit_handoff(self, ag: sdk.Agent, h: Handoff, roles: dict[str, str]) -> None:
        with ag.delegate(h.target, h.task, mode=h.mode) as d:
            last = None
            for index, turn in enumerate(h.turns):
                self._emit_turns([turn], roles)
                for turn_index, text in h.outputs:
                    if turn_index == index:
                        last = d.output(text, tokens=turn.tokens or len(_words(text)), unit_complete=True)
            if h.decision is not None and last is not None:
                action, reply = h.decision
                d.decision(action, output=last, result=reply, agent=h.source)
            if h.failed:
                d.error(h.failed)
                d.set_status(c.DelegationStatus.FAILED)
            elif last is None:
                d.set_status(c.DelegationStatus.OPEN)
            else:
                d.set_status(c.DelegationStatus.COMPLETED)
