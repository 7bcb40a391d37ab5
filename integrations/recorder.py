"""What every framework integration shares: a log of who said what and who handed off to whom,
replayed through ``handoffs.sdk`` as run, agent and delegation spans once the run is over.

Frameworks report a run as a stream of callbacks (messages, hand-offs, tool results) from
tasks and threads that do not nest the way ``with`` blocks do. So an integration only notes
what happened, in order, and ``Recorder.emit`` replays it in one place: each agent turn an
``invoke_agent`` span, each hand-off a delegation span holding the target's turns, the
target's messages its outputs, and what the delegating agent said next judged against them
(``judge``: accepted, modified or overwrote). Delegations opened together stay open side by
side, each holding its own target's turns. The run ends with a termination event (or, paused
for a human, a checkpoint); a delegation whose target never answered stays ``open``, one whose
target raised is ``failed``. Span times are those of the replay;
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

# A reply that shares at least this much of its vocabulary with the worker's output (Jaccard on
# words, and character pairs of unspaced script) is an edit of it; below, a reply at least
# MIN_REPLACEMENT times the output's length is a replacement (overwrite); a shorter one (an
# acknowledgement) leaves it standing.
MODIFIED_SIMILARITY = 0.5
MIN_REPLACEMENT = 0.5
# Framework markers that are not part of the text an agent delivers.
_MARKERS = frozenset({"TERMINATE", "APPROVE"})
# Scripts written without spaces between words (kana, CJK ideographs): no word boundary to find,
# so each character is a token. Hangul is spaced, so it counts as words.
_UNSPACED = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff66-\uff9f\U00020000-\U0003134f"
_RUN = re.compile(rf"([{_UNSPACED}]+)|([^\W{_UNSPACED}]+)")


@contextmanager
def framework(extra: str) -> Iterator[None]:
    """Around a framework's import: if it is missing, say which extra installs it."""
    try:
        yield
    except ModuleNotFoundError as exc:
        raise UsageError(f"handoffs.integrations needs {exc.name!r} here, which is not installed: "
                         f"pip install 'handoffs[{extra}]'") from exc


def _runs(text: str) -> list[tuple[str, bool]]:
    """Lower-cased runs of word characters, markers dropped, each with whether it is unspaced script."""
    return [(unspaced or word.lower(), bool(unspaced))
            for unspaced, word in _RUN.findall(text) if word not in _MARKERS]


def _words(text: str) -> list[str]:
    """The tokens of ``text``: its words, and each character of unspaced script."""
    return [token for run, unspaced in _runs(text) for token in (run if unspaced else (run,))]


def _vocabulary(text: str) -> set[str]:
    """What similarity compares: words, and for unspaced script the pairs of adjacent characters
    (a single character, like "the", is shared by any two texts of the language)."""
    found: set[str] = set()
    for run, unspaced in _runs(text):
        if unspaced and len(run) > 1:
            found.update(run[i:i + 2] for i in range(len(run) - 1))
        else:
            found.add(run)
    return found


def judge(output: str, reply: str) -> c.DecisionAction:
    """What the delegating agent did with ``output``, judged from its next ``reply``.

    Accepted when the reply contains the output (as whole tokens: "42" is not in "1425") or
    only acknowledges it; modified when it reworks it (shares most of its vocabulary); overwrote
    when it delivers a text of its own of comparable size in place of it.
    """
    out_words, reply_words = _words(output), _words(reply)
    if not out_words or not reply_words:
        return c.DecisionAction.ACCEPTED
    # Tokens hold no spaces: padded with them, a substring match starts and ends on token bounds.
    if f" {' '.join(out_words)} " in f" {' '.join(reply_words)} ":
        return c.DecisionAction.ACCEPTED
    a, b = _vocabulary(output), _vocabulary(reply)
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
    """One agent's contiguous stretch of work: its messages, tool calls and the hand-offs it made.

    ``pending_tokens`` are output tokens reported since its last output: the next output carries
    them, so a response split over several messages (or preceded by a tool call) counts once.
    """

    agent: str
    items: list[str | ToolCall | Handoff] = field(default_factory=list)
    pending_tokens: int | None = None


