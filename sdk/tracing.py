"""The tracing API agents call: runs, agents, delegations, outputs, decisions, tools, checks.

Each ``with`` block is one OpenTelemetry span (GenAI names where they exist, ``handoff.*``
where they do not); outputs, decisions, terminations, checkpoints and approvals are events on
the span they belong to, so a hand-off with one output and one decision costs one span.
Every span carries ``handoff.span.type``, ``handoff.run.id`` and ``handoff.step`` (a per-run
counter shared by all threads of the run). Parents follow ``contextvars``: asyncio tasks
inherit them; for threads use ``propagate`` or this module's ``ThreadPoolExecutor``.
"""

from __future__ import annotations

import concurrent.futures
import contextvars
import functools
import hashlib
import inspect
import itertools
import json
import logging
import operator
import threading
import traceback
import uuid
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from time import time_ns
from types import TracebackType
from typing import Any, NamedTuple, TypeVar

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace import Event
from opentelemetry.trace import Span, Status, StatusCode, Tracer

from handoffs import __version__
from handoffs import conventions as c
from handoffs.errors import UsageError

from .ci import ci_metadata
from .export import ExportStats, truncate

F = TypeVar("F", bound=Callable[..., Any])
log = logging.getLogger("handoffs.sdk")

SCOPE_NAME = "handoffs.sdk"
_DECISIONS = frozenset(a.value for a in c.DecisionAction)
_VERDICTS = frozenset(v.value for v in c.Verdict)
_STATUSES = frozenset(s.value for s in c.DelegationStatus)
_APPROVALS = frozenset({"approved", "denied"})
_MODES = frozenset(m.value for m in c.HandoffMode)
# Enum member lookups cost a descriptor call each; these run on every span.
_EXECUTE_TOOL = c.Operation.EXECUTE_TOOL.value
_INVOKE_AGENT = c.Operation.INVOKE_AGENT.value
_CHAT = c.Operation.CHAT.value
_DELEGATE = c.HandoffMode.DELEGATE.value
_COMPLETED = c.DelegationStatus.COMPLETED.value
_OPEN = c.DelegationStatus.OPEN.value
_FAILED = c.DelegationStatus.FAILED.value


@dataclass
class Settings:
    """What ``configure`` decided: where spans go and what of the content is kept."""

    tracer: Tracer = field(default_factory=lambda: trace.get_tracer(SCOPE_NAME, __version__))
    capture_content: bool = False
    redact: Callable[[str], str] | None = None
    stats: ExportStats = field(default_factory=ExportStats)  # the configured processor's: stats() shows it


settings = Settings()


class _Event(Event):
    """An ``Event`` filled in one step: OpenTelemetry's constructor chain costs two calls per event.

    Only for attribute dicts this module built itself (same rule as ``_trusted_attributes``).
    """

    def __init__(self, name: str, attributes: dict[str, Any], timestamp: int) -> None:  # noqa: D107
        self._name = name
        self._attributes = attributes
        self._timestamp = timestamp


# Span classes whose layout _trusted_attributes (_trusted_events) accepted once: later spans
# skip its getattr chain.
_TRUSTED_TYPES: set[type] = set()
_TRUSTED_EVENT_TYPES: set[type] = set()
_new_output = tuple.__new__  # NamedTuple's own __new__ is one more Python call per output


def _trusted_attributes(span: Span) -> dict[str, Any] | None:
    """The SDK span's attribute dict, to fill with values this module built itself, or None.

    OpenTelemetry validates every value it is given one by one; for a hand-off that is most of
    its cost. The values below are built here from str/int/float/bool only, so they skip that
    step when the installed SDK has the layout we know (``tests/sdk`` checks that it does); user
    attributes and any other SDK take the public ``set_attributes``.
    """
    bounded = getattr(span, "_attributes", None)
    data = getattr(bounded, "_dict", None)
    if isinstance(data, dict) and getattr(bounded, "maxlen", None) is not None:
        _TRUSTED_TYPES.add(type(span))
        return data
    return None


def _trusted_events(span: Span) -> deque[Event] | None:
    """The SDK span's event deque, to append events built here to, or None (see ``_trusted_attributes``).

    ``add_event`` takes two locks and validates each value again, a third of a hand-off's cost;
    a deque's append is atomic on its own.
    """
    dq = getattr(getattr(span, "_events", None), "_dq", None)
    if isinstance(dq, deque):
        _TRUSTED_EVENT_TYPES.add(type(span))
        return dq
    return None


def _clean(text: str) -> str:
    """Free text as it may leave the process: through the user's redaction hook, if any, and cut
    to the collector's size limit. A failing hook must not lose the span: a placeholder is kept."""
    redact = settings.redact
    if redact is not None:
        try:
            text = redact(text)
        except Exception as exc:  # whatever the hook raised, the span must still end
            text = _redaction_failed(type(exc).__name__)
        else:
            if not isinstance(text, str):
                text = _redaction_failed(f"returned {type(text).__name__}, not str")
    return _cut(text)


_warned_redaction = False


def _redaction_failed(why: str) -> str:
    global _warned_redaction
    if not _warned_redaction:
        _warned_redaction = True
        log.warning("handoffs: the redact hook failed (%s); a placeholder was recorded instead of the "
                    "text. Fix the hook: it is given every free text that leaves the process", why)
    return f"[redaction failed: {why}]"


def _cut(value: str) -> str:
    """``value`` within the collector's limit for a value (``export.MAX_VALUE_BYTES``); a cut is counted."""
    cut = truncate(value)
    if cut is not value:
        settings.stats.truncated += 1  # a rare path, not locked: a lost count at worst
    return cut


