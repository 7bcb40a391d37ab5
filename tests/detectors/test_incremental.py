"""Incremental detection: only traces with rows written since the last full detection are
looked at, late spans of old traces still count, rewritten rows do not; traces of other
instrumentations are normalised at read time before they are judged."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from handoffs import conventions as c
from handoffs import sdk
from handoffs.detectors import detect, detect_pending, pipeline
from handoffs.detectors.findings import load, load_pages, pending, watermark
from handoffs.detectors.pipeline import version
from handoffs.store import Store, schema


def _run(name: str) -> str:
    with sdk.run(name, run_id=name) as run:
        with sdk.agent("supervisor", role="supervisor") as sup:
            with sup.delegate("worker", task=f"task of {name}"):
                pass
        run.terminate("done", success_claimed=True, agent="supervisor")
    return run.trace_id


def _trace_of(store: Store, run_id: str) -> str:
    return str(store.scalar(f"SELECT any(TraceId) FROM {schema.SPAN_TABLE} "
                            f"WHERE SpanAttributes['{c.RUN_ID}'] = {{r:String}}", {"r": run_id}))


def _copy_span(store: Store, trace_id: str, span_id: str) -> None:
    """Write one more row for a non-run span of ``trace_id`` under ``span_id`` (same timestamp:
    a late arrival, not a recent span)."""
    store.command(f"""
        INSERT INTO {schema.SPAN_TABLE} SELECT * REPLACE ({{sid:String}} AS SpanId)
        FROM {schema.SPAN_TABLE} WHERE TraceId = {{t:String}}
            AND SpanAttributes['{c.SPAN_TYPE}'] != '{c.SpanType.RUN.value}'
        ORDER BY Timestamp LIMIT 1""", {"t": trace_id, "sid": span_id})


def test_incremental_detection_reads_only_what_arrived(store: Store, traced) -> None:
    with traced():
        _run("old-a")
        _run("old-b")
    assert {tf.run_id for tf in detect_pending(store)} == {"old-a", "old-b"}
    ver = version()
    mark = watermark(store, ver)
    assert mark  # the full pass left a watermark
    assert pending(store, ver, None, True, mark) == ([], {}, set(), 0)

    with traced():
        _run("new")
    old_a = _trace_of(store, "old-a")
    _copy_span(store, old_a, "00000000000000aa")  # a late span of an already judged trace
    ids, counts, _, total = pending(store, ver, None, True, watermark(store, ver))
    assert sorted(ids) == sorted([old_a, _trace_of(store, "new")]) and total == 0
    assert {tf.run_id for tf in detect_pending(store)} == {"old-a", "new"}
    assert detect_pending(store) == []

    # A row written again for a span it already has (read-time normalisation does this) is
    # not a new span: nothing to judge again.
    old_b = _trace_of(store, "old-b")
    some_span = store.scalar(f"SELECT any(SpanId) FROM {schema.SPAN_TABLE} WHERE TraceId = {{t:String}} "
                             f"AND SpanAttributes['{c.SPAN_TYPE}'] != '{c.SpanType.RUN.value}'", {"t": old_b})
    _copy_span(store, old_b, str(some_span))
    assert detect_pending(store) == []


def _otel_collector_tests():  # noqa: ANN202 (a module loaded from a path)
    """The store's tests of the OpenTelemetry Collector's exporter (emulated: the Go binary does
    not run here) and their OpenInference trace."""
    path = Path(__file__).parents[1] / "store" / "test_otel_collector.py"
    spec = importlib.util.spec_from_file_location("otel_collector_tests", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _judged(store: Store, ver: str) -> set[str]:
    return {r["trace_id"] for r in store.query(
        f"SELECT DISTINCT trace_id FROM {schema.DETECTED_TABLE} WHERE detector_version = {{v:String}}", {"v": ver})}


def test_judging_some_traces_reads_the_rest_of_the_store_only_when_that_is_cheap(
        store: Store, traced, monkeypatch: pytest.MonkeyPatch) -> None:
    with traced():
        a, b = _run("a"), _run("b")
    spans = int(store.scalar(f"SELECT count() FROM {schema.SPAN_TABLE}"))
    # Never judged, and larger than a store judged whole in passing: only the traces asked for.
    monkeypatch.setattr(pipeline, "PASSING_SPANS", spans - 1)
    assert pipeline.detect_current(store, [a]) == spans
    assert _judged(store, version()) == {a} and not watermark(store, version())
    # Small enough: the rest is judged too, and the full pass recorded.
    monkeypatch.setattr(pipeline, "PASSING_SPANS", spans)
    assert pipeline.detect_current(store, []) == 0
    assert _judged(store, version()) == {a, b} and watermark(store, version())
    # From then on what arrives is judged, whatever the store's size.
    monkeypatch.setattr(pipeline, "PASSING_SPANS", 0)
    with traced():
        new = _run("c")
    assert pipeline.detect_current(store, []) == 0
    assert _judged(store, version()) == {a, b, new}
    # An upgrade: the next detector set has no full pass recorded, so only the traces asked for.
    monkeypatch.setattr(pipeline, "version", lambda: "structural-next")
    assert pipeline.detect_current(store, [new]) > 0
    assert _judged(store, "structural-next") == {new}


def test_foreign_traces_are_normalised_before_they_are_judged(store: Store) -> None:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    collector_tests = _otel_collector_tests()
    CollectorExporter, _openinference_handoff = collector_tests.CollectorExporter, collector_tests._openinference_handoff

    provider = TracerProvider(resource=Resource.create({c.SERVICE_NAME: "agents-app"}))
    provider.add_span_processor(SimpleSpanProcessor(CollectorExporter(store, schema.SPAN_TABLE)))
    trace_id = _openinference_handoff(provider.get_tracer("openinference.instrumentation.openai_agents"))
    provider.shutdown()
    [judged] = detect(store)  # no explicit resolve_traces: detection runs it
    assert judged.trace_id == trace_id and judged.run_id == "conv-42"
    [handoff] = store.query(
        f"SELECT SpanAttributes['{c.SPAN_TYPE}'] AS type, SpanAttributes['{c.TARGET_AGENT}'] AS target "
        f"FROM {schema.SPAN_TABLE} FINAL WHERE TraceId = {{t:String}} AND SpanName = 'handoff to billing'",
        {"t": trace_id})
    assert handoff == {"type": c.SpanType.DELEGATION.value, "target": "billing"}


def test_traces_normalised_at_ingest_get_their_read_time_facts_once(store: Store, tmp_path: Path) -> None:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    from handoffs.collector import Collector
    from handoffs.collector.normalise import resolve_traces

    collector = Collector(store, port=0, spool_dir=tmp_path / "spool", flush_interval=0.05).start()
    try:
        provider = TracerProvider(resource=Resource.create({c.SERVICE_NAME: "agents-app"}))
        provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=collector.url)))
        trace_id = _otel_collector_tests()._openinference_handoff(
            provider.get_tracer("openinference.instrumentation.openai_agents"))
        provider.shutdown()
        assert collector.stop()
    finally:
        collector.stop()
    # Our collector typed every span on arrival, so nothing looks foreign by its type alone...
    assert store.scalar(f"SELECT countIf(SpanAttributes['{c.SPAN_TYPE}'] = '') FROM {schema.SPAN_TABLE} "
                        "WHERE TraceId = {t:String}", {"t": trace_id}) == 0
    [judged] = detect(store)
    assert judged.trace_id == trace_id
    # ...yet the hand-off's status, known only from the whole trace, was added before judging.
    [handoff] = store.query(
        f"SELECT SpanAttributes['{c.DELEGATION_STATUS}'] AS status, SpanAttributes['{c.SOURCE_AGENT}'] AS source "
        f"FROM {schema.SPAN_TABLE} FINAL WHERE TraceId = {{t:String}} AND SpanName = 'handoff to billing'",
        {"t": trace_id})
    assert handoff == {"status": c.DelegationStatus.COMPLETED.value, "source": "triage"}
    assert resolve_traces(store, [trace_id]) == 0  # marked as completed: judging again adds nothing


def test_judging_again_keeps_findings_that_hold_and_drops_those_that_do_not(store: Store, monkeypatch) -> None:
    """A trace judged again: a finding found again replaces its stored row (no delete needed),
    one no longer found is gone; other traces' findings stay."""
    from handoffs.detectors.findings import Finding, TraceFindings, load, write

    def judged(trace: str, *codes_evidence: tuple[str, str]) -> TraceFindings:
        found = [Finding(code=code, trace_id=trace, span_id="s1", agent="a", step=1, confidence=0.5,
                         evidence=evidence, detector="d", detector_version="v", project="p")
                 for code, evidence in codes_evidence]
        return TraceFindings(trace, project="p", findings=found)

    def stored() -> dict[str, set[tuple[str, str]]]:
        return {tf.trace_id: {(f.code, f.evidence) for f in tf.findings} for tf in load(store)}

    deletes: list[str] = []
    command = store.command

    def counting_deletes(sql: str, params: dict | None = None) -> None:
        if sql.startswith("DELETE"):
            deletes.append(sql)
        command(sql, params)

    monkeypatch.setattr(store, "command", counting_deletes)
    write(store, [judged("t1", ("FM-3.1", "open"), ("FM-2.4", "no output")), judged("t2", ("FM-1.5", "limit"))],
          {"t1": 3, "t2": 2}, "v")
    write(store, [judged("t1", ("FM-3.1", "still open"), ("FM-2.4", "no output"))], {"t1": 4}, "v", replace=["t1"])
    assert stored() == {"t1": {("FM-3.1", "still open"), ("FM-2.4", "no output")}, "t2": {("FM-1.5", "limit")}}
    assert deletes == []  # every stored finding of t1 was found again: rows replaced, none deleted

    write(store, [judged("t1", ("FM-3.1", "still open"))], {"t1": 5}, "v", replace=["t1"])
    assert stored() == {"t1": {("FM-3.1", "still open")}, "t2": {("FM-1.5", "limit")}}
    assert len(deletes) == 1
    write(store, [judged("t2")], {"t2": 3}, "v", replace=["t2"])
    assert stored() == {"t1": {("FM-3.1", "still open")}, "t2": set()}


