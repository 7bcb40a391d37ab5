"""Rows written as the OpenTelemetry Collector's clickhouse exporter writes them are read by us.

The Collector (a Go binary) does not run on these machines, so ``CollectorExporter`` below does
its exporter's work in Python: it receives the spans our SDK produces (the Collector would get
them over OTLP), turns each into the row ``exporter/clickhouseexporter`` builds (hex ids, the
attribute map with every value as a string, kind and status as enum names, duration in
nanoseconds, the Events.* and Links.* arrays) and sends the exporter's own INSERT column list
into the table docs/otel-collector.yaml names. The tests then compare with the same spans
written by our own path: runs view, detectors and dashboard queries must agree.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind, StatusCode

from handoffs import conventions as c
from handoffs import sdk
from handoffs.store import Store, schema

CONFIG = Path(__file__).resolve().parents[2] / "docs" / "otel-collector.yaml"

# The exporter's INSERT column list (exporter_traces.go), in its order.
EXPORTER_COLUMNS = (
    "Timestamp", "TraceId", "SpanId", "ParentSpanId", "TraceState", "SpanName", "SpanKind",
    "ServiceName", "ResourceAttributes", "ScopeName", "ScopeVersion", "SpanAttributes",
    "Duration", "StatusCode", "StatusMessage", "Events.Timestamp", "Events.Name",
    "Events.Attributes", "Links.TraceId", "Links.SpanId", "Links.TraceState", "Links.Attributes",
)

# pdata's enum names (ptrace.SpanKind.String(), ptrace.StatusCode.String()), indexed by OTLP value.
KINDS = ("Unspecified", "Internal", "Server", "Client", "Producer", "Consumer")
STATUSES = ("Unset", "Ok", "Error")
# The upper-case OTLP spellings some exporter versions wrote (traceutil.SpanKindStr/StatusCodeStr).
OTLP_KINDS = tuple(f"SPAN_KIND_{k.upper()}" for k in KINDS)
OTLP_STATUSES = tuple(f"STATUS_CODE_{s.upper()}" for s in STATUSES)


def _go_string(value: Any) -> str:
    """pcommon.Value.AsString(): what the exporter stores for each attribute value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e21 else repr(value)
    if isinstance(value, (list, tuple)):
        return json.dumps(list(value), separators=(",", ":"))
    return str(value)


def _attrs(attributes: Any) -> dict[str, str]:
    return {k: _go_string(v) for k, v in (attributes or {}).items()}


def _ts(ns: int) -> str:
    seconds, frac = divmod(ns, 10**9)
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%d %H:%M:%S") + f".{frac:09d}Z"


class CollectorExporter(SpanExporter):
    """The Collector's clickhouse exporter, redone in Python for spans our SDK produces."""

    def __init__(self, store: Store, table: str, upper_case_enums: bool = False) -> None:
        self.store = store
        self.table = table
        self.kinds, self.statuses = (OTLP_KINDS, OTLP_STATUSES) if upper_case_enums else (KINDS, STATUSES)

    def row(self, span: ReadableSpan) -> dict[str, Any]:
        ctx = span.get_span_context()
        resource = _attrs(span.resource.attributes)
        kind = {SpanKind.INTERNAL: 1, SpanKind.SERVER: 2, SpanKind.CLIENT: 3,
                SpanKind.PRODUCER: 4, SpanKind.CONSUMER: 5}[span.kind]
        status = {StatusCode.UNSET: 0, StatusCode.OK: 1, StatusCode.ERROR: 2}[span.status.status_code]
        return {
            "Timestamp": _ts(span.start_time),
            "TraceId": format(ctx.trace_id, "032x"),
            "SpanId": format(ctx.span_id, "016x"),
            "ParentSpanId": format(span.parent.span_id, "016x") if span.parent else "",
            "TraceState": ctx.trace_state.to_header(),
            "SpanName": span.name,
            "SpanKind": self.kinds[kind],
            "ServiceName": resource.get(c.SERVICE_NAME, ""),
            "ResourceAttributes": resource,
            "ScopeName": span.instrumentation_scope.name if span.instrumentation_scope else "",
            "ScopeVersion": (span.instrumentation_scope.version or "") if span.instrumentation_scope else "",
            "SpanAttributes": _attrs(span.attributes),
            "Duration": span.end_time - span.start_time,
            "StatusCode": self.statuses[status],
            "StatusMessage": span.status.description or "",
            "Events.Timestamp": [_ts(e.timestamp) for e in span.events],
            "Events.Name": [e.name for e in span.events],
            "Events.Attributes": [_attrs(e.attributes) for e in span.events],
            "Links.TraceId": [format(lk.context.trace_id, "032x") for lk in span.links],
            "Links.SpanId": [format(lk.context.span_id, "016x") for lk in span.links],
            "Links.TraceState": [lk.context.trace_state.to_header() for lk in span.links],
            "Links.Attributes": [_attrs(lk.attributes) for lk in span.links],
        }

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        body = "\n".join(json.dumps(self.row(s)) for s in spans)
        columns = ", ".join(f"`{name}`" for name in EXPORTER_COLUMNS)
        self.store.command(f"INSERT INTO {self.table} ({columns}) "
                           "SETTINGS date_time_input_format = 'best_effort' "
                           f"FORMAT JSONEachRow\n{body}\n")
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        """Nothing to release: the store belongs to the test."""