# Copying a prepared hasher is about half the cost of building one with digest_size= each time.
# It is never updated itself, so threads can copy it concurrently.
_BLAKE2B_8 = hashlib.blake2b(digest_size=8)


def content_hash(content: str | bytes) -> str:
    """The hash recorded for outputs, tasks and results: 16 hex digits of BLAKE2b."""
    if isinstance(content, str):
        try:
            content = content.encode()  # the codec's fast path; an error handler disables it
        except UnicodeEncodeError:
            content = content.encode("utf-8", "surrogatepass")  # lone surrogates still hash
    hasher = _BLAKE2B_8.copy()
    try:
        hasher.update(content)
    except TypeError:
        raise UsageError(f"expected text (str or bytes), not {type(content).__name__}: serialise it "
                         "first, e.g. json.dumps(value, sort_keys=True) or str(number)") from None
    return hasher.hexdigest()


def _whole(value: Any, what: str) -> int:
    """``value`` as an int (ints, and int-like numbers such as numpy's); anything else is a UsageError."""
    if not isinstance(value, bool):
        try:
            return operator.index(value)
        except TypeError:
            pass
    raise UsageError(f"{what} must be a whole number, not {value!r}")


def _named(value: Any, what: str) -> str:
    """A name as text (enums, numbers and the like are spelled with ``str``); None or blank is a
    UsageError, since the span would be stored under the name "None" or no name at all."""
    if value is None or (isinstance(value, str) and not value.strip()):
        raise UsageError(f"{what} must be a name, not {value!r}")
    return str(value)


def _text(value: Any) -> str:
    """An optional text attribute as text, so every exporter stores the same thing (OpenTelemetry
    drops a value that is not a str, bool or number; the store exporter would spell it)."""
    return value if isinstance(value, str) else str(value)


def _args_hash(args: Mapping[str, Any] | Iterable[Any] | str | None) -> str:
    if isinstance(args, str):
        return content_hash(args)
    if isinstance(args, Mapping):
        return content_hash(json.dumps(args, sort_keys=True, default=str, separators=(",", ":")))
    return content_hash(json.dumps(list(args or ()), default=str, separators=(",", ":")))


class _RunState:
    """A run's id and its step counter, shared by every span of the run in any thread."""

    __slots__ = ("run_id", "next_step", "handle")

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.handle: Run | None = None
        # itertools.count's next() is one C call, atomic under the GIL: a thread-safe counter
        # without a lock on the hot path. Free-threaded builds would need a lock here.
        self.next_step: Callable[[], int] = itertools.count(1).__next__


_NO_RUN = _RunState("")  # spans outside any run still get increasing steps
_run_var: contextvars.ContextVar[_RunState] = contextvars.ContextVar("handoffs_run", default=_NO_RUN)
_agent_var: contextvars.ContextVar[Agent | None] = contextvars.ContextVar("handoffs_agent", default=None)


class Output(NamedTuple):
    """One output a sub-agent delivered on a delegation; pass it to ``consumes=`` and ``decision``."""

    id: str
    hash: str
    tokens: int | None
    unit_complete: bool
    step: int


def _output_ids(consumes: Iterable[Output | str] | None) -> str:
    return json.dumps([o.id if isinstance(o, Output) else str(o) for o in consumes or ()],
                      separators=(",", ":"))


def _normal_exit(exc: BaseException) -> bool:
    """``sys.exit(0)`` and a generator closed early end a block without failing it."""
    return isinstance(exc, GeneratorExit) or (isinstance(exc, SystemExit) and exc.code in (0, None))


