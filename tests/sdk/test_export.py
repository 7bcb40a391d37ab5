"""Getting spans out: no silent drops under a burst, nothing lost at exit, store and OTLP round trips."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from handoffs import conventions as c
from handoffs import sdk
from handoffs.sdk.encoding import attribute_str, attributes_str, float_str, span_id_hex, trace_id_hex
from handoffs.sdk.export import BoundedBatchProcessor, StoreSpanExporter
from handoffs.store import Store
from handoffs.store.sharing import owned_endpoint


class SlowExporter(SpanExporter):
    """Exports one batch at a time, each only when the test lets it: a consumer slower than the producer."""

    def __init__(self) -> None:
        self.delivered = 0
        self.gate = threading.Semaphore(0)
        self.released = False

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if not self.released:
            self.gate.acquire()
        self.delivered += len(spans)
        return SpanExportResult.SUCCESS

    def release(self) -> None:
        self.released = True
        self.gate.release(1000)

    def shutdown(self) -> None:
        self.release()


def _burst(provider: TracerProvider, n: int) -> None:
    tracer = provider.get_tracer("burst")
    for _ in range(n):
        with tracer.start_as_current_span("s"):
            pass


def test_a_burst_through_our_processor_loses_nothing_and_blocks_instead() -> None:
    exporter = SlowExporter()
    processor = BoundedBatchProcessor(exporter, max_queue_size=64, max_batch_size=16, schedule_delay=0.01)
    provider = TracerProvider()
    provider.add_span_processor(processor)
    feeder = threading.Thread(target=lambda: [exporter.gate.release() for _ in range(100_000)], daemon=True)
    feeder.start()  # let batches through one by one while the producer runs
    _burst(provider, 3000)
    exporter.release()
    provider.shutdown()
    assert exporter.delivered == 3000
    assert processor.stats.dropped == 0 and processor.stats.failed == 0
    assert processor.stats.accepted == processor.stats.exported == 3000
    assert processor.stats.blocked > 0  # the queue of 64 did fill: backpressure, not loss


def test_the_default_processor_drops_under_the_same_burst() -> None:
    """The loss our processor exists to prevent, shown on OpenTelemetry's own processor."""
    exporter = SlowExporter()
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(exporter, max_queue_size=64, max_export_batch_size=16))
    _burst(provider, 3000)
    exporter.release()
    provider.shutdown()
    assert exporter.delivered < 3000


def test_a_stalled_exporter_costs_counted_drops_not_a_hung_agent(caplog: pytest.LogCaptureFixture) -> None:
    exporter = SlowExporter()  # never released until the end: a collector that hangs
    processor = BoundedBatchProcessor(exporter, max_queue_size=8, max_batch_size=4, schedule_delay=0.01,
                                      block_timeout=0.05)
    provider = TracerProvider()
    provider.add_span_processor(processor)
    with caplog.at_level(logging.WARNING, logger="handoffs.sdk"):
        _burst(provider, 200)
    exporter.release()
    provider.shutdown()
    assert processor.stats.dropped > 0
    assert processor.stats.dropped + exporter.delivered == 200
    assert "dropped" in caplog.text