@dataclass
class Handoff:
    """A delegation: the target's turns inside it, their outputs, and the source's decision.

    ``parent`` is the delegation the source was working in when it handed off (None at the top
    level): closing a delegation closes what was handed on inside it, never its siblings.
    """

    source: str
    target: str
    task: str | None
    mode: str
    parent: Handoff | None = None
    turns: list[Turn] = field(default_factory=list)
    outputs: list[tuple[int, str, int | None]] = field(default_factory=list)  # (turn index, text, tokens)
    decision: tuple[c.DecisionAction, str] | None = None
    failed: str | None = None
    returned: bool = False

    def within(self, ancestor: Handoff) -> bool:
        """Whether this delegation was made, at any depth, inside ``ancestor``."""
        node = self.parent
        while node is not None:
            if node is ancestor:
                return True
            node = node.parent
        return False


@dataclass
class Ending:
    reason: str
    success_claimed: bool
    agent: str | None
    error: str | None
    checkpoint: str | None = None


class Recorder:
    """Notes a run as it happens (``message``, ``handoff``, ``returned``, ``end``), then ``emit``s it.

    Several delegations can be open at once (agents as tools called in one response, LangGraph's
    ``Send`` fan-out): each agent's work goes into the delegation it is the target of, and an
    agent speaking again closes only the delegations it made. ``implicit_handoffs`` is for teams
    whose hand-offs have no marker (AutoGen's round-robin and selector chats): a change of
    speaker counts as a hand-off from the last speaker.
    """

    def __init__(self, name: str, *, topology: str | None = None, implicit_handoffs: bool = False) -> None:
        self.name = name
        self.topology = topology
        self.implicit = implicit_handoffs
        self.root: list[Turn] = []
        self.open: list[Handoff] = []
        self.awaiting: dict[str, list[Handoff]] = {}
        self.all_handoffs: list[Handoff] = []
        self.sources: set[str] = set()
        self.last_speaker: str | None = None
        self.last_text: str = ""
        self.ending: Ending | None = None
        self.resumed_from: str | None = None
        self.run_id: str | None = None

    # --- where an agent works ----------------------------------------------------------
    def current(self, agent: str) -> Handoff | None:
        """The open delegation ``agent`` works in: of several to it, the first still owing an output."""
        mine = [h for h in self.open if h.target == agent]
        if not mine:
            return None
        return next((h for h in mine if not h.outputs), mine[-1])

    def _turn(self, agent: str, within: Handoff | None) -> Turn:
        level = within.turns if within is not None else self.root
        # A turn that handed work away ended there once that hand-off closed: what the agent says
        # after it is a new turn. Hand-offs made together (still open) share the turn.
        last = level[-1].items[-1] if level and level[-1].items else None
        if not level or level[-1].agent != agent or (isinstance(last, Handoff) and last not in self.open):
            level.append(Turn(agent))
        return level[-1]

    def _close(self, h: Handoff) -> None:
        """``h`` is over, and so is everything handed on inside it; its outputs await the source's reply."""
        for inner in [x for x in self.open if x.within(h)]:
            self._close_one(inner)
        self._close_one(h)

    def _close_one(self, h: Handoff) -> None:
        if h in self.open:
            self.open.remove(h)
            if h.outputs:
                self.awaiting.setdefault(h.source, []).append(h)

    # --- what happened -----------------------------------------------------------------
    def message(self, agent: str, text: str, tokens: int | None = None) -> None:
        """``agent`` said ``text`` (its reply, an answer, a final output); ``tokens`` it cost to write."""
        if not agent:
            return
        text = text or ""
        self._settle(agent, text)
        if (self.implicit and self.last_speaker not in (None, agent) and agent not in self.sources
                and self.current(agent) is None):
            self.handoff(self.last_speaker, agent, task=self.last_text or None)
        self._say(agent, text, tokens, self.current(agent))

    def _say(self, agent: str, text: str, tokens: int | None, within: Handoff | None) -> None:
        turn = self._turn(agent, within)
        if text:
            turn.items.append(text)
        if tokens is not None:
            turn.pending_tokens = (turn.pending_tokens or 0) + tokens
        if within is not None and text.strip():
            within.outputs.append((len(within.turns) - 1, text, turn.pending_tokens))
            turn.pending_tokens = None
        self.last_speaker, self.last_text = agent, text

    def _settle(self, agent: str, text: str) -> None:
        """``agent`` speaks: the delegations it made are over; its pending decisions are made."""
        for h in [x for x in self.open if x.source == agent]:
            self._close(h)
        if text.strip():
            for pending in self.awaiting.pop(agent, []):
                pending.decision = (judge(pending.outputs[-1][1], text), text)

    def tool(self, agent: str, name: str, args: str | None = None, error: str | None = None) -> ToolCall | None:
        """``agent`` called tool ``name`` (arguments are hashed by the SDK, never stored).

        Returns the call, so a failure reported later (by another node) can still be set on it.
        """
        if not agent or not name:
            return None
        call = ToolCall(name, args, error)
        self._turn(agent, self.current(agent)).items.append(call)
        return call

    def handoff(self, source: str, target: str, task: str | None = None,
                mode: str = c.HandoffMode.TRANSFER.value) -> None:
        """``source`` hands work to ``target`` (a transfer of control, or a delegation it awaits).

        The source's other open delegations stay open: hand-offs made together run side by side.
        """
        if not source or not target or source == target:
            return
        within = self.current(source)
        if within is not None and within.source == target:
            # Handing back to the agent that delegated: the delegation returns, it is not a new one.
            within.returned = True
            self._close(within)
            return
        h = Handoff(source, target, task, mode, parent=within)
        self._turn(source, within).items.append(h)
        self.open.append(h)
        self.all_handoffs.append(h)
        self.sources.add(source)

    def returned(self, source: str, target: str, result: str | None, error: str | None = None) -> None:
        """The delegation ``source`` awaited from ``target`` came back with ``result`` (or failed).

        For delegations opened with ``handoff(..., mode="delegate")``: agents as tools, CrewAI's
        coworker tools. The result is the target's output unless its own messages were seen; a
        failed delegation's result (the framework's error text) is no output.
        """
        h = next((x for x in reversed(self.open) if x.source == source and x.target == target), None)
        if h is None:
            return
        if error is not None:
            h.failed = error
        elif result and not h.outputs:
            self._say(target, result, None, h)
        self._close(h)
        self.last_speaker = target

    def failed(self, agent: str, error: str) -> None:
        """``agent`` raised while working on a delegation: that delegation failed (not left open)."""
        h = self.current(agent)
        if h is not None:
            h.failed = error
            self._close(h)

    def resume(self, checkpoint: str, pending: list[tuple[str, str, str | None, str]]) -> None:
        """This run continues a paused one from ``checkpoint``; ``pending`` are the hand-offs
        (source, target, task, mode) the pause left open, re-opened here so their answers count."""
        self.resumed_from = checkpoint
        for source, target, task, mode in pending:
            self.handoff(source, target, task=task, mode=mode)

    def end(self, reason: str, *, success_claimed: bool, agent: str | None = None,
            error: str | None = None, waiting_on: str | None = None) -> None:
        """The run stopped: why, and whether the team claimed it was done.

        ``waiting_on`` names the agent the team would have handed to next (a round-robin's next
        speaker) when the run was cut short: that hand-off is recorded, and stays open.
        """
        if waiting_on and self.last_speaker and self.current(waiting_on) is None:
            self.handoff(self.last_speaker, waiting_on, task=self.last_text or None)
        self.ending = Ending(reason, success_claimed, agent or self.last_speaker, error)

    def pause(self, checkpoint: str) -> None:
        """The run stopped to wait (for a human's input) and can be resumed from ``checkpoint``.

        It has not terminated: no termination event (so no success claimed and no premature
        termination judged), a checkpoint event instead; its open hand-offs stay open.
        """
        self.ending = Ending("paused", False, self.last_speaker, None, checkpoint=checkpoint)

    def still_open(self) -> list[tuple[str, str, str | None, str]]:
        """The hand-offs no answer came back for (source, target, task, mode), oldest first."""
        return [(h.source, h.target, h.task, h.mode) for h in self.open if not h.outputs and not h.failed]

    # --- replay ------------------------------------------------------------------------
    def emit(self) -> str:
        """Write the run through ``handoffs.sdk``; returns its run id."""
        ending = self.ending or Ending("completed", True, self.last_speaker, None)
        if ending.success_claimed:
            for h in self.all_handoffs:
                # Never answered by the source: it stands as delivered if it is the run's result.
                if (h.decision is None and h.outputs and not h.failed and self.last_text
                        and h.outputs[-1][1] == self.last_text):
                    h.decision = (c.DecisionAction.ACCEPTED, self.last_text)
        sources = {h.source for h in self.all_handoffs}
        targets = {h.target for h in self.all_handoffs}
        roles = {a: ("supervisor" if a in sources else "worker") for a in sources | targets}
        with sdk.run(self.name, topology=self.topology) as run:
            if self.resumed_from:
                run.resume(self.resumed_from)
            self._emit_turns(self.root, roles)
            if ending.checkpoint:
                run.checkpoint(ending.checkpoint)
            else:
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
                for turn_index, text, tokens in h.outputs:
                    if turn_index == index:
                        last = d.output(text, tokens=tokens or len(_words(text)), unit_complete=True)
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