class _Scope:
    """One span, opened by ``with``: made current on entry, ended on exit (errors recorded)."""

    __slots__ = ("_name", "_attributes", "span", "step", "run", "_token", "_failed", "_data")
    span_type: str = ""

    def __init__(self, name: str, attributes: dict[str, Any]) -> None:
        run = _run_var.get()
        self.run = run
        self.step = run.next_step()
        attributes[c.SPAN_TYPE] = self.span_type
        attributes[c.STEP] = self.step
        if run.run_id:
            attributes[c.RUN_ID] = run.run_id
        self._name = name
        self._attributes = attributes
        self._failed = False

    def __enter__(self, span: Span | None = None) -> Any:
        """Start the span (or take ``span``, started elsewhere: a run's own trace), give it this
        scope's attributes and make it current."""
        if span is None:
            span = settings.tracer.start_span(self._name)
        attributes = self._attributes
        data = span._attributes._dict if type(span) in _TRUSTED_TYPES else _trusted_attributes(span)  # type: ignore[attr-defined]
        # One slot stays free for the attribute a span sets as it closes (delegation status).
        # maxlen is per provider (span limits): None is refused by _trusted_attributes, so check again.
        maxlen = span._attributes.maxlen if data is not None else None  # type: ignore[attr-defined]
        if maxlen is not None and len(attributes) + len(data) < maxlen:  # type: ignore[arg-type]
            if data:
                data.update(attributes)  # type: ignore[union-attr]
            else:
                # The usual case (no sampler attributes): hand the span the dict this scope built
                # for itself instead of copying it into an empty one that resizes as it grows.
                span._attributes._dict = data = attributes  # type: ignore[attr-defined]
        else:
            data = None
            span.set_attributes(attributes)
        self.span = span
        self._data = data
        self._token = otel_context.attach(trace.set_span_in_context(span))
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        span = self.span
        # Whatever happens while recording, the span ends and the context is restored: otherwise
        # every later span in the process would be the child of a dead one.
        try:
            if exc is not None and not _normal_exit(exc):
                message = _clean(str(exc))
                # The stack trace quotes the message and the source line: redact it as well.
                trace_text = _clean("".join(traceback.format_exception(exc_type, exc, tb)))
                span.record_exception(exc, attributes={c.EXCEPTION_MESSAGE: message,
                                                       c.EXCEPTION_STACKTRACE: trace_text}, escaped=True)
                span.set_status(Status(StatusCode.ERROR, f"{exc_type.__name__}: {message}"
                                       if exc_type else message))
                self._failed = True
            self._closing()
        finally:
            otel_context.detach(self._token)
            self._token = None  # closed: records now raise (_check_open)
            span.end()

    def _closing(self) -> None:
        """Last attributes before the span ends (subclasses)."""

    def _label(self) -> str:
        """How messages name this span."""
        return f"the span {self._name!r}"

    def _check_open(self, call: str) -> None:
        """Refuse a record this span cannot take: its ``with`` block has not started, or has closed."""
        try:
            token = self._token  # set by __enter__ (a slot: nothing to pay for on the hot path)
        except AttributeError:
            raise UsageError(f"{call} on {self._label()}, which is not open: use it as `with ... as x:` "
                             "(it records only inside its with block)") from None
        if token is None:
            raise UsageError(f"{call} on {self._label()} after its `with` block closed: the span has ended, "
                             "so this would be lost. Call it inside the block")

    def _add_event(self, name: str, attributes: dict[str, Any]) -> None:
        """An event through OpenTelemetry's API; one past the span's event limit is counted in stats()."""
        span = self.span
        dropped = getattr(span, "dropped_events", 0)
        span.add_event(name, attributes)
        if getattr(span, "dropped_events", 0) != dropped:
            _event_dropped(self)

    @property
    def span_id(self) -> str:
        """This span's id in hex, as stored (``retry_of=``, ``compensate(of=)`` take it)."""
        return format(self._opened("span_id").get_span_context().span_id, "016x")

    @property
    def trace_id(self) -> str:
        """This span's trace id in hex, as stored."""
        return format(self._opened("trace_id").get_span_context().trace_id, "032x")

    def _opened(self, call: str) -> Span:
        """The span, once ``__enter__`` has started it (also after it ended)."""
        try:
            return self.span
        except AttributeError:
            self._check_open(call)  # says how to open it
            raise

    def error(self, message: str) -> None:
        """Mark this span failed without raising (an erroneous result the agent carried on with)."""
        self._check_open("error()")
        self.span.set_status(Status(StatusCode.ERROR, _clean(message)))
        self._failed = True

    def set_attribute(self, key: str, value: Any) -> None:
        """One more attribute (validated by OpenTelemetry; a long string is cut as the collector would)."""
        self._check_open("set_attribute()")
        self.span.set_attribute(key, _cut(value) if isinstance(value, str) else value)

    def approval(self, action: str, approver: str, decision: str = "approved") -> None:
        """A human approval (or denial) of ``action`` on this span, before it executes."""
        self._check_open("approval()")
        self._add_event(c.EVENT_APPROVAL, _approval_attributes(action, approver, decision))


def _event_dropped(scope: _Scope) -> None:
    stats = settings.stats
    stats.events_dropped += 1  # a rare path, not locked: a lost count at worst
    if stats.events_dropped == 1:
        log.warning("handoffs: %s reached its limit of events; OpenTelemetry dropped its oldest one "
                    "(counted in handoffs.sdk.stats().events_dropped)", scope._label())


def _approval_attributes(action: str, approver: str, decision: str) -> dict[str, Any]:
    if decision not in _APPROVALS:
        raise UsageError(f"approval decision must be one of {sorted(_APPROVALS)}, not {decision!r}")
    return {c.APPROVAL_ACTION: _clean(action), c.APPROVAL_APPROVER: str(approver),
            c.APPROVAL_DECISION: decision, c.STEP: _run_var.get().next_step()}


# Traces of other spans (an application's request, a batch job) that a run was opened in, oldest
# first: a second run there starts a trace of its own. Bounded: a process opens runs for ever.
_RUN_TRACES: dict[int, None] = {}
_RUN_TRACES_KEPT = 10_000
_RUN_TRACES_LOCK = threading.Lock()  # runs started at once under one span: one of them is first


def _first_run_in(parent: trace.SpanContext) -> bool:
    """Whether a run opened under ``parent`` is the first in its trace (always, with no parent),
    noting that the trace now holds one."""
    if not parent.is_valid:
        return True
    with _RUN_TRACES_LOCK:
        if parent.trace_id in _RUN_TRACES:
            return False
        _RUN_TRACES[parent.trace_id] = None
        if len(_RUN_TRACES) > _RUN_TRACES_KEPT:
            del _RUN_TRACES[next(iter(_RUN_TRACES))]
    return True


