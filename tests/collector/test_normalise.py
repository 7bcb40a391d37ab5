"""Ingest normalisation on span payloads the frameworks' own instrumentations produced.

``payloads/*.json`` were recorded by ``capture_payloads.py`` running the example teams under
OpenInference (and AutoGen's built-in GenAI tracing); the ``frameworks`` variants capture the
same payloads live. Conventions no library here emits (OpenLLMetry, the Agents SDK's own
``handoff`` span data, the GenAI proposal, CrewAI's hashed agent names) are checked on the
attribute sets their specifications and ``INTEROP.md`` give.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

from handoffs import conventions as c
from handoffs.collector.normalise import (
    FROM_AUTOGEN,
    FROM_CREWAI,
    FROM_GEN_AI,
    FROM_LANGGRAPH,
    FROM_OPENAI_AGENTS,
    FROM_OPENINFERENCE,
    FROM_OPENLLMETRY,
    TraceSpan,
    content_of,
    normalise_span,
    resolve_trace,
    resolve_traces,
)
from handoffs.store import SpanBatch, Store

PAYLOADS = Path(__file__).parent / "payloads"
FRAMEWORK_MODULES = {"openai_agents": "agents.testing", "autogen": "autogen_agentchat",
                     "langgraph": "langgraph.prebuilt", "crewai": "crewai"}


def _recorded(name: str) -> list[dict[str, Any]]:
    return json.loads((PAYLOADS / f"{name}.json").read_text())


def _live(name: str) -> list[dict[str, Any]]:
    if importlib.util.find_spec(FRAMEWORK_MODULES[name].split(".")[0]) is None:
        pytest.skip(f"{name} is not installed here (see docs/integrations.md)")
    spec = importlib.util.spec_from_file_location("capture_payloads", Path(__file__).parent / "capture_payloads.py")
    assert spec is not None and spec.loader is not None
    capture_payloads = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(capture_payloads)
    return capture_payloads.capture(name)


def _sources(name: str) -> list[Any]:
    return [pytest.param(_recorded, id="recorded"),
            pytest.param(_live, id="live", marks=pytest.mark.frameworks)]


def _normalised(spans: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each span with ingest normalisation applied, then the per-trace facts added."""
    by_trace: dict[str, list[dict[str, Any]]] = {}
    for s in spans:
        s["norm"] = normalise_span(s["name"], dict(s["attributes"]), s["resource"])
        by_trace.setdefault(s["trace_id"], []).append(s)
    for trace_id, members in by_trace.items():
        updates = resolve_trace(trace_id, [
            TraceSpan(m["span_id"], m["parent_id"], m["start_ns"], m["end_ns"], m["name"], m["norm"],
                      m["status"] == "ERROR") for m in members])
        for m in members:
            m["norm"] = {**m["norm"], **updates.get(m["span_id"], {})}
    return spans


def _typed(spans: list[dict[str, Any]], span_type: c.SpanType) -> list[dict[str, str]]:
    return [s["norm"] for s in spans if s["norm"].get(c.SPAN_TYPE) == span_type.value]


def _edges(spans: list[dict[str, Any]]) -> list[tuple[str, str, str, str]]:
    return [(a[c.SOURCE_AGENT], a[c.TARGET_AGENT], a[c.MODE], a[c.DELEGATION_STATUS])
            for a in _typed(spans, c.SpanType.DELEGATION)]


# --- payloads produced by the libraries ---------------------------------------------------