def test_judging_stopped_between_chunks_leaves_the_rest_pending(
        store: Store, traced, monkeypatch: pytest.MonkeyPatch) -> None:
    with traced():
        for name in ("r1", "r2", "r3"):
            _run(name)
    monkeypatch.setattr(pipeline, "CHUNK_TRACES", 1)
    monkeypatch.setattr(pipeline, "RANGE_TRACES", 1)
    chunks = pipeline.judge_pending(store)
    first = next(chunks)
    chunks.close()  # the caller stops after one chunk (an interrupted `handoffs detect`)
    assert len(first) == 1
    rest = detect_pending(store)
    assert sorted(tf.trace_id for tf in first + rest) == sorted(_trace_of(store, r) for r in ("r1", "r2", "r3"))
    assert first[0].trace_id not in {tf.trace_id for tf in rest}  # what was stored stays judged
    assert detect_pending(store) == []


def test_findings_read_back_a_page_at_a_time_in_trace_order(any_store: Store) -> None:
    from handoffs.demo import simulate

    store = any_store
    simulate(5, seed=7, inject="overwrite", failure_rate=1.0, store=store)
    judged = detect(store)
    pages = list(load_pages(store, page=2))
    assert [len(p) for p in pages] == [2, 2, 1]
    paged = [tf for p in pages for tf in p]
    assert [tf.trace_id for tf in paged] == sorted(tf.trace_id for tf in judged)
    assert paged == load(store) and sum(len(tf.findings) for tf in paged) > 0
    some = [judged[3].trace_id, judged[0].trace_id, judged[3].trace_id]
    assert [tf.trace_id for p in load_pages(store, some, page=1) for tf in p] == sorted(set(some))