class Run(_Scope):
    """The run span: one task given to the team, with its id, tags, topology and CI metadata."""

    __slots__ = ("run_id", "_state", "_run_token", "_user_attributes")
    span_type = c.SpanType.RUN.value

    def __init__(self, name: str, *, run_id: str | None = None, tags: Iterable[str] = (),
                 topology: str | None = None, test_id: str | None = None,
                 attributes: Mapping[str, Any] | None = None) -> None:
        self.run_id = run_id or uuid.uuid4().hex
        self._state = _RunState(self.run_id)
        self._state.handle = self
        token = _run_var.set(self._state)  # the run span is step 1 of its own run
        try:
            attrs: dict[str, Any] = ci_metadata()
            attrs[c.RUN_NAME] = name = _named(name, "the run's name")
            attrs[c.GEN_AI_CONVERSATION_ID] = self.run_id
            attrs[c.RUN_TAGS] = json.dumps(list(tags), separators=(",", ":"))
            if topology:
                attrs[c.RUN_TOPOLOGY] = topology
            if test_id:
                attrs[c.RUN_TEST_ID] = test_id
            super().__init__(f"{c.RUN_SPAN_PREFIX} {name}", attrs)
        finally:
            _run_var.reset(token)
        self._user_attributes = {k: v for k, v in (attributes or {}).items() if k not in attrs}

    def __enter__(self) -> Run:
        opened_under = trace.get_current_span().get_span_context()
        if _run_var.get() is _NO_RUN and _first_run_in(opened_under):
            super().__enter__()
        else:
            # A run opened inside another run, or a second run under the same application span,
            # is a task of its own: it starts its own trace (detection and the dashboard read one
            # run per trace), linked to the span it was opened under so either leads to the other.
            links = [trace.Link(opened_under)] if opened_under.is_valid else None
            super().__enter__(settings.tracer.start_span(self._name, otel_context.Context(), links=links))
        if self._user_attributes:
            # validated by OpenTelemetry, unlike ours
            self.span.set_attributes({k: _cut(v) if isinstance(v, str) else v
                                      for k, v in self._user_attributes.items()})
        self._run_token = _run_var.set(self._state)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        _run_var.reset(self._run_token)
        super().__exit__(exc_type, exc, tb)

    def _label(self) -> str:
        return f"the run {self._name.partition(' ')[2]!r} ({self.run_id})"

    def terminate(self, reason: str, success_claimed: bool, agent: str | None = None) -> int:
        """Record why the run stopped and whether success was claimed; returns the step."""
        self._check_open("terminate()")
        step = self._state.next_step()
        attrs: dict[str, Any] = {c.TERMINATION_REASON: _clean(reason),
                                 c.TERMINATION_SUCCESS_CLAIMED: bool(success_claimed), c.STEP: step}
        if agent:
            attrs[c.TERMINATION_AGENT] = str(agent)
        self._add_event(c.EVENT_TERMINATION, attrs)
        return step

    def checkpoint(self, checkpoint_id: str) -> None:
        """A point this run could be resumed from."""
        self._check_open("checkpoint()")
        self._add_event(c.EVENT_CHECKPOINT, {c.CHECKPOINT_ID: checkpoint_id, c.STEP: self._state.next_step()})

    def resume(self, checkpoint_id: str) -> None:
        """This run resumes from ``checkpoint_id`` (of an earlier run) instead of restarting."""
        self._check_open("resume()")
        self.span.set_attribute(c.RESUME_FROM_CHECKPOINT, checkpoint_id)
        self._add_event(c.EVENT_RESUME, {c.CHECKPOINT_ID: checkpoint_id, c.STEP: self._state.next_step()})


class Agent(_Scope):
    """An ``invoke_agent`` span: one turn of work by one agent. Opens its delegations, tools and checks."""

    __slots__ = ("name", "model", "_agent_token")
    span_type = c.SpanType.AGENT.value

    def __init__(self, name: str, *, role: str | None = None, model: str | None = None,
                 agent_id: str | None = None, description: str | None = None,
                 consumes: Iterable[Output | str] | None = None) -> None:
        self.name = name = _named(name, "an agent's name")
        self.model = model = _text(model) if model else None
        attrs: dict[str, Any] = {c.GEN_AI_OPERATION_NAME: _INVOKE_AGENT, c.GEN_AI_AGENT_NAME: name}
        if role:
            attrs[c.AGENT_ROLE] = _text(role)
        if model:
            attrs[c.GEN_AI_REQUEST_MODEL] = model
        if agent_id:
            attrs[c.GEN_AI_AGENT_ID] = _text(agent_id)
        if description:
            attrs[c.GEN_AI_AGENT_DESCRIPTION] = _text(description)
        if consumes:
            attrs[c.INPUT_OUTPUT_IDS] = _output_ids(consumes)
        super().__init__(f"{_INVOKE_AGENT} {name}", attrs)

    def __enter__(self) -> Agent:
        super().__enter__()
        self._agent_token = _agent_var.set(self)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        _agent_var.reset(self._agent_token)
        super().__exit__(exc_type, exc, tb)

    def delegate(self, target: str, task: str | None = None, *, mode: str = _DELEGATE,
                 consumes: Iterable[Output | str] | None = None, ambiguous: bool = False) -> Delegation:
        """Hand work to ``target``: its outputs and this agent's decisions are recorded on it.

        ``ambiguous=True`` marks a task the delegator knows is unclear (the delegate should ask).
        """
        return Delegation(self.name, target, task, mode, consumes, ambiguous)

    def tool(self, name: str, args: Mapping[str, Any] | Iterable[Any] | str | None = None, *,
             target: str | None = None, side_effect: bool = False, high_stakes: bool = False,
             idempotency_key: str | None = None, retry_of: Tool | str | None = None, attempt: int | None = None,
             consumes: Iterable[Output | str] | None = None) -> Tool:
        """A tool call by this agent (arguments are hashed, never stored)."""
        return Tool(self.name, name, args, target=target, side_effect=side_effect, high_stakes=high_stakes,
                    idempotency_key=idempotency_key, retry_of=retry_of, attempt=attempt, consumes=consumes)

    def llm(self, model: str | None = None, *, input_tokens: int | None = None,
            output_tokens: int | None = None, consumes: Iterable[Output | str] | None = None) -> Llm:
        """A model call by this agent (``chat`` span with token usage)."""
        return Llm(self.name, model or self.model or "unknown", input_tokens=input_tokens,
                   output_tokens=output_tokens, consumes=consumes)

    def verify(self, check: str, *, target: Output | Delegation | str | None = None,
               coverage: float | None = None) -> Verification:
        """A check of an output (or a whole delegation); give it a verdict before it closes."""
        return Verification(self.name, check, target=target, coverage=coverage)

    def compensate(self, action: str, *, of: Tool | str | None = None) -> Compensation:
        """An action undoing an earlier side effect (``of`` is that tool call)."""
        return Compensation(self.name, action, of=of)