@pytest.mark.parametrize("source", _sources("openai_agents"))
def test_openai_agents_via_openinference(source):
    spans = _normalised(source("openai_agents"))
    # handoff, agents-as-tools, and the hand-off cut short by the turn limit (writer failed)
    assert _edges(spans) == [("triage", "writer", "transfer", "completed"),
                             ("editor", "researcher", "delegate", "completed"),
                             ("triage", "writer", "transfer", "failed")]
    agents = {a[c.GEN_AI_AGENT_NAME] for a in _typed(spans, c.SpanType.AGENT)}
    assert agents == {"triage", "writer", "editor", "researcher"}
    assert len(_typed(spans, c.SpanType.RUN)) == 3
    tool = next(a for a in _typed(spans, c.SpanType.DELEGATION) if a[c.MODE] == "delegate")
    assert content_of(tool).startswith("Sunlight is scattered")  # the worker's deliverable
    assert all(s["norm"][c.NORMALISED_FROM] == FROM_OPENINFERENCE for s in spans if c.SPAN_TYPE in s["norm"])
    # every normalised span is tied to a run: its trace, as no conversation id was given
    assert all(s["norm"][c.RUN_ID] == s["trace_id"] for s in spans if c.SPAN_TYPE in s["norm"])


@pytest.mark.parametrize("source", _sources("autogen"))
def test_autogen_swarm_via_openinference_and_builtin_tracing(source):
    spans = _normalised(source("autogen"))
    edges = _edges(spans)
    # each hand-off shows twice (OpenInference's tool span and AutoGen's execute_tool span)
    assert sorted(set(edges)) == [("supervisor", "writer", "transfer", "completed"),
                                  ("writer", "supervisor", "transfer", "completed")]
    origins = {a[c.NORMALISED_FROM] for a in _typed(spans, c.SpanType.DELEGATION)}
    assert origins == {FROM_GEN_AI, FROM_OPENINFERENCE}
    # AutoGen's HandoffMessage on the runtime span names both ends
    messages = [(a[c.SOURCE_AGENT], a[c.TARGET_AGENT], a[c.NORMALISED_FROM]) for a in _typed(spans, c.SpanType.MESSAGE)]
    assert messages == [("supervisor", "writer", FROM_AUTOGEN), ("writer", "supervisor", FROM_AUTOGEN)]
    assert {a[c.GEN_AI_AGENT_NAME] for a in _typed(spans, c.SpanType.AGENT)} == {"supervisor", "writer"}
    assert [s["name"] for s in spans if s["norm"].get(c.SPAN_TYPE) == c.SpanType.RUN.value] == ["Swarm.run_stream"]


@pytest.mark.parametrize("source", _sources("langgraph"))
def test_langgraph_supervisor_via_openinference(source):
    spans = _normalised(source("langgraph"))
    # the supervisor node that returned Command(goto="researcher") is the hand-off
    assert _edges(spans) == [("supervisor", "researcher", "transfer", "completed")]
    routing = _typed(spans, c.SpanType.DELEGATION)[0]
    assert routing[c.NORMALISED_FROM] == FROM_LANGGRAPH and routing[c.GEN_AI_AGENT_NAME] == "supervisor"
    agents = [a[c.GEN_AI_AGENT_NAME] for a in _typed(spans, c.SpanType.AGENT)]
    assert set(agents) == {"researcher", "supervisor"}  # ReAct's inner "agent" node is not one
    tools = _typed(spans, c.SpanType.TOOL)
    assert [(a[c.GEN_AI_TOOL_NAME], a[c.GEN_AI_AGENT_NAME]) for a in tools] == [("search", "researcher")]
    llm_agents = [a[c.GEN_AI_AGENT_NAME] for a in _typed(spans, c.SpanType.LLM)]
    assert llm_agents == ["supervisor", "researcher", "researcher", "supervisor"]


@pytest.mark.parametrize("source", _sources("crewai"))
def test_crewai_via_openinference(source):
    spans = _normalised(source("crewai"))
    assert [a[c.GEN_AI_AGENT_NAME] for a in _typed(spans, c.SpanType.AGENT)] == ["Manager"]
    assert len(_typed(spans, c.SpanType.RUN)) == 1


# --- conventions no library here emits: their documented attribute sets ----------------------

def test_our_own_spans_pass_through_untouched():
    attrs = {c.SPAN_TYPE: "delegation", c.GEN_AI_OPERATION_NAME: "execute_tool", c.GEN_AI_TOOL_NAME: "transfer_to_x"}
    assert normalise_span("execute_tool transfer_to_x", attrs, {}) is attrs
    plain = {"http.method": "GET"}
    assert normalise_span("GET /", plain, {}) is plain


