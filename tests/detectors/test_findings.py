"""A finding as others read it: the CLI's JSON and OpenTelemetry's evaluation event."""

from __future__ import annotations

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from handoffs import conventions as c
from handoffs import taxonomy
from handoffs.detectors import Finding


def _finding() -> Finding:
    return Finding(trace_id="t1", span_id="s1", code=taxonomy.OVERWRITE, agent="supervisor", step=4,
                   confidence=0.95, evidence="supervisor overwrote the output of writer",
                   detector="overwrite", detector_version="structural-3")


def test_the_evaluation_event_is_typed_as_the_semantic_conventions_type_it() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with provider.get_tracer("test").start_as_current_span("judged") as span:
        span.add_event("gen_ai.evaluation.result", attributes=_finding().evaluation_event())
    [event] = exporter.get_finished_spans()[0].events
    assert event.attributes is not None
    assert event.attributes[c.GEN_AI_EVALUATION_SCORE_VALUE] == 0.95  # a double, not the text '0.95'
    assert event.attributes[c.GEN_AI_EVALUATION_NAME] == f"handoffs.{taxonomy.OVERWRITE}"
    assert event.attributes[c.GEN_AI_EVALUATION_SCORE_LABEL] == "fail"


def test_the_cli_object_names_the_mode() -> None:
    out = _finding().to_json()
    assert out["name"] == taxonomy.BY_CODE[taxonomy.OVERWRITE].name
    assert (out["agent"], out["step"], out["confidence"]) == ("supervisor", 4, 0.95)