# A delegation's fixed attributes per (source, target, mode): agents hand off to the same few
# peers again and again, and copying a prepared dict is cheaper than building one per span.
_DELEGATION_TEMPLATES: dict[tuple[str, str, str], tuple[str, dict[str, Any]]] = {}
_MAX_TEMPLATES = 4096


def _delegation_template(source: str, target: str, mode: str | c.HandoffMode) -> tuple[str, dict[str, Any]]:
    """The span name and fixed attributes of a delegation from ``source`` to ``target``, cached.

    ``mode`` is checked here, once per cache entry, so the hand-off itself pays nothing for it.
    """
    value = mode.value if isinstance(mode, c.HandoffMode) else mode
    if value not in _MODES:
        raise UsageError(f"delegation mode must be one of {sorted(_MODES)}, not {mode!r}")
    tool = f"transfer_to_{target}"
    template: dict[str, Any] = {
        c.GEN_AI_OPERATION_NAME: _EXECUTE_TOOL, c.GEN_AI_TOOL_NAME: tool,
        c.GEN_AI_AGENT_NAME: source, c.SOURCE_AGENT: source, c.TARGET_AGENT: target,
        c.GEN_AI_HANDOFF_SOURCE_NAME: source, c.GEN_AI_HANDOFF_TARGET_NAME: target, c.MODE: value,
    }
    if len(_DELEGATION_TEMPLATES) >= _MAX_TEMPLATES:
        _DELEGATION_TEMPLATES.clear()  # generated names (one target per task): stay bounded
    # conventions.delegation_span_name, inlined
    prepared = (f"{_EXECUTE_TOOL} {tool}", template)
    _DELEGATION_TEMPLATES[(source, target, mode)] = prepared
    return prepared


class Delegation(_Scope):
    """An ``execute_tool transfer_to_<target>`` span: the hand-off, with outputs and decisions as events."""

    __slots__ = ("source", "target", "delegation_id", "_outputs", "_decided", "_unit_done", "_status",
                 "_events")
    span_type = c.SpanType.DELEGATION.value

    # Positional as well as keyword: Agent.delegate passes them positionally, because keywords
    # in a call to a class make CPython build a dict for __init__ (about a microsecond).
    def __init__(self, source: str, target: str, task: str | None = None,
                 mode: str = _DELEGATE,
                 consumes: Iterable[Output | str] | None = None, ambiguous: bool = False) -> None:
        # Names that are plain text skip the call: this is the hand-off's hot path.
        if type(source) is not str or not source or source.isspace():
            source = _named(source, "the delegating agent's name")
        if type(target) is not str or not target or target.isspace():
            target = _named(target, "the delegate's name")
        self.source = source
        self.target = target
        self._outputs = 0
        self._decided = False
        self._unit_done = False
        self._status: str | None = None
        self._events: deque[Event] | None = None
        prepared = _DELEGATION_TEMPLATES.get((source, target, mode))
        if prepared is None:
            prepared = _delegation_template(source, target, mode)
        span_name, template = prepared
        attrs = template.copy()
        if task is not None:
            attrs[c.TASK_HASH] = content_hash(task)
            if settings.capture_content:
                attrs[c.TASK] = _clean(task)
        if ambiguous:
            attrs[c.TASK_AMBIGUOUS] = True
        if consumes:
            attrs[c.INPUT_OUTPUT_IDS] = _output_ids(consumes)
        _Scope.__init__(self, span_name, attrs)  # not super(): one object less on the hot path
        self.delegation_id = f"{self.run.run_id}:d{self.step}" if self.run.run_id else ""
        self._attributes[c.DELEGATION_ID] = self.delegation_id

    def __enter__(self) -> Delegation:
        _Scope.__enter__(self)
        if self._data is not None:
            span = self.span
            self._events = span._events._dq if type(span) in _TRUSTED_EVENT_TYPES else _trusted_events(span)  # type: ignore[attr-defined]
        if not self.delegation_id:
            self.delegation_id = self.span_id
            self.span.set_attribute(c.DELEGATION_ID, self.delegation_id)
        return self

    def _label(self) -> str:
        return f"the hand-off {self.source} -> {self.target}"

    def output(self, content: str | bytes, *, tokens: int | None = None,
               unit_complete: bool = False) -> Output:
        """The sub-agent delivers ``content`` (hashed; kept only with ``capture_content``)."""
        events = self._events  # None: not open (or OpenTelemetry's slower path)
        if events is None:
            self._check_open("output()")
        if tokens is not None and type(tokens) is not int:
            tokens = _whole(tokens, "tokens")
        digest = content_hash(content)  # refuses what is not text before a step is taken
        step = self.run.next_step()
        out: Output = _new_output(Output, (f"{self.delegation_id}:o{step}", digest, tokens, unit_complete,
                                           step))
        self._outputs += 1
        self._unit_done = self._unit_done or unit_complete
        attrs: dict[str, Any] = {c.OUTPUT_ID: out.id, c.OUTPUT_HASH: digest, c.OUTPUT_INDEX: self._outputs,
                                 c.OUTPUT_UNIT_COMPLETE: unit_complete, c.STEP: step}
        if tokens is not None:
            attrs[c.OUTPUT_TOKENS] = tokens
        if settings.capture_content:
            text = content if isinstance(content, str) else bytes(content).decode("utf-8", "replace")
            attrs[c.OUTPUT_CONTENT] = _clean(text)
        # Straight into the span's event deque while it has room (values built here, see
        # _trusted_events); otherwise OpenTelemetry's add_event, which counts the drop.
        if events is not None and len(events) != events.maxlen:
            events.append(_Event(c.EVENT_OUTPUT, attrs, time_ns()))
        else:
            self._add_event(c.EVENT_OUTPUT, attrs)
        return out

    def decision(self, action: str | c.DecisionAction, *, output: Output | str | None = None,
                 result: str | bytes | None = None, reason: str | None = None,
                 agent: str | None = None) -> int:
        """What the delegating agent did with an output (accepted, modified, overwrote, ...); returns the step."""
        events = self._events  # None: not open (or OpenTelemetry's slower path)
        if events is None:
            self._check_open("decision()")
        action = action.value if isinstance(action, c.DecisionAction) else action
        if action not in _DECISIONS:
            raise UsageError(f"decision must be one of {sorted(_DECISIONS)}, not {action!r}")
        result_hash = content_hash(result) if result is not None else None  # before a step is taken
        step = self.run.next_step()
        attrs: dict[str, Any] = {c.DECISION_ACTION: action, c.DECISION_AGENT: agent or self.source,
                                 c.STEP: step}
        if output is not None:
            attrs[c.OUTPUT_ID] = output.id if isinstance(output, Output) else str(output)
        if result_hash is not None:
            attrs[c.DECISION_RESULT_HASH] = result_hash
        if reason:
            attrs[c.DECISION_REASON] = _clean(reason)
        if events is not None and len(events) != events.maxlen:  # as in output()
            events.append(_Event(c.EVENT_DECISION, attrs, time_ns()))
        else:
            self._add_event(c.EVENT_DECISION, attrs)
        self._decided = True
        return step

    def set_status(self, status: str | c.DelegationStatus) -> None:
        """Override the status set on exit (failed on error; completed once decided or a unit is done; else open)."""
        self._check_open("set_status()")
        status = status.value if isinstance(status, c.DelegationStatus) else status
        if status not in _STATUSES:
            raise UsageError(f"delegation status must be one of {sorted(_STATUSES)}, not {status!r}")
        self._status = status

    def _closing(self) -> None:
        status = self._status
        if status is None:
            if self._failed:
                status = _FAILED
            elif self._decided or self._unit_done:
                status = _COMPLETED
            else:
                status = _OPEN
        self._events = None  # a record after the span ended takes the slow path, which refuses it
        if self._data is not None:
            self._data[c.DELEGATION_STATUS] = status  # the slot __enter__ kept free
        else:
            self.span.set_attribute(c.DELEGATION_STATUS, status)