def test_openllmetry_handoff_and_kinds():
    handoff = normalise_span("planner.handoff", {
        c.GEN_AI_OPERATION_NAME: "handoff", "gen_ai.handoff.from_agent": "planner",
        "gen_ai.handoff.to_agent": "coder", "traceloop.association.properties.session_id": "s-42"}, {})
    assert (handoff[c.SPAN_TYPE], handoff[c.SOURCE_AGENT], handoff[c.TARGET_AGENT]) == ("delegation", "planner", "coder")
    assert handoff[c.GEN_AI_HANDOFF_TARGET_NAME] == "coder" and handoff[c.NORMALISED_FROM] == FROM_OPENLLMETRY
    assert handoff[c.RUN_ID] == "s-42"
    agent = normalise_span("coder.agent", {"traceloop.span.kind": "agent", "traceloop.entity.name": "coder"}, {})
    assert (agent[c.SPAN_TYPE], agent[c.GEN_AI_AGENT_NAME]) == ("agent", "coder")
    workflow = normalise_span("w", {"traceloop.span.kind": "workflow", "traceloop.entity.name": "release"}, {})
    assert (workflow[c.SPAN_TYPE], workflow[c.RUN_NAME]) == ("run", "release")


def test_openai_agents_own_handoff_span_data():
    out = normalise_span("handoff", {"from_agent": "triage", "to_agent": "billing"}, {})
    assert (out[c.SPAN_TYPE], out[c.SOURCE_AGENT], out[c.TARGET_AGENT], out[c.NORMALISED_FROM]) == \
        ("delegation", "triage", "billing", FROM_OPENAI_AGENTS)
    assert out["from_agent"] == "triage"  # originals kept


def test_gen_ai_proposal_and_conversation_id():
    out = normalise_span("execute_tool transfer_to_coder", {
        c.GEN_AI_OPERATION_NAME: "execute_tool", c.GEN_AI_TOOL_NAME: "transfer_to_coder",
        c.GEN_AI_HANDOFF_SOURCE_NAME: "planner", c.GEN_AI_HANDOFF_TARGET_NAME: "coder",
        c.GEN_AI_CONVERSATION_ID: "conv-7"}, {})
    assert (out[c.SOURCE_AGENT], out[c.TARGET_AGENT], out[c.RUN_ID]) == ("planner", "coder", "conv-7")
    chat = normalise_span("chat gpt-4o", {c.GEN_AI_OPERATION_NAME: "chat"}, {})
    assert chat[c.SPAN_TYPE] == "llm"


def test_crewai_hashed_agent_name_and_coworker_tool():
    agent = normalise_span("invoke_agent", {c.GEN_AI_OPERATION_NAME: "invoke_agent",
                                            c.GEN_AI_AGENT_NAME: "5f1e0c3a9b", "crewai.agent.role": "Writer"}, {})
    assert (agent[c.GEN_AI_AGENT_NAME], agent[c.GEN_AI_AGENT_ID], agent[c.NORMALISED_FROM]) == \
        ("Writer", "5f1e0c3a9b", FROM_CREWAI)
    tool = normalise_span("execute_tool delegate_work_to_coworker", {
        c.GEN_AI_OPERATION_NAME: "execute_tool", c.GEN_AI_TOOL_NAME: "delegate_work_to_coworker",
        "gen_ai.tool.call.arguments": json.dumps({"task": "draft it", "context": "", "coworker": "Writer"})}, {})
    assert (tool[c.SPAN_TYPE], tool[c.TARGET_AGENT], tool[c.MODE], tool[c.TASK]) == \
        ("delegation", "Writer", "delegate", "draft it")