def _config() -> dict[str, Any]:
    return yaml.safe_load(CONFIG.read_text())


def test_config_writes_our_span_table_and_leaves_the_schema_to_us() -> None:
    config = _config()
    exporter = config["exporters"]["clickhouse"]
    assert exporter["create_schema"] is False
    assert exporter["traces_table_name"] == schema.SPAN_TABLE
    pipeline = config["service"]["pipelines"]["traces"]
    assert pipeline["receivers"] == ["otlp"] and pipeline["exporters"] == ["clickhouse"]
    assert "batch" in pipeline["processors"]
    assert config["processors"]["batch"]["send_batch_size"] >= 10_000


@contextmanager
def _traced(**configure: Any) -> Iterator[None]:
    sdk.configure(service_name="team", project="p", **configure)
    try:
        yield
    finally:
        sdk.flush()
        sdk.shutdown()


def _scenario(name: str) -> str:
    """A supervisor overwrites a half-done output; a failed migration is never compensated."""
    with sdk.run(name, tags=["otelcol"]) as run:
        with sdk.agent("supervisor", role="supervisor", model="gpt-4o") as sup:
            with sup.delegate("coder", task="write f") as d:
                with sdk.agent("coder", role="worker") as w:
                    with w.llm(input_tokens=10, output_tokens=40):
                        pass
                    with w.tool("create_db", {"n": 1, "ok": True, "ratio": 0.5}, side_effect=True,
                                target="db"):
                        pass
                    with w.tool("migrate", {"n": 1}, side_effect=True, target="db") as mig:
                        mig.error("migration failed")
                    out = d.output("def f(", tokens=40, unit_complete=False)
                d.decision("overwrote", output=out, result="def f(): return 1")
        run.terminate("done", success_claimed=True, agent="supervisor")
    return run.run_id


def _write_both_ways(store: Store, upper_case_enums: bool = False) -> tuple[str, str]:
    with _traced(store=store):
        ours = _scenario("ours")
    table = _config()["exporters"]["clickhouse"]["traces_table_name"]
    with _traced(exporter=CollectorExporter(store, table, upper_case_enums)):
        theirs = _scenario("otelcol")
    return ours, theirs


def _trace_of(store: Store, run_id: str) -> str:
    return store.scalar(f"SELECT trace_id FROM {schema.RUNS_TABLE} FINAL WHERE run_id = {{r:String}}",
                        {"r": run_id})


def test_exporter_rows_fill_the_span_table_like_ours(any_store: Store) -> None:
    ours, theirs = _write_both_ways(any_store)
    shape = ("SELECT SpanName, SpanKind, StatusCode, StatusMessage, ServiceName, ScopeName, "
             "Duration > 0 AS timed, ParentSpanId != '' AS child, length(SpanId) AS id_len, "
             "mapSort(mapFilter((k, v) -> k NOT IN ({ids:Array(String)}), SpanAttributes)) AS attrs, "
             "`Events.Name` AS events FROM otel_traces FINAL WHERE TraceId = {t:String} "
             "ORDER BY Timestamp, SpanName")
    # Ids and hashes differ between the two runs by construction; everything else must not.
    ids = [c.RUN_ID, c.DELEGATION_ID, c.OUTPUT_ID, c.TOOL_ARGS_HASH, c.OUTPUT_HASH,
           c.DECISION_RESULT_HASH, c.RUN_NAME, c.TASK_HASH, c.GEN_AI_CONVERSATION_ID]
    a = any_store.query(shape, {"t": _trace_of(any_store, ours), "ids": ids})
    b = any_store.query(shape, {"t": _trace_of(any_store, theirs), "ids": ids})
    assert len(a) >= 6
    for left, right in zip(a, b, strict=True):
        left.pop("SpanName")
        right.pop("SpanName")
        assert dict(left["attrs"]) == dict(right["attrs"])
        assert left == right