class Tool(_Scope):
    """An ``execute_tool <name>`` span: arguments hashed, side effects, retries and idempotency keys."""

    __slots__ = ()
    span_type = c.SpanType.TOOL.value

    def __init__(self, agent: str | None, name: str,
                 args: Mapping[str, Any] | Iterable[Any] | str | None = None, *,
                 target: str | None = None, side_effect: bool = False, high_stakes: bool = False,
                 idempotency_key: str | None = None, retry_of: Tool | str | None = None,
                 attempt: int | None = None, consumes: Iterable[Output | str] | None = None) -> None:
        name = _named(name, "a tool's name")
        attrs: dict[str, Any] = {c.GEN_AI_OPERATION_NAME: _EXECUTE_TOOL,
                                 c.GEN_AI_TOOL_NAME: name, c.TOOL_ARGS_HASH: _args_hash(args),
                                 c.TOOL_SIDE_EFFECT: bool(side_effect), c.TOOL_HIGH_STAKES: bool(high_stakes)}
        if agent:
            attrs[c.GEN_AI_AGENT_NAME] = agent
        if target is not None:
            attrs[c.TOOL_TARGET] = str(target)
        if idempotency_key is not None:
            attrs[c.IDEMPOTENCY_KEY] = str(idempotency_key)
        if retry_of is not None:
            attrs[c.RETRY_OF] = retry_of.span_id if isinstance(retry_of, Tool) else str(retry_of)
            attrs[c.RETRY_ATTEMPT] = _whole(attempt, "attempt") if attempt is not None else 2
        elif attempt is not None:
            attrs[c.RETRY_ATTEMPT] = _whole(attempt, "attempt")
        if consumes:
            attrs[c.INPUT_OUTPUT_IDS] = _output_ids(consumes)
        super().__init__(f"{_EXECUTE_TOOL} {name}", attrs)

    def __enter__(self) -> Tool:
        return super().__enter__()


class Llm(_Scope):
    """A ``chat <model>`` span with token usage."""

    __slots__ = ()
    span_type = c.SpanType.LLM.value

    def __init__(self, agent: str | None, model: str, *, input_tokens: int | None = None,
                 output_tokens: int | None = None, consumes: Iterable[Output | str] | None = None) -> None:
        model = str(model)
        attrs: dict[str, Any] = {c.GEN_AI_OPERATION_NAME: _CHAT, c.GEN_AI_REQUEST_MODEL: model}
        if agent:
            attrs[c.GEN_AI_AGENT_NAME] = agent
        if input_tokens is not None:
            attrs[c.GEN_AI_USAGE_INPUT_TOKENS] = _whole(input_tokens, "input_tokens")
        if output_tokens is not None:
            attrs[c.GEN_AI_USAGE_OUTPUT_TOKENS] = _whole(output_tokens, "output_tokens")
        if consumes:
            attrs[c.INPUT_OUTPUT_IDS] = _output_ids(consumes)
        super().__init__(f"{_CHAT} {model}", attrs)

    def __enter__(self) -> Llm:
        return super().__enter__()

    def usage(self, input_tokens: int | None = None, output_tokens: int | None = None) -> None:
        """Token usage known only once the call returned."""
        self._check_open("usage()")
        if input_tokens is not None:
            self.span.set_attribute(c.GEN_AI_USAGE_INPUT_TOKENS, _whole(input_tokens, "input_tokens"))
        if output_tokens is not None:
            self.span.set_attribute(c.GEN_AI_USAGE_OUTPUT_TOKENS, _whole(output_tokens, "output_tokens"))