def test_existing_values_are_never_overwritten():
    out = normalise_span("x", {"openinference.span.kind": "AGENT", "agent.name": "a",
                               c.GEN_AI_AGENT_NAME: "kept"}, {})
    assert out[c.GEN_AI_AGENT_NAME] == "kept" and out[c.SPAN_TYPE] == "agent"


# --- read time, on the store ----------------------------------------------------------------

def test_resolve_traces_rewrites_only_what_changes(store: Store):
    spans = _recorded("openai_agents")
    batch = SpanBatch()
    for s in spans:
        batch.append(trace_id=s["trace_id"], span_id=s["span_id"], parent_span_id=s["parent_id"],
                     name=s["name"], start_ns=s["start_ns"], duration_ns=s["end_ns"] - s["start_ns"],
                     status_code="Error" if s["status"] == "ERROR" else "Ok",
                     attributes=normalise_span(s["name"], s["attributes"], s["resource"]))
    store.insert_spans(batch)
    traces = sorted({s["trace_id"] for s in spans})

    rewritten = resolve_traces(store, traces)
    assert rewritten == sum(1 for s in spans if c.SPAN_TYPE in normalise_span(s["name"], s["attributes"], {}))
    assert resolve_traces(store, traces) == 0  # nothing left to add
    rows = store.query(f"""
        SELECT SpanAttributes['{c.SOURCE_AGENT}'] AS source, SpanAttributes['{c.TARGET_AGENT}'] AS target,
            SpanAttributes['{c.DELEGATION_STATUS}'] AS status, SpanAttributes['{c.RUN_ID}'] = TraceId AS run_is_trace
        FROM otel_traces FINAL WHERE SpanAttributes['{c.SPAN_TYPE}'] = 'delegation' ORDER BY Timestamp""")
    assert [(r["source"], r["target"], r["status"]) for r in rows] == [
        ("triage", "writer", "completed"), ("editor", "researcher", "completed"), ("triage", "writer", "failed")]
    assert all(r["run_is_trace"] for r in rows)
    assert store.scalar("SELECT count() FROM otel_traces FINAL") == len(spans)


def test_an_inferred_status_is_inferred_again_when_the_target_runs_later() -> None:
    # A transfer arrives before its target's spans: inferred open. The target's agent span
    # comes in a later request: the same trace resolved again makes it completed.
    def span(span_id: str, start: int, attributes: dict[str, str], parent: str = "root") -> TraceSpan:
        return TraceSpan(span_id, parent, start, start + 10, span_id,
                         {c.NORMALISED_FROM: FROM_OPENINFERENCE, **attributes})

    triage = span("triage", 1, {c.SPAN_TYPE: c.SpanType.AGENT.value, c.GEN_AI_AGENT_NAME: "triage"})
    transfer = span("handoff", 2, {c.SPAN_TYPE: c.SpanType.DELEGATION.value, c.TARGET_AGENT: "billing",
                                   c.MODE: c.HandoffMode.TRANSFER.value}, parent="triage")
    first = resolve_trace("t", [triage, transfer])["handoff"]
    assert (first[c.DELEGATION_STATUS], first[c.STATUS_INFERRED]) == ("open", "1")
    transfer.attributes.update(first)
    billing = span("billing", 3, {c.SPAN_TYPE: c.SpanType.AGENT.value, c.GEN_AI_AGENT_NAME: "billing"})
    again = resolve_trace("t", [triage, transfer, billing])
    assert again["handoff"][c.DELEGATION_STATUS] == "completed"
    transfer.attributes.update(again["handoff"])
    assert "handoff" not in resolve_trace("t", [triage, transfer, billing])  # nothing left to change
    # A status the instrumentation recorded is never second-guessed.
    recorded = span("handoff", 2, {c.SPAN_TYPE: c.SpanType.DELEGATION.value, c.TARGET_AGENT: "billing",
                                   c.MODE: c.HandoffMode.TRANSFER.value, c.DELEGATION_STATUS: "open"},
                    parent="triage")
    assert c.DELEGATION_STATUS not in resolve_trace("t", [triage, recorded, billing]).get("handoff", {})
