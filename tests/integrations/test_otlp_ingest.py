"""Spans of the frameworks' own instrumentation (OpenInference) sent over OTLP/HTTP to our
collector: normalised at ingest, completed at read time by ``resolve_traces``."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from handoffs import conventions as c
from handoffs.collector import Collector
from handoffs.collector.normalise import FROM_OPENINFERENCE, resolve_traces
from handoffs.store import Store

from .conftest import example

pytest.importorskip("agents.testing", reason="the OpenAI Agents SDK is not installed (pip install 'handoffs[openai-agents]')")
pytest.importorskip("openinference.instrumentation.openai_agents",
                    reason="openinference-instrumentation-openai-agents is not installed")
pytestmark = pytest.mark.frameworks


def test_openinference_spans_over_otlp_are_normalised(store: Store, tmp_path: Path):
    from agents import Runner
    from agents.exceptions import MaxTurnsExceeded
    from openinference.instrumentation.openai_agents import OpenAIAgentsInstrumentor
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    collector = Collector(store, port=0, spool_dir=tmp_path / "spool", flush_interval=0.05).start()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(
        OTLPSpanExporter(endpoint=f"http://127.0.0.1:{collector.port}/v1/traces")))
    OpenAIAgentsInstrumentor().instrument(tracer_provider=provider)
    ex = example("openai_agents_team")
    try:
        for scenario in ("overwrite", "open"):
            agent, max_turns = ex.build(scenario)
            try:
                asyncio.run(Runner.run(agent, ex.TASK, max_turns=max_turns))
            except MaxTurnsExceeded:
                pass
        provider.force_flush()
    finally:
        OpenAIAgentsInstrumentor().uninstrument()
        provider.shutdown()
        assert collector.stop()

    query = f"""
        SELECT SpanAttributes['{c.SOURCE_AGENT}'] AS source, SpanAttributes['{c.TARGET_AGENT}'] AS target,
            SpanAttributes['{c.MODE}'] AS mode, SpanAttributes['{c.DELEGATION_STATUS}'] AS status,
            SpanAttributes['{c.NORMALISED_FROM}'] AS origin
        FROM otel_traces FINAL WHERE SpanAttributes['{c.SPAN_TYPE}'] = 'delegation' ORDER BY Timestamp"""
    # At ingest: the hand-off span is read (both ends named by OpenInference), no status yet.
    assert [(r["source"], r["target"], r["status"], r["origin"]) for r in store.query(query)] == [
        ("triage", "writer", "", FROM_OPENINFERENCE)]
    traces = [r["t"] for r in store.query("SELECT DISTINCT TraceId AS t FROM otel_traces")]
    assert resolve_traces(store, traces) > 0
    # At read time: the agent tool became a delegation; the cut-short hand-off failed.
    assert [(r["source"], r["target"], r["mode"], r["status"]) for r in store.query(query)] == [
        ("editor", "researcher", "delegate", "completed"), ("triage", "writer", "transfer", "failed")]