class Verification(_Scope):
    """A ``handoff.verify <check>`` span: what was checked, how much of it, and the verdict."""

    __slots__ = ("_verdict", "check")
    span_type = c.SpanType.VERIFICATION.value

    def __init__(self, agent: str | None, check: str, *, target: Output | Delegation | str | None = None,
                 coverage: float | None = None) -> None:
        self._verdict: str | None = None
        self.check = check = _named(check, "a check's name")
        attrs: dict[str, Any] = {c.VERIFICATION_CHECK: check}
        if agent:
            attrs[c.GEN_AI_AGENT_NAME] = agent
        if isinstance(target, Output):
            attrs[c.VERIFICATION_TARGET] = target.id
            attrs[c.INPUT_OUTPUT_IDS] = _output_ids([target])
        elif isinstance(target, Delegation):
            attrs[c.VERIFICATION_TARGET] = target.delegation_id
        elif target is not None:
            attrs[c.VERIFICATION_TARGET] = str(target)
        if coverage is not None:
            try:
                attrs[c.VERIFICATION_COVERAGE] = float(coverage)
            except (TypeError, ValueError):
                raise UsageError(f"coverage must be a number from 0 to 1, not {coverage!r}") from None
        super().__init__(f"{c.VERIFY_SPAN_PREFIX} {check}", attrs)

    def __enter__(self) -> Verification:
        return super().__enter__()

    def verdict(self, verdict: str | c.Verdict, explanation: str | None = None) -> None:
        """pass, fail or error; also written as a GenAI evaluation event for other OTel tools."""
        self._check_open("verdict()")
        verdict = verdict.value if isinstance(verdict, c.Verdict) else verdict
        if verdict not in _VERDICTS:
            raise UsageError(f"verdict must be one of {sorted(_VERDICTS)}, not {verdict!r}")
        self._verdict = verdict
        self.span.set_attribute(c.VERIFICATION_VERDICT, verdict)
        event: dict[str, Any] = {c.GEN_AI_EVALUATION_NAME: self.check, c.GEN_AI_EVALUATION_SCORE_LABEL: verdict}
        if explanation:
            event[c.GEN_AI_EVALUATION_EXPLANATION] = _clean(explanation)
        self._add_event(c.GEN_AI_EVALUATION_RESULT_EVENT, event)

    def _closing(self) -> None:
        if self._verdict is None and self._failed:
            self.span.set_attribute(c.VERIFICATION_VERDICT, c.Verdict.ERROR.value)


class Compensation(_Scope):
    """A ``handoff.compensate <action>`` span undoing an earlier side effect."""

    __slots__ = ()
    span_type = c.SpanType.COMPENSATION.value

    def __init__(self, agent: str | None, action: str, *, of: Tool | str | None = None) -> None:
        attrs: dict[str, Any] = {}
        if agent:
            attrs[c.GEN_AI_AGENT_NAME] = agent
        if of is not None:
            attrs[c.COMPENSATION_OF] = of.span_id if isinstance(of, Tool) else str(of)
        super().__init__(f"{c.COMPENSATE_SPAN_PREFIX} {action}", attrs)

    def __enter__(self) -> Compensation:
        return super().__enter__()


# --- module-level entry points ---------------------------------------------------------------

def run(name: str, *, run_id: str | None = None, tags: Iterable[str] = (), topology: str | None = None,
        test_id: str | None = None, attributes: Mapping[str, Any] | None = None) -> Run:
    """Open a run: ``with sdk.run("build-api", tags=["nightly"]) as run: ...``."""
    return Run(name, run_id=run_id, tags=tags, topology=topology, test_id=test_id, attributes=attributes)


def agent(name: str, *, role: str | None = None, model: str | None = None, agent_id: str | None = None,
          description: str | None = None, consumes: Iterable[Output | str] | None = None) -> Agent:
    """Open an agent's turn: ``with sdk.agent("supervisor", role="supervisor") as sup: ...``."""
    return Agent(name, role=role, model=model, agent_id=agent_id, description=description, consumes=consumes)


def current_agent() -> Agent | None:
    """The agent whose ``with`` block (or ``traced_agent`` function) is running here, if any."""
    return _agent_var.get()


def current_run_id() -> str | None:
    """The id of the run open here, if any (to tie other records to it)."""
    return _run_var.get().run_id or None


def current_run() -> Run | None:
    """The run whose ``with`` block is running here (this thread or task), if any."""
    return _run_var.get().handle


def _the_run() -> Run:
    run = current_run()
    if run is None:
        raise UsageError("no run is open here: call this inside `with sdk.run(...)` "
                         "(in another thread, wrap the function with sdk.propagate)")
    return run


def checkpoint(checkpoint_id: str) -> None:
    """``run.checkpoint`` on the current run."""
    _the_run().checkpoint(checkpoint_id)


def resume(checkpoint_id: str) -> None:
    """``run.resume`` on the current run: it continues from ``checkpoint_id`` instead of restarting."""
    _the_run().resume(checkpoint_id)