def test_runs_view_fires_for_exporter_rows(any_store: Store) -> None:
    _, theirs = _write_both_ways(any_store)
    run = any_store.query(f"SELECT name, project, service, tags FROM {schema.RUNS_TABLE} FINAL "
                          "WHERE run_id = {r:String}", {"r": theirs})
    assert run == [{"name": "otelcol", "project": "p", "service": "team", "tags": ["otelcol"]}]


def test_detectors_judge_exporter_rows_as_ours(store: Store) -> None:
    detectors = pytest.importorskip("handoffs.detectors")
    ours, theirs = _write_both_ways(store)
    codes = {tf.run_id: tf.codes() for tf in detectors.detect(store)}
    assert {"overwrite", "missing-compensation"} <= codes[ours]
    assert codes[theirs] == codes[ours]


def test_dashboard_queries_show_exporter_rows(store: Store) -> None:
    queries = pytest.importorskip("handoffs.dashboards.queries")
    ours, theirs = _write_both_ways(store)
    runs = queries.runs(store, project="p")
    assert set(runs["run_id"]) == {ours, theirs}
    spans_ours = queries.trace_spans(store, _trace_of(store, ours))
    spans_theirs = queries.trace_spans(store, _trace_of(store, theirs))
    assert len(spans_theirs) == len(spans_ours)
    assert list(spans_theirs["status"]) == list(spans_ours["status"])
    assert list(spans_theirs["status"]).count("Error") == 1


def test_upper_case_enum_spelling_is_read_too(store: Store) -> None:
    detectors = pytest.importorskip("handoffs.detectors")
    ours, theirs = _write_both_ways(store, upper_case_enums=True)
    codes = {tf.run_id: tf.codes() for tf in detectors.detect(store)}
    assert codes[theirs] == codes[ours]


def _openinference_handoff(tracer: Any) -> str:
    """The OpenAI Agents SDK through OpenInference: a root AGENT span, then `handoff to X`."""
    session = {"session.id": "conv-42"}
    with tracer.start_as_current_span("Agent workflow", attributes={
            "openinference.span.kind": "AGENT", **session}) as root:
        with tracer.start_as_current_span("triage", attributes={
                "openinference.span.kind": "AGENT", "agent.name": "triage", **session}):
            with tracer.start_as_current_span("handoff to billing", attributes={
                    "openinference.span.kind": "TOOL", "input.value": "triage",
                    "output.value": "billing", **session}):
                pass
        with tracer.start_as_current_span("billing", attributes={
                "openinference.span.kind": "AGENT", "agent.name": "billing", **session}):
            pass
    return format(root.get_span_context().trace_id, "032x")


def test_other_instrumentations_through_the_collector_are_normalised_at_read(store: Store) -> None:
    normalise = pytest.importorskip("handoffs.collector.normalise")
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    provider = TracerProvider(resource=Resource.create({c.SERVICE_NAME: "agents-app"}))
    provider.add_span_processor(SimpleSpanProcessor(CollectorExporter(store, schema.SPAN_TABLE)))
    trace_id = _openinference_handoff(provider.get_tracer("openinference.instrumentation.openai_agents"))
    provider.shutdown()
    normalise.resolve_traces(store, [trace_id])  # the read-time pass meant to precede detection
    [handoff] = store.query(
        "SELECT SpanAttributes AS a FROM otel_traces FINAL WHERE TraceId = {t:String} "
        "AND SpanName = 'handoff to billing'", {"t": trace_id})
    attrs = dict(handoff["a"])
    assert attrs.get(c.SPAN_TYPE) == c.SpanType.DELEGATION.value
    assert (attrs.get(c.SOURCE_AGENT), attrs.get(c.TARGET_AGENT)) == ("triage", "billing")
    assert store.scalar(f"SELECT count() FROM {schema.RUNS_TABLE} FINAL WHERE run_id = 'conv-42'") == 1
