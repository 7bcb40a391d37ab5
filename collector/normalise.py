"""Spans of other instrumentations, read into handoffs conventions at ingest (originals kept).

Agents, hand-offs, tools and model calls are spelled six ways by the instrumentations our
users already run: the OpenTelemetry GenAI conventions (and their hand-off proposal),
OpenInference, OpenLLMetry (Traceloop), the OpenAI Agents SDK's own spans, CrewAI's and
LangGraph's hand-off tools, and AutoGen's runtime messaging spans. ``normalise_span`` reads
each spelling from one span and adds ours (``handoff.span.type``, ``handoff.source.agent`` /
``handoff.target.agent``, ``gen_ai.agent.name``, ``handoff.run.id``) plus
``handoff.normalised_from`` naming the convention read, so detectors read one shape.

Facts that one span cannot give (which agent a hand-off left, whether its target ever ran,
the run of a trace with no conversation id) need the whole trace: ``resolve_traces`` adds
them at read time and rewrites the affected rows (the span table keeps the last row written
for a span). ``docs/normalisation.md`` has the table of what is read from where.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from handoffs import conventions as c
from handoffs.store import SPAN_ARROW_SCHEMA, Store, schema
from handoffs.store.spans import ERROR_STATUS_CODES

from .otlp import Decoded

# Values of handoff.normalised_from: which convention a fact was read from.
FROM_GEN_AI = "gen_ai"
FROM_OPENINFERENCE = "openinference"
FROM_OPENLLMETRY = "openllmetry"
FROM_OPENAI_AGENTS = "openai_agents"
FROM_AUTOGEN = "autogen"
FROM_CREWAI = "crewai"
FROM_LANGGRAPH = "langgraph"

# --- foreign attribute names (read only; ours live in handoffs.conventions) ----------------
OI_SPAN_KIND = "openinference.span.kind"
OI_AGENT_NAME = "agent.name"
OI_NODE_ID = "graph.node.id"
OI_NODE_PARENT_ID = "graph.node.parent_id"
OI_TOOL_NAME = "tool.name"
OI_INPUT = "input.value"
OI_OUTPUT = "output.value"
OI_OUTPUT_MIME = "output.mime_type"
OI_METADATA = "metadata"
OI_SESSION_ID = "session.id"
OI_MODEL_NAME = "llm.model_name"
OI_LLM_OUTPUT_CONTENT = "llm.output_messages.0.message.content"
OI_LLM_TOKENS_IN = "llm.token_count.prompt"
OI_LLM_TOKENS_OUT = "llm.token_count.completion"

TL_SPAN_KIND = "traceloop.span.kind"
TL_ENTITY_NAME = "traceloop.entity.name"
TL_SESSION_ID = "traceloop.association.properties.session_id"
TL_HANDOFF_FROM = "gen_ai.handoff.from_agent"
TL_HANDOFF_TO = "gen_ai.handoff.to_agent"
TL_HANDOFF_OPERATION = "handoff"

OA_FROM_AGENT = "from_agent"
OA_TO_AGENT = "to_agent"
OA_HANDOFF_SPAN = "handoff"

GEN_AI_TOOL_ARGUMENTS = "gen_ai.tool.call.arguments"
GEN_AI_TOOL_RESULT = "gen_ai.tool.call.result"
GEN_AI_SYSTEM = "gen_ai.system"
CREWAI_AGENT_ROLE = "crewai.agent.role"

AG_MESSAGING_OPERATION = "messaging.operation"
AG_MESSAGE = "message"
AG_HANDOFF_TYPE = "HandoffMessage"

# Tool names that hand work over. transfer_to_<agent> is the GenAI proposal's, LangGraph's
# and AutoGen's spelling; CrewAI's manager delegates through its coworker tools.
TRANSFER_PREFIX = "transfer_to_"
OA_HANDOFF_PREFIX = "handoff to "
CREWAI_DELEGATE_TOOLS = frozenset({"delegate_work_to_coworker", "Delegate work to coworker",
                                   "ask_question_to_coworker", "Ask question to coworker"})
# Model-call operation names of the GenAI conventions.
LLM_OPERATIONS = frozenset({"chat", "text_completion", "generate_content", "embeddings"})
# Names of the span that wraps a whole run in each framework (OpenInference spellings).
RUN_SPAN_NAMES = frozenset({"LangGraph", "Crew_kickoff", "Crew.kickoff"})
RUN_SPAN_SUFFIXES = (".run_stream", ".run")
RUN_SPAN_PREFIXES = ("Crew_",)  # CrewAI's crew span: Crew_<crew id>

_FAST_KEYS = (c.GEN_AI_OPERATION_NAME, OI_SPAN_KIND, TL_SPAN_KIND, TL_HANDOFF_FROM, OA_FROM_AGENT,
              AG_MESSAGING_OPERATION, c.GEN_AI_HANDOFF_TARGET_NAME)


def normalise_span(name: str, attributes: dict[str, str], resource: dict[str, str]) -> dict[str, str]:
    """Return ``attributes`` with our conventions added where another convention says the same.

    Original attributes are kept as they are; ours are only added, never overwrite a value
    already present (CrewAI's hashed ``gen_ai.agent.name`` is the one exception: the readable
    role takes its place and the hash moves to ``gen_ai.agent.id``). Spans that already carry
    ``handoff.span.type`` (our SDK's) come back untouched, at the cost of one lookup.
    """
    if c.SPAN_TYPE in attributes or not any(k in attributes for k in _FAST_KEYS):
        return attributes
    facts = (_openllmetry(attributes) or _openai_agents(name, attributes)
             or _openinference(name, attributes) or _gen_ai(name, attributes)
             or _autogen_messaging(attributes))
    if not facts:
        return attributes
    out = dict(attributes)
    if facts.pop(_REPLACE_AGENT, None) is not None:
        out.setdefault(c.GEN_AI_AGENT_ID, out.get(c.GEN_AI_AGENT_NAME, ""))
        out[c.GEN_AI_AGENT_NAME] = facts.pop(c.GEN_AI_AGENT_NAME)
    for key, value in facts.items():
        if value and key not in out:
            out[key] = value
    run_id = attributes.get(c.GEN_AI_CONVERSATION_ID) or attributes.get(OI_SESSION_ID) \
        or attributes.get(TL_SESSION_ID)
    if run_id:
        out.setdefault(c.RUN_ID, run_id)
    return out


_REPLACE_AGENT = "\x00replace-agent"


def _delegation(source: str, target: str, mode: c.HandoffMode, origin: str,
                task: str = "") -> dict[str, str]:
    facts = {
        c.SPAN_TYPE: c.SpanType.DELEGATION.value,
        c.SOURCE_AGENT: source,
        c.TARGET_AGENT: target,
        c.GEN_AI_HANDOFF_SOURCE_NAME: source,
        c.GEN_AI_HANDOFF_TARGET_NAME: target,
        c.MODE: mode.value,
        c.TASK: task,
        c.NORMALISED_FROM: origin,
    }
    return facts


def _typed(span_type: c.SpanType, origin: str, **extra: str) -> dict[str, str]:
    return {c.SPAN_TYPE: span_type.value, c.NORMALISED_FROM: origin, **extra}


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, TypeError):
        return None


def _tool_delegation(tool: str, arguments: str, origin: str) -> dict[str, str] | None:
    """A hand-off carried by a tool call: ``transfer_to_X`` or CrewAI's coworker tools."""
    if tool.startswith(TRANSFER_PREFIX) and len(tool) > len(TRANSFER_PREFIX):
        return _delegation("", tool[len(TRANSFER_PREFIX):], c.HandoffMode.TRANSFER, origin)
    if tool in CREWAI_DELEGATE_TOOLS:
        args = _json(arguments)
        if not isinstance(args, dict):
            return None
        coworker = str(args.get("coworker") or "").strip()
        task = str(args.get("task") or args.get("question") or "")
        if coworker:
            return _delegation("", coworker, c.HandoffMode.DELEGATE, FROM_CREWAI, task)
    return None


def _openllmetry(a: Mapping[str, str]) -> dict[str, str] | None:
    if a.get(c.GEN_AI_OPERATION_NAME) == TL_HANDOFF_OPERATION or TL_HANDOFF_FROM in a:
        return _delegation(a.get(TL_HANDOFF_FROM, ""), a.get(TL_HANDOFF_TO, ""),
                           c.HandoffMode.TRANSFER, FROM_OPENLLMETRY)
    kind = a.get(TL_SPAN_KIND)
    if kind is None:
        return None
    entity = a.get(TL_ENTITY_NAME, "")
    if kind == "agent":
        return _typed(c.SpanType.AGENT, FROM_OPENLLMETRY, **{c.GEN_AI_AGENT_NAME: entity})
    if kind == "tool":
        return _tool_delegation(entity, "", FROM_OPENLLMETRY) or _typed(
            c.SpanType.TOOL, FROM_OPENLLMETRY, **{c.GEN_AI_TOOL_NAME: entity})
    if kind == "workflow":
        return _typed(c.SpanType.RUN, FROM_OPENLLMETRY, **{c.RUN_NAME: entity})
    return None


def _openai_agents(name: str, a: Mapping[str, str]) -> dict[str, str] | None:
    """The Agents SDK's own ``handoff`` span (span_data ``from_agent`` / ``to_agent``)."""
    if OA_FROM_AGENT in a and (name == OA_HANDOFF_SPAN or OA_TO_AGENT in a):
        return _delegation(a.get(OA_FROM_AGENT, ""), a.get(OA_TO_AGENT, ""),
                           c.HandoffMode.TRANSFER, FROM_OPENAI_AGENTS)
    return None


def _openinference(name: str, a: Mapping[str, str]) -> dict[str, str] | None:
    kind = a.get(OI_SPAN_KIND)
    if kind is None:
        return None
    if kind == "AGENT":
        agent = a.get(OI_AGENT_NAME) or a.get(OI_NODE_ID, "")
        metadata = a.get(OI_METADATA, "")
        if not agent and '"langgraph_node"' in metadata:
            # LangGraph's prebuilt ReAct loop labels its model node AGENT: a node, not the team's agent.
            return _langgraph_node(name, a, metadata)
        if not agent:
            # The Agents SDK's trace root is an AGENT span with no agent: the run itself.
            return _typed(c.SpanType.RUN, FROM_OPENINFERENCE, **{c.RUN_NAME: name})
        return _typed(c.SpanType.AGENT, FROM_OPENINFERENCE, **{c.GEN_AI_AGENT_NAME: agent})
    if kind == "TOOL":
        tool = a.get(OI_TOOL_NAME) or name
        if name.startswith(OA_HANDOFF_PREFIX):
            # OpenAI Agents SDK via OpenInference: input.value is the source, output.value the target.
            target = a.get(OI_OUTPUT) or name[len(OA_HANDOFF_PREFIX):]
            return _delegation(a.get(OI_INPUT, ""), target, c.HandoffMode.TRANSFER, FROM_OPENINFERENCE)
        found = _tool_delegation(tool, a.get(OI_INPUT, ""), FROM_OPENINFERENCE)
        if found is not None:
            return found
        return _typed(c.SpanType.TOOL, FROM_OPENINFERENCE, **{c.GEN_AI_TOOL_NAME: tool})
    if kind == "LLM":
        return _typed(c.SpanType.LLM, FROM_OPENINFERENCE, **{
            c.GEN_AI_REQUEST_MODEL: a.get(OI_MODEL_NAME, ""),
            c.GEN_AI_USAGE_INPUT_TOKENS: a.get(OI_LLM_TOKENS_IN, ""),
            c.GEN_AI_USAGE_OUTPUT_TOKENS: a.get(OI_LLM_TOKENS_OUT, ""),
            c.MESSAGE_CONTENT: a.get(OI_LLM_OUTPUT_CONTENT, ""),
        })
    if kind == "CHAIN":
        metadata = a.get(OI_METADATA, "")
        if '"langgraph_node"' in metadata:
            return _langgraph_node(name, a, metadata)
        if name in RUN_SPAN_NAMES or name.endswith(RUN_SPAN_SUFFIXES) or name.startswith(RUN_SPAN_PREFIXES):
            return _typed(c.SpanType.RUN, FROM_OPENINFERENCE, **{c.RUN_NAME: name})
    return None


def _json_string_after(text: str, key: str) -> str | None:
    """The JSON string value of ``key`` in ``text`` (as ``json.dumps`` writes it), without parsing it all."""
    marker = f'"{key}": "'
    at = text.find(marker)
    if at < 0:
        return None
    start = at + len(marker)
    end = text.find('"', start)
    value = text[start:end] if end >= 0 else ""
    return value if "\\" not in value else None


def _langgraph_node(name: str, a: Mapping[str, str], metadata: str) -> dict[str, str] | None:
    """A top-level LangGraph node is an agent; a ``Command(goto=...)`` it returns is a hand-off.

    Node spans are many and their JSON large: the keys are found by substring, not parsed.
    """
    if _json_string_after(metadata, "langgraph_node") != name or name.startswith("__"):
        return None
    if "|" in (_json_string_after(metadata, "langgraph_checkpoint_ns") or ""):
        return None  # a node of a subgraph (a worker's own ReAct loop), not an agent of the team
    output = a.get(OI_OUTPUT, "")
    goto = _json_string_after(output, "goto") if '"goto"' in output else None
    if goto and not goto.startswith("__") and goto != name:
        # The supervisor's routing turn is the hand-off: the node span carries the edge, so
        # detectors see it as a delegation (its model calls stay under it, named for it).
        facts = _delegation(name, goto, c.HandoffMode.TRANSFER, FROM_LANGGRAPH)
        facts[c.GEN_AI_AGENT_NAME] = name
        return facts
    return _typed(c.SpanType.AGENT, FROM_LANGGRAPH, **{c.GEN_AI_AGENT_NAME: name})


def _gen_ai(name: str, a: Mapping[str, str]) -> dict[str, str] | None:
    target = a.get(c.GEN_AI_HANDOFF_TARGET_NAME)
    if target:
        return _delegation(a.get(c.GEN_AI_HANDOFF_SOURCE_NAME, ""), target, c.HandoffMode.TRANSFER,
                           FROM_GEN_AI)
    op = a.get(c.GEN_AI_OPERATION_NAME)
    if op is None:
        return None
    if op == c.Operation.INVOKE_AGENT.value:
        facts = _typed(c.SpanType.AGENT, FROM_GEN_AI)
        role = a.get(CREWAI_AGENT_ROLE)
        if role:
            facts[c.NORMALISED_FROM] = FROM_CREWAI
            facts[c.GEN_AI_AGENT_NAME] = role
            facts[_REPLACE_AGENT] = "1"
        return facts
    if op == c.Operation.EXECUTE_TOOL.value:
        tool = a.get(c.GEN_AI_TOOL_NAME) or name.removeprefix(op + " ")
        found = _tool_delegation(tool, a.get(GEN_AI_TOOL_ARGUMENTS, ""), FROM_GEN_AI)
        if found is not None:
            found[c.SOURCE_AGENT] = found[c.GEN_AI_HANDOFF_SOURCE_NAME] = a.get(c.GEN_AI_AGENT_NAME, "")
            return found
        return _typed(c.SpanType.TOOL, FROM_GEN_AI, **{c.GEN_AI_TOOL_NAME: tool})
    if op in LLM_OPERATIONS:
        return _typed(c.SpanType.LLM, FROM_GEN_AI)
    return None


def _autogen_messaging(a: Mapping[str, str]) -> dict[str, str] | None:
    """AutoGen's runtime span carrying a ``HandoffMessage`` to the group chat manager.

    The same hand-off also shows as its ``transfer_to_X`` tool span, which is the delegation;
    this span becomes a message with both ends named, which tells the trace reader who left.
    Only the copy published to the manager (``{"message": ...}``) is read, once per hand-off.
    """
    message = a.get(AG_MESSAGE, "")
    if AG_HANDOFF_TYPE not in message or not message.startswith('{"message"'):
        return None
    body = (_json(message) or {}).get("message")
    if not isinstance(body, dict) or body.get("type") != AG_HANDOFF_TYPE:
        return None
    return _typed(c.SpanType.MESSAGE, FROM_AUTOGEN, **{
        c.SOURCE_AGENT: str(body.get("source") or ""),
        c.TARGET_AGENT: str(body.get("target") or ""),
        c.GEN_AI_AGENT_NAME: str(body.get("source") or ""),
        c.MESSAGE_CONTENT: str(body.get("content") or ""),
    })


def content_of(attributes: Mapping[str, str]) -> str:
    """The text a span produced, wherever its instrumentation put it (ours first)."""
    for key in (c.MESSAGE_CONTENT, OI_LLM_OUTPUT_CONTENT, GEN_AI_TOOL_RESULT, OI_OUTPUT):
        value = attributes.get(key)
        if value:
            return value
    return ""


# --- read time: facts that need the whole trace -----------------------------------------------

@dataclass
class TraceSpan:
    """One span of a trace, as much of it as ``resolve_trace`` needs."""

    span_id: str
    parent_id: str
    start_ns: int
    end_ns: int
    name: str
    attributes: dict[str, str]
    failed: bool = False


def resolve_trace(trace_id: str, spans: Sequence[TraceSpan]) -> dict[str, dict[str, str]]:
    """Per-trace facts for normalised spans: ``{span_id: attributes to add}``.

    - every normalised span gets ``handoff.run.id`` (the trace id when no conversation id tied
      it to a run at ingest) and the agent it ran under (nearest agent ancestor);
    - a hand-off gets its source agent (nearest agent ancestor, or the AutoGen message naming
      both ends) and, when no status was recorded, ``open`` if its target never ran after it,
      ``completed`` otherwise (``failed`` if the span failed), marked as inferred so that it is
      inferred again when more of the trace arrives;
    - a tool whose span encloses another agent's span (agents as tools) becomes a delegation
      to that agent, its output the deliverable.
    Spans of our own SDK (no ``handoff.normalised_from``) are left alone.
    """
    by_id = {s.span_id: s for s in spans}
    foreign = [s for s in spans if c.NORMALISED_FROM in s.attributes]
    if not foreign:
        return {}
    run_id = next((s.attributes[c.RUN_ID] for s in foreign if s.attributes.get(c.RUN_ID)), trace_id)

    def agent_above(span: TraceSpan) -> str:
        seen = 0
        parent = by_id.get(span.parent_id)
        while parent is not None and seen < len(spans):
            if parent.attributes.get(c.SPAN_TYPE) == c.SpanType.AGENT.value:
                return parent.attributes.get(c.GEN_AI_AGENT_NAME, "")
            parent, seen = by_id.get(parent.parent_id), seen + 1
        return ""

    agent_starts: dict[str, list[tuple[int, bool]]] = {}
    for s in foreign:
        if s.attributes.get(c.SPAN_TYPE) == c.SpanType.AGENT.value and s.attributes.get(c.GEN_AI_AGENT_NAME):
            agent_starts.setdefault(s.attributes[c.GEN_AI_AGENT_NAME], []).append((s.start_ns, s.failed))
    announced = [s for s in foreign if s.attributes.get(c.SPAN_TYPE) == c.SpanType.MESSAGE.value
                 and s.attributes.get(c.TARGET_AGENT)]

    updates: dict[str, dict[str, str]] = {}
    for s in foreign:
        a = s.attributes
        add: dict[str, str] = {}
        if not a.get(c.RUN_ID):
            add[c.RUN_ID] = run_id
        kind = a.get(c.SPAN_TYPE)
        owner = agent_above(s) or _delegator_above(s, by_id, len(spans))
        if kind == c.SpanType.TOOL.value:
            worker = _agent_below(s, spans, by_id)
            if worker and worker != owner:
                add.update({c.SPAN_TYPE: c.SpanType.DELEGATION.value, c.MODE: c.HandoffMode.DELEGATE.value,
                            c.TARGET_AGENT: worker, c.GEN_AI_HANDOFF_TARGET_NAME: worker})
                kind = c.SpanType.DELEGATION.value
        if kind != c.SpanType.AGENT.value and owner and not a.get(c.GEN_AI_AGENT_NAME):
            add[c.GEN_AI_AGENT_NAME] = owner
        if kind == c.SpanType.DELEGATION.value:
            target = a.get(c.TARGET_AGENT) or add.get(c.TARGET_AGENT, "")
            if not a.get(c.SOURCE_AGENT):
                source = owner or next((m.attributes.get(c.SOURCE_AGENT, "") for m in announced
                                        if m.attributes[c.TARGET_AGENT] == target and m.start_ns >= s.start_ns), "")
                if source:
                    add[c.SOURCE_AGENT] = add[c.GEN_AI_HANDOFF_SOURCE_NAME] = source
            if not a.get(c.DELEGATION_STATUS) or a.get(c.STATUS_INFERRED):
                # Inferred, not recorded: inferred again, as spans of the trace may have arrived since.
                status = _status(s, target, agent_starts, add.get(c.MODE) or a.get(c.MODE, ""))
                if status != a.get(c.DELEGATION_STATUS):
                    add[c.DELEGATION_STATUS] = status
                    add[c.STATUS_INFERRED] = "1"
        if add:
            updates[s.span_id] = add
    return updates


def _delegator_above(span: TraceSpan, by_id: Mapping[str, TraceSpan], limit: int) -> str:
    """The agent of an enclosing span that names its agent itself (a LangGraph routing node)."""
    parent, hops = by_id.get(span.parent_id), 0
    while parent is not None and hops < limit:
        if parent.attributes.get(c.SPAN_TYPE) != c.SpanType.RUN.value and parent.attributes.get(c.GEN_AI_AGENT_NAME):
            return parent.attributes[c.GEN_AI_AGENT_NAME]
        parent, hops = by_id.get(parent.parent_id), hops + 1
    return ""


def _agent_below(span: TraceSpan, spans: Sequence[TraceSpan], by_id: Mapping[str, TraceSpan]) -> str:
    """The first agent whose span runs inside ``span`` (a worker called as a tool)."""
    for s in sorted(spans, key=lambda x: x.start_ns):
        if s.attributes.get(c.SPAN_TYPE) != c.SpanType.AGENT.value or s.start_ns < span.start_ns:
            continue
        parent, hops = by_id.get(s.parent_id), 0
        while parent is not None and hops < len(spans):
            if parent.span_id == span.span_id:
                return s.attributes.get(c.GEN_AI_AGENT_NAME, "")
            parent, hops = by_id.get(parent.parent_id), hops + 1
    return ""


def _status(span: TraceSpan, target: str, agent_starts: Mapping[str, list[tuple[int, bool]]],
            mode: str) -> str:
    if span.failed:
        return c.DelegationStatus.FAILED.value
    if mode == c.HandoffMode.DELEGATE.value:
        # The caller waited for the result: the tool span closing normally delivered it.
        return c.DelegationStatus.COMPLETED.value
    # Control passed: the hand-off is completed once the target ran after it (spans of the
    # target are siblings, ordered in time, not children); failed if it only ran and failed.
    runs = [failed for start, failed in agent_starts.get(target, ()) if start >= span.start_ns]
    if not runs:
        return c.DelegationStatus.OPEN.value
    return c.DelegationStatus.FAILED.value if all(runs) else c.DelegationStatus.COMPLETED.value


_READ = f"""SELECT * FROM {schema.SPAN_TABLE} FINAL
WHERE TraceId IN {{traces:Array(String)}}
ORDER BY TraceId, Timestamp"""


def resolve_traces(store: Store, trace_ids: Iterable[str]) -> int:
    """Normalise the stored spans of ``trace_ids`` and add the per-trace facts of ``resolve_trace``.

    Detectors call it before judging traces that came from other instrumentations. Rows written
    past our collector (by the OpenTelemetry Collector's exporter) get ``normalise_span`` here
    first. It rewrites
    only the spans that gain an attribute (the span table keeps the last row written for a
    span id), so calling it again is cheap and changes nothing. Returns the rows rewritten.
    """
    ids = sorted(set(trace_ids))
    if not ids:
        return 0
    table = store.query_arrow(_READ, {"traces": ids})
    if not table.num_rows:
        return 0
    rows = table.to_pylist()
    by_trace: dict[str, list[int]] = {}
    for i, row in enumerate(rows):
        row["SpanAttributes"] = dict(row["SpanAttributes"] or {})
        by_trace.setdefault(row["TraceId"], []).append(i)
    changed: set[int] = set()
    for i, row in enumerate(rows):
        # Rows that never met our collector (the OpenTelemetry Collector's exporter wrote them)
        # are normalised here first; ours and already-normalised rows pass in one lookup each.
        attrs = row["SpanAttributes"]
        if c.NORMALISED_FROM not in attrs:
            normalised = normalise_span(row["SpanName"], attrs, dict(row["ResourceAttributes"] or {}))
            if normalised is not attrs:
                row["SpanAttributes"] = normalised
                changed.add(i)
    for trace_id, indexes in by_trace.items():
        spans = [_trace_span(rows[i]) for i in indexes]
        updates = resolve_trace(trace_id, spans)
        for i in indexes:
            attrs = rows[i]["SpanAttributes"]
            add = updates.get(rows[i]["SpanId"])
            if add:
                attrs.update(add)
                changed.add(i)
            if c.NORMALISED_FROM in attrs and c.NORMALISED_RESOLVED not in attrs:
                attrs[c.NORMALISED_RESOLVED] = "1"
                changed.add(i)
    if not changed:
        return 0
    out = [rows[i] for i in sorted(changed)]
    for row in out:
        row["SpanAttributes"] = list(row["SpanAttributes"].items())
        for key in ("Events.Attributes", "Links.Attributes"):
            row[key] = [list((m or {}).items()) if isinstance(m, dict) else m for m in row[key] or []]
    data = pa.Table.from_pylist(out, schema=SPAN_ARROW_SCHEMA)
    return store.insert_spans(data)


def _trace_span(row: Mapping[str, Any]) -> TraceSpan:
    start = _ns(row["Timestamp"])
    return TraceSpan(span_id=row["SpanId"], parent_id=row["ParentSpanId"], start_ns=start,
                     end_ns=start + int(row["Duration"]), name=row["SpanName"],
                     attributes=row["SpanAttributes"], failed=row["StatusCode"] in ERROR_STATUS_CODES)


def _ns(value: Any) -> int:
    """A DateTime64(9) read back through Arrow, as integer nanoseconds."""
    if isinstance(value, int):
        return value
    return int(pa.scalar(value, pa.timestamp("ns")).value)


def normalise_decoded(decoded: Decoded) -> pa.Table:
    """Run ingest normalisation on the rows of other instrumentations; ours pass untouched."""
    table = decoded.table
    if not decoded.foreign:
        return table
    attrs = table.column("SpanAttributes").to_pylist()
    names = table.column("SpanName")
    resources = table.column("ResourceAttributes")
    for i in decoded.foreign:
        pairs = attrs[i]
        resource = dict(resources[i].as_py())
        result = normalise_span(names[i].as_py(), dict(pairs), resource)
        if result is not None:
            attrs[i] = list(result.items())
    column = pa.array(attrs, type=table.schema.field("SpanAttributes").type)
    return table.set_column(table.schema.get_field_index("SpanAttributes"), "SpanAttributes", column)