def approval(action: str, approver: str, decision: str = "approved") -> None:
    """A human approval event on the current span (put it on the span of the action it gates)."""
    span = trace.get_current_span()
    # Without configure, spans are OpenTelemetry's invalid no-op span: an open run or agent
    # tells that a with block is running all the same.
    if span is trace.INVALID_SPAN and _agent_var.get() is None and _run_var.get() is _NO_RUN:
        raise UsageError("no span is open here: call sdk.approval inside the `with` block of the action "
                         "it gates (or use handle.approval); in another thread, wrap the function with "
                         "sdk.propagate")
    span.add_event(c.EVENT_APPROVAL, _approval_attributes(action, approver, decision))


def _in_context(ctx: contextvars.Context, steps: Iterator[Any]) -> Generator[Any, Any, Any]:
    """``yield from steps`` (a generator, or an awaitable's iterator), each step run in ``ctx``."""
    step: Callable[[Any], Any] = steps.send  # type: ignore[attr-defined]
    value: Any = None
    while True:
        try:
            item = ctx.run(step, value)
        except StopIteration as stop:
            return stop.value
        try:
            value, step = (yield item), steps.send  # type: ignore[attr-defined]
        except GeneratorExit:
            ctx.run(steps.close)  # type: ignore[attr-defined]
            raise
        except BaseException as exc:  # thrown in by the consumer: passed on
            value, step = exc, steps.throw  # type: ignore[attr-defined]


class _InContext:
    """Await ``awaitable`` with each of its steps run in ``ctx``."""

    __slots__ = ("_ctx", "_awaitable")

    def __init__(self, ctx: contextvars.Context, awaitable: Any) -> None:
        self._ctx = ctx
        self._awaitable = awaitable

    def __await__(self) -> Generator[Any, Any, Any]:
        return (yield from _in_context(self._ctx, self._awaitable.__await__()))


def _exit_in(ctx: contextvars.Context, scope: _Scope, failure: BaseException | None) -> None:
    """Close ``scope`` in the context it was opened in, with the exception that ended it, if any."""
    ctx.run(scope.__exit__, type(failure) if failure else None, failure, failure.__traceback__ if failure else None)


def _traced(fn: F, open_scope: Callable[[tuple[Any, ...], dict[str, Any]], _Scope]) -> F:
    """``fn`` (sync or async, a function or a generator) with each call inside the span ``open_scope`` opens.

    A generator's body runs in a context of its own, entered at each step: its span is current
    inside it but not in the consumer between items, and ends when it is exhausted or closed.
    """
    if inspect.isasyncgenfunction(fn):
        @functools.wraps(fn)
        async def async_gen_wrapper(*args: Any, **kwargs: Any) -> Any:
            ctx = contextvars.copy_context()
            scope = ctx.run(open_scope, args, kwargs)
            agen = fn(*args, **kwargs)
            ctx.run(scope.__enter__)
            failure: BaseException | None = None
            try:
                step, value = agen.asend, None
                while True:
                    try:
                        item = await _InContext(ctx, step(value))
                    except StopAsyncIteration:
                        return
                    try:
                        value, step = (yield item), agen.asend
                    except GeneratorExit:
                        await _InContext(ctx, agen.aclose())
                        raise
                    except BaseException as exc:  # thrown in by the consumer: passed on
                        value, step = exc, agen.athrow
            except BaseException as exc:
                failure = exc
                raise
            finally:
                _exit_in(ctx, scope, failure)
        return async_gen_wrapper  # type: ignore[return-value]

    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def gen_wrapper(*args: Any, **kwargs: Any) -> Any:
            ctx = contextvars.copy_context()
            scope = ctx.run(open_scope, args, kwargs)
            gen = fn(*args, **kwargs)
            ctx.run(scope.__enter__)
            failure: BaseException | None = None
            try:
                return (yield from _in_context(ctx, gen))
            except BaseException as exc:
                failure = exc
                raise
            finally:
                _exit_in(ctx, scope, failure)
        return gen_wrapper  # type: ignore[return-value]

    if inspect.iscoroutinefunction(fn):
        @functools.wraps(fn)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            with open_scope(args, kwargs):
                return await fn(*args, **kwargs)
        return async_wrapper  # type: ignore[return-value]

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with open_scope(args, kwargs):
            return fn(*args, **kwargs)
    return wrapper  # type: ignore[return-value]


def traced_agent(name: str | None = None, *, role: str | None = None,
                 model: str | None = None) -> Callable[[F], F]:
    """Decorate a function (sync or async, generators too) so each call is an agent span;
    ``current_agent()`` inside."""
    def decorate(fn: F) -> F:
        agent_name = name or fn.__name__
        return _traced(fn, lambda args, kwargs: Agent(agent_name, role=role, model=model))
    return decorate


def traced_tool(name: str | None = None, *, side_effect: bool = False,
                high_stakes: bool = False) -> Callable[[F], F]:
    """Decorate a function (sync or async, generators too) so each call is a tool span of the
    current agent."""
    def decorate(fn: F) -> F:
        tool_name = name or fn.__name__

        def open_tool(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Tool:
            current = _agent_var.get()
            return Tool(current.name if current else None, tool_name, {"args": args, "kwargs": kwargs},
                        side_effect=side_effect, high_stakes=high_stakes)
        return _traced(fn, open_tool)
    return decorate


def propagate(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap ``fn`` to run in the caller's context (current span, run, agent) on another thread."""
    ctx = contextvars.copy_context()

    @functools.wraps(fn)
    def in_context(*args: Any, **kwargs: Any) -> Any:
        # A copy per call: one Context object cannot be entered by two threads at once.
        return ctx.copy().run(fn, *args, **kwargs)
    return in_context


class ThreadPoolExecutor(concurrent.futures.ThreadPoolExecutor):
    """A thread pool whose tasks run in the submitter's context, so their spans get the right parent."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[Any]:
        return super().submit(propagate(fn), *args, **kwargs)
