"""A conversation log (one record of a published dataset) and how it becomes span rows.

Every text importer reads its format into ``Conversation`` objects; this module alone decides
the span shape: one root run span per conversation, one ``message`` span per message with its
index as ``handoff.step``. Ids are derived from the format, the system and the record's own id
within its scope (``Conversation.scoped_id``), so importing the same record twice gives the same
trace (and ``write`` skips traces already stored) while two records of a dataset get two.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from handoffs import conventions as c
from handoffs.store import SpanBatch, Store, schema

# Large imports are inserted in batches of about this many span rows: each INSERT costs ~13 ms
# and makes a part whatever its size (DESIGN.md), so fewer, larger inserts.
BATCH_ROWS = 10_000

SCOPE_NAME = "handoffs.importers"

# "Orchestrator (-> WebSurfer)", "Orchestrator (thought)", "Alice(ProductManager)": the agent is
# the text before the parenthesis; "-> X" inside it names the agent the message goes to.
_KIND_SUFFIX = re.compile(r"^\s*(?P<agent>[^()]*?)\s*\((?P<kind>[^()]*)\)\s*$")
_TARGET = re.compile(r"^\s*->\s*(?P<target>.+?)\s*$")


@dataclass(frozen=True)
class ImportedMessage:
    """One message of a log: its speaker (agent name), raw role, text and hand-off target."""

    agent: str
    role: str
    content: str
    target: str = ""


@dataclass
class Conversation:
    """One record of a dataset: its own id, its format, the system that produced it, messages.

    ``task`` is the problem statement the team was given (an input, not a label). Dataset labels
    (mistake agent and step, MAST annotations) are never carried here, so nothing downstream of
    the store can read them by accident. ``source_id`` is the dataset's own id (a file's stem,
    a ``trace_id`` field), which labels are joined on; ``scope`` is the part of the dataset it
    is unique in (Who&When's folder, ``Hand-Crafted``; MAST's benchmark and model), as datasets
    number their records per part.
    """

    source_id: str
    source_format: str
    messages: list[ImportedMessage]
    system: str = ""
    task: str = ""
    attributes: dict[str, str] = field(default_factory=dict)
    scope: str = ""

    @property
    def scoped_id(self) -> str:
        """The id that names this record alone in its dataset: ``Hand-Crafted/1``."""
        return f"{self.scope}/{self.source_id}" if self.scope else self.source_id

    @property
    def trace_id(self) -> str:
        # The system is part of the key: MAD numbers its records per system, so two systems'
        # records can share an id.
        return _hex(f"{self.source_format}\x00{self.system}\x00{self.scoped_id}", 32)

    @property
    def run_id(self) -> str:
        system = f"{self.system}:" if self.system else ""
        return f"{self.source_format}:{system}{self.scoped_id}"


def split_speaker(raw: str) -> tuple[str, str]:
    """``"Orchestrator (-> WebSurfer)"`` -> ``("Orchestrator", "WebSurfer")``; plain names pass.

    Returns the agent's name and the hand-off target named in the parenthesis, if any.
    """
    m = _KIND_SUFFIX.match(raw or "")
    if not m or not m.group("agent"):
        return (raw or "").strip(), ""
    target = _TARGET.match(m.group("kind"))
    return m.group("agent"), target.group("target") if target else ""


def _hex(text: str, length: int) -> str:
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()[:length]


def append_conversation(batch: SpanBatch, conv: Conversation, start_ns: int) -> None:
    """Append the run span and one message span per message of ``conv`` to ``batch``.

    Messages carry no timestamps in these datasets; they are laid out 1 ms apart from
    ``start_ns`` so that time order equals step order.
    """
    trace_id = conv.trace_id
    root = _hex(trace_id + ":run", 16)
    resource = {
        c.RESOURCE_SOURCE_ID: conv.source_id,
        c.RESOURCE_SOURCE_FORMAT: conv.source_format,
        c.SERVICE_NAME: conv.system or conv.source_format,
    }
    if conv.system:
        resource[c.RESOURCE_SYSTEM] = conv.system
    step_ns = 1_000_000
    run_attrs = {c.SPAN_TYPE: c.SpanType.RUN.value, c.RUN_ID: conv.run_id,
                 c.RUN_NAME: conv.scoped_id, **conv.attributes}
    if conv.task:
        run_attrs[c.TASK] = conv.task
    common = dict(trace_id=trace_id, service_name=resource[c.SERVICE_NAME],
                  resource_attributes=resource, scope_name=SCOPE_NAME)
    batch.append(span_id=root, name=f"run {conv.scoped_id}", start_ns=start_ns,
                 duration_ns=step_ns * (len(conv.messages) + 1), attributes=run_attrs, **common)
    for step, msg in enumerate(conv.messages):
        attrs = {
            c.SPAN_TYPE: c.SpanType.MESSAGE.value,
            c.RUN_ID: conv.run_id,
            c.STEP: str(step),
            c.GEN_AI_AGENT_NAME: msg.agent,
            c.MESSAGE_ROLE: msg.role,
            c.MESSAGE_CONTENT: msg.content,
        }
        if msg.target:
            attrs[c.TARGET_AGENT] = msg.target
        batch.append(span_id=_hex(f"{trace_id}:{step}", 16), parent_span_id=root,
                     name=f"message {msg.agent}", start_ns=start_ns + step_ns * (step + 1),
                     duration_ns=step_ns, attributes=attrs, **common)


def _stored(store: Store, trace_ids: list[str]) -> set[str]:
    rows = store.query(
        f"SELECT DISTINCT TraceId AS t FROM {schema.SPAN_TABLE} WHERE TraceId IN {{ids:Array(String)}}",
        {"ids": trace_ids},
    )
    return {r["t"] for r in rows}


@dataclass
class ImportResult:
    """What one ``write`` did: conversations and spans inserted, conversations already there."""

    conversations: int = 0
    spans: int = 0
    skipped: int = 0


def write(store: Store, conversations: Iterable[Conversation], batch_rows: int = BATCH_ROWS,
          result: ImportResult | None = None) -> ImportResult:
    """Insert ``conversations`` into the span table in batches; skip traces already stored.

    A batch is inserted once it holds ``batch_rows`` rows; when a reader fails, what it read
    before the failure is inserted first, so earlier inputs stay imported, and counted in
    ``result`` when one is given (the caller can then say what was kept).
    """
    result = ImportResult() if result is None else result
    pending: list[Conversation] = []
    rows = 0
    records = iter(conversations)
    while True:
        try:
            conv = next(records)
        except StopIteration:
            break
        except Exception:
            # A broken input: what was read before it is stored before the error propagates.
            if pending:
                _flush(store, pending, result)
            raise
        pending.append(conv)
        rows += len(conv.messages) + 1
        if rows >= batch_rows:
            _flush(store, pending, result)
            pending, rows = [], 0
    if pending:
        _flush(store, pending, result)
    return result


def _flush(store: Store, pending: list[Conversation], result: ImportResult) -> None:
    done = _stored(store, [conv.trace_id for conv in pending])
    batch = SpanBatch()
    now = time.time_ns()
    for conv in pending:
        if conv.trace_id in done:
            result.skipped += 1
            continue
        done.add(conv.trace_id)  # the same record twice in one import is stored once
        append_conversation(batch, conv, now)
        result.conversations += 1
    if len(batch):
        result.spans += store.insert_spans(batch)