class FailingExporter(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        raise ConnectionError("collector unreachable")

    def shutdown(self) -> None:
        return None


def test_export_failures_are_counted() -> None:
    processor = BoundedBatchProcessor(FailingExporter(), max_queue_size=16, max_batch_size=4)
    provider = TracerProvider()
    provider.add_span_processor(processor)
    _burst(provider, 10)
    provider.shutdown()
    assert processor.stats.failed == 10 and processor.stats.exported == 0


def test_stats_after_shutdown_are_the_final_counts_until_configured_again() -> None:
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    sdk.configure("stats-test", exporter=InMemorySpanExporter())
    with sdk.run("r"), sdk.agent("sup") as sup, sup.delegate("worker", task="t"):
        pass
    sdk.shutdown()  # a user checking what was delivered does it after the flush
    assert (sdk.stats().accepted, sdk.stats().exported, sdk.stats().dropped) == (3, 3, 0)
    sdk.configure("stats-test", exporter=InMemorySpanExporter())
    assert sdk.stats().accepted == 0
    sdk.shutdown()


def _store_url(store: Store) -> str:
    assert store.url.path is not None
    endpoint = owned_endpoint(store.url.path)
    assert endpoint is not None
    return (f"clickhouse://default:{endpoint.password}@{endpoint.host}:{endpoint.port}/"
            f"{store.url.database}?compress=0")


def test_spans_buffered_when_a_process_exits_are_exported(store: Store, tmp_path: Path) -> None:
    """The child never flushes and its batch delay is an hour: only the exit hook can deliver."""
    script = tmp_path / "agent.py"
    script.write_text(textwrap.dedent(f"""
        from handoffs import sdk
        sdk.configure("exiting", store={_store_url(store)!r}, schedule_delay=3600, max_batch_size=4096)
        with sdk.run("last-words", run_id="exit-run") as run:
            with sdk.agent("sup") as sup:
                for i in range(300):
                    with sup.delegate("w", task=str(i)) as d:
                        d.output(str(i), unit_complete=True)
        print(sdk.stats().exported)
    """))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "0"  # nothing had been exported before exit
    n = store.scalar("SELECT count() FROM otel_traces WHERE SpanAttributes[{k:String}] = 'exit-run'",
                     {"k": c.RUN_ID})
    assert n == 302


def test_a_script_writing_to_its_own_embedded_store_loses_nothing_at_exit(tmp_path: Path) -> None:
    """The store's exit hook closes chDB; the SDK's must flush into it first."""
    url = f"chdb://{tmp_path / 'store'}"
    write = textwrap.dedent(f"""
        from handoffs import sdk
        sdk.configure("exiting", store={url!r}, schedule_delay=3600)
        with sdk.run("r", run_id="embedded-exit"), sdk.agent("a") as a:
            for i in range(50):
                with a.tool("t", args=[i]):
                    pass
    """)
    read = textwrap.dedent(f"""
        from handoffs.store import open_store
        print(open_store({url!r}).scalar("SELECT count() FROM otel_traces"))
    """)
    for script in (write, read):
        out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "52"


@pytest.fixture
def to_store_and_memory(store: Store) -> Iterator[list[ReadableSpan]]:
    """The SDK exporting into ``store``, keeping a copy of each exported span to compare with."""
    kept: list[ReadableSpan] = []
    inner = StoreSpanExporter(store)

    class Tee(SpanExporter):
        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            kept.extend(spans)
            return inner.export(spans)

        def shutdown(self) -> None:
            return None

    sdk.configure("round-trip", exporter=Tee(), project="p1", schedule_delay=0.05)
    yield kept
    sdk.shutdown()


def test_spans_come_back_out_of_the_store_as_they_went_in(store: Store,
                                                        to_store_and_memory: list[ReadableSpan]) -> None:
    with sdk.run("build-api", run_id="rt-1", tags=["nightly", "ci"], topology="independent") as run:
        with sdk.agent("supervisor", role="supervisor") as sup:
            with sup.delegate("coder", task="routes") as d:
                with sdk.agent("coder") as w, w.llm("m", input_tokens=10, output_tokens=20):
                    out = d.output("def get(): ...", tokens=20, unit_complete=False)
                d.decision("overwrote", output=out, result="def get(): return 1", reason="too slow")
            with sup.verify("lint", target=out, coverage=0.25) as v:
                v.verdict("fail", "E501")
            with pytest.raises(KeyError), sup.tool("read", args={"k": 1}):
                raise KeyError("k")
        run.terminate("budget", success_claimed=False)
    assert sdk.flush()
    sent = {span_id_hex(s.context.span_id): s for s in to_store_and_memory}
    rows = store.query("SELECT * FROM otel_traces WHERE TraceId = {t:String}",
                       {"t": trace_id_hex(run.span.get_span_context().trace_id)})
    assert {r["SpanId"] for r in rows} == set(sent) and len(rows) == 7
    for row in rows:
        span = sent[row["SpanId"]]
        assert row["SpanName"] == span.name
        assert row["ParentSpanId"] == (span_id_hex(span.parent.span_id) if span.parent else "")
        assert dict(row["SpanAttributes"]) == attributes_str(span.attributes)
        assert row["Events.Name"] == [e.name for e in span.events]
        assert [dict(a) for a in row["Events.Attributes"]] == [attributes_str(e.attributes) for e in span.events]
        assert [int(t.value) for t in row["Events.Timestamp"]] == [e.timestamp for e in span.events]
        assert int(row["Timestamp"].value) == span.start_time
        assert row["Duration"] == span.end_time - span.start_time
        assert row["ServiceName"] == "round-trip"
        assert dict(row["ResourceAttributes"])[c.RESOURCE_PROJECT] == "p1"
        assert row["ScopeName"] == "handoffs.sdk"
    by_name = {r["SpanName"]: r for r in rows}
    assert by_name["execute_tool read"]["StatusCode"] == "Error"
    assert dict(by_name["handoff.verify lint"]["SpanAttributes"])[c.VERIFICATION_COVERAGE] == "0.25"
    assert dict(by_name["chat m"]["SpanAttributes"])[c.GEN_AI_USAGE_INPUT_TOKENS] == "10"
    runs = store.query("SELECT run_id, tags, topology, project FROM handoffs_runs FINAL")
    assert runs == [{"run_id": "rt-1", "tags": ["nightly", "ci"], "topology": "independent", "project": "p1"}]


class _Capture(BaseHTTPRequestHandler):
    bodies: list[tuple[str, str, bytes]] = []

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.bodies.append((self.path, self.headers["Content-Type"], body))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        return None


def test_otlp_http_protobuf_over_a_real_socket() -> None:
    _Capture.bodies = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Capture)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        sdk.configure("otlp-team", endpoint=f"http://127.0.0.1:{server.server_address[1]}")
        with sdk.run("r", run_id="otlp-1"), sdk.agent("sup") as sup, sup.delegate("w") as d:
            d.decision("rejected", reason="wrong table")
        sdk.shutdown()
    finally:
        server.shutdown()
    assert _Capture.bodies
    path, content_type, body = _Capture.bodies[0]
    assert path == "/v1/traces" and content_type == "application/x-protobuf"
    request = ExportTraceServiceRequest.FromString(body)
    spans = [s for rs in request.resource_spans for ss in rs.scope_spans for s in ss.spans]
    assert sorted(s.name for s in spans) == ["execute_tool transfer_to_w", "handoff.run r", "invoke_agent sup"]
    delegation = next(s for s in spans if s.name == "execute_tool transfer_to_w")
    attrs = {kv.key: kv.value for kv in delegation.attributes}
    assert attrs[c.DELEGATION_STATUS].string_value == "completed"
    assert attrs[c.STEP].int_value == 3
    assert [e.name for e in delegation.events] == [c.EVENT_DECISION]


def test_attribute_values_are_encoded_as_the_collector_exporter_writes_them() -> None:
    assert attribute_str("x") == "x"
    assert attribute_str(True) == "true" and attribute_str(False) == "false"
    assert attribute_str(42) == "42"
    assert attribute_str(1.0) == "1" and attribute_str(0.25) == "0.25" and attribute_str(-2.5) == "-2.5"
    assert attribute_str(0.1 + 0.2) == "0.30000000000000004"
    assert attribute_str(("a", "b")) == '["a","b"]'
    assert attribute_str([1, 2.5, True]) == "[1,2.5,true]"
    assert json.loads(attribute_str(["é", 'q"'])) == ["é", 'q"']
    assert float_str(float("nan")) == "NaN" and float_str(float("-inf")) == "-Infinity"


def test_floats_read_the_same_through_the_collector() -> None:
    otlp = pytest.importorskip("handoffs.collector.otlp")
    values = [1.0, 0.5, 1e-7, 123456789.125, 1e21, 2.0**60, -0.0, 3.141592653589793, 1 / 3]
    assert [float_str(v) for v in values] == [otlp.format_double(v) for v in values]
