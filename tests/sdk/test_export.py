"""Getting spans out: no silent drops under a burst, nothing lost at exit, store and OTLP round trips."""

from __future__ import annotations

import json
import logging
import re
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
from handoffs.errors import UsageError
from handoffs.sdk.encoding import attribute_str, attributes_str, float_str, span_id_hex, trace_id_hex
from handoffs.sdk.export import BoundedBatchProcessor, OtlpExporter, StoreSpanExporter, otlp_exporter
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


class _Limited(BaseHTTPRequestHandler):
    """An OTLP endpoint that answers as the server's settings say: a status, or 413 past a size."""

    server: _LimitedServer

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        server = self.server
        status = server.status or (413 if len(body) > server.max_body else 200)
        server.refused += status == 413
        if status == 200:
            request = ExportTraceServiceRequest.FromString(body)
            with server.lock:
                server.sizes.append(len(body))
                server.spans.extend(s for rs in request.resource_spans for ss in rs.scope_spans for s in ss.spans)
        self.send_response(status)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        return None


class _LimitedServer(ThreadingHTTPServer):
    def __init__(self, max_body: int) -> None:
        super().__init__(("127.0.0.1", 0), _Limited)
        self.max_body = max_body
        self.status = 0
        self.refused = 0
        self.lock = threading.Lock()
        self.sizes: list[int] = []
        self.spans: list[object] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


def _collector_max_body() -> int:
    import inspect

    from handoffs.collector.server import Collector

    return inspect.signature(Collector.__init__).parameters["max_body_bytes"].default


@pytest.fixture
def limited() -> Iterator[_LimitedServer]:
    """An endpoint refusing what the collector refuses by default: requests over 16 MiB."""
    server = _LimitedServer(_collector_max_body())
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    sdk.shutdown()
    server.shutdown()


def _spans(n: int, text: str = "", attributes: dict[str, str] | None = None) -> list[ReadableSpan]:
    """``n`` finished spans, each with ``text`` as an attribute (or these ``attributes``)."""
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    for i in range(n):
        with provider.get_tracer("t").start_as_current_span(f"s{i}", attributes=attributes or {"text": text}):
            pass
    return list(memory.get_finished_spans())


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_sdks_limits_are_the_collectors() -> None:
    from handoffs.collector.otlp import DEFAULT_LIMITS
    from handoffs.sdk.export import MAX_REQUEST_BYTES, MAX_VALUE_BYTES

    assert MAX_VALUE_BYTES == DEFAULT_LIMITS.max_value_bytes
    assert MAX_REQUEST_BYTES <= _collector_max_body() // 2  # room for what the size estimate leaves out


@pytest.mark.parametrize("reference", [False, True])
def test_the_store_exporter_cuts_long_strings_as_the_collector_does(reference: bool) -> None:
    """docs/conventions.md: the store exporter and the collector write the same text for a value."""
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    from handoffs.collector.otlp import decode_protobuf

    texts = {"ascii": "x" * 70_000, "two-byte": "é" * 40_000, "three-byte": "a" + "✓" * 30_000, "short": "s"}
    spans = _spans(1, attributes=texts)
    decoded = decode_protobuf(encode_spans(spans).SerializeToString(), reference=reference)
    stored = dict(decoded.table.to_pylist()[0]["SpanAttributes"])
    assert {k: attribute_str(v) for k, v in texts.items()} == {k: stored[k] for k in texts}
    assert decoded.truncated == 3 and max(len(v.encode()) for v in stored.values()) <= 64 * 1024


def test_a_default_setup_never_sends_a_request_over_the_collectors_limit(limited: _LimitedServer) -> None:
    """1,000 hand-offs with 20 KB outputs make one default batch of about 20 MB: before, every
    such batch was refused (413) and all of its spans lost."""
    sdk.configure("big", endpoint=limited.url, capture_content=True, schedule_delay=3600)
    text = "lorem ipsum " * 1700
    with sdk.run("big"), sdk.agent("a") as a:
        for i in range(1000):
            with a.delegate("b", task=f"x{i}") as d:
                d.decision("accepted", output=d.output(f"{i} {text}", unit_complete=True))
    assert sdk.flush()
    assert len(limited.spans) == 1002 and sdk.stats().failed == 0
    assert len(limited.sizes) > 1 and limited.refused == 0  # split ahead, not after a refusal


def test_a_request_refused_as_too_large_is_halved_and_sent_again(limited: _LimitedServer) -> None:
    limited.max_body = 50_000
    exporter = OtlpExporter(f"{limited.url}/v1/traces", max_request_bytes=1 << 30)  # no splitting ahead
    assert exporter.export(_spans(8, "y" * 10_000)) is SpanExportResult.SUCCESS
    assert len(limited.spans) == 8 and limited.refused >= 1
    assert exporter.export(_spans(1, "z" * 60_000)) is SpanExportResult.FAILURE
    assert exporter.last_failed == 1 and "as too large (HTTP 413)" in exporter.last_failure


def test_the_failure_warning_says_what_went_wrong(limited: _LimitedServer, caplog: pytest.LogCaptureFixture) -> None:
    limited.status = 401
    sdk.configure("denied", endpoint=limited.url)
    with caplog.at_level(logging.WARNING, logger="handoffs.sdk"):
        with sdk.agent("a"):
            pass
        assert sdk.flush() is False  # before: True, whatever became of the spans
    assert "refused the token (HTTP 401)" in caplog.text and "OTEL_EXPORTER_OTLP_HEADERS" in caplog.text
    assert "is the collector running" not in caplog.text
    assert sdk.stats().failed == 1
    dead = otlp_exporter(f"http://127.0.0.1:{_free_port()}", timeout=0.5)
    assert dead.export(_spans(2)) is SpanExportResult.FAILURE
    assert dead.last_failure.startswith(f"no answer from {dead.url}: is the collector running")


def test_flush_says_false_when_an_export_failed() -> None:
    sdk.configure("failing", exporter=FailingExporter())
    with sdk.agent("a"):
        pass
    assert sdk.flush() is False
    assert sdk.stats().failed == 1
    sdk.shutdown()


@pytest.mark.parametrize(("setting", "value"), [
    ("schedule_delay", 0), ("schedule_delay", -1), ("schedule_delay", float("inf")), ("max_batch_size", 0),
    ("max_queue_size", 0), ("max_queue_size", "8"), ("block_timeout", 0), ("max_batch_size", 10_000)])
def test_settings_the_export_thread_cannot_work_with_are_usage_errors(setting: str, value: object) -> None:
    """Before: a zero delay spun the export thread at 100% CPU, a zero batch hung it at exit."""
    with pytest.raises(UsageError, match=setting):
        sdk.configure("bad", exporter=FailingExporter(), **{setting: value})  # type: ignore[arg-type]
    with pytest.raises(UsageError, match=setting):
        BoundedBatchProcessor(FailingExporter(), **{setting: value})  # type: ignore[arg-type]


@pytest.mark.parametrize("endpoint", ["127.0.0.1:4318", "localhost:4318", "grpc://127.0.0.1:4317", "http://", ""])
def test_an_endpoint_that_is_not_an_http_url_is_refused_at_configure(endpoint: str) -> None:
    with pytest.raises(UsageError, match="is not an http.s. URL.*write it as http://host:port"):
        sdk.configure("bad", endpoint=endpoint)


def test_a_configure_that_fails_leaves_the_working_setup_in_place() -> None:
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    working = InMemorySpanExporter()
    sdk.configure("working", exporter=working)
    for bad in ({"store": "nowhere"}, {"endpoint": "localhost:4318"}, {"max_queue_size": 4, "max_batch_size": 8}):
        with pytest.raises(UsageError):
            sdk.configure("second", **bad)  # type: ignore[arg-type]
    with sdk.agent("still-traced"):
        pass
    assert sdk.flush()
    assert [s.name for s in working.get_finished_spans()] == ["invoke_agent still-traced"]
    sdk.shutdown()


def test_spans_open_when_configure_is_called_again_are_exported_by_the_new_setup() -> None:
    """Before: the old processor, shut down, dropped them, and stats() (the new one's) said 0 dropped."""
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    first, second = InMemorySpanExporter(), InMemorySpanExporter()
    sdk.configure("first", exporter=first)
    with sdk.run("spanning"):
        with sdk.agent("a1"):
            pass
        sdk.configure("second", exporter=second)
        with sdk.agent("a2"):
            pass
    assert sdk.flush()
    assert [s.name for s in first.get_finished_spans()] == ["invoke_agent a1"]
    assert sorted(s.name for s in second.get_finished_spans()) == ["handoff.run spanning", "invoke_agent a2"]
    assert (sdk.stats().accepted, sdk.stats().dropped) == (2, 0)
    sdk.shutdown()


def test_opentelemetrys_variables_give_the_defaults(limited: _LimitedServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_SERVICE_NAME", "from-env")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", limited.url)
    sdk.configure()
    with sdk.agent("a"):
        pass
    assert sdk.flush() and len(limited.spans) == 1
    assert isinstance(sdk._processor.exporter, OtlpExporter)  # type: ignore[union-attr]
    assert sdk._processor.exporter.url == f"{limited.url}/v1/traces"  # type: ignore[union-attr]
    assert sdk._provider.resource.attributes[c.SERVICE_NAME] == "from-env"  # type: ignore[union-attr]
    sdk.configure("given")  # an argument wins
    assert sdk._provider.resource.attributes[c.SERVICE_NAME] == "given"  # type: ignore[union-attr]
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", f"{limited.url}/custom/path")
    sdk.configure()  # the traces URL is taken as it is, and wins over the base one
    assert sdk._processor.exporter.url == f"{limited.url}/custom/path"  # type: ignore[union-attr]
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "localhost:4318")
    with pytest.raises(UsageError, match=r"\$OTEL_EXPORTER_OTLP_TRACES_ENDPOINT 'localhost:4318' is not"):
        sdk.configure()


_DEAD_COLLECTOR_EXIT = """
import sys
from handoffs import sdk
sdk.configure("dead", endpoint=sys.argv[1], schedule_delay=3600, block_timeout=float(sys.argv[2]))
with sdk.agent("a") as a:
    for i in range(5000):
        with a.tool("t"):
            pass
print("produced", flush=True)
"""


def test_exit_with_the_collector_down_waits_at_most_block_timeout_and_says_what_was_lost(tmp_path: Path) -> None:
    """Before: about 10 s a queued batch (36 s for these 5,001 spans), without a word."""
    script = tmp_path / "app.py"
    script.write_text(_DEAD_COLLECTOR_EXIT)
    url = f"http://127.0.0.1:{_free_port()}"
    out = subprocess.run([sys.executable, str(script), url, "2"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout == "produced\n"
    assert f"exporting 5001 span(s) to {url}/v1/traces before exit, waiting at most" in out.stderr
    assert "stopped waiting for the exporter: 5001 span(s) lost in this process" in out.stderr
    assert "Traceback" not in out.stderr


def test_ctrl_c_while_exit_waits_for_the_collector_gives_up_without_a_traceback(tmp_path: Path) -> None:
    import signal
    import socket

    script = tmp_path / "app.py"
    script.write_text(_DEAD_COLLECTOR_EXIT)
    # A collector that takes connections and never answers, so the exit hook is still waiting
    # when Ctrl-C arrives: against a closed port every export failed at once, and on a loaded
    # machine the wait could end before the signal did.
    with socket.create_server(("127.0.0.1", 0), backlog=64) as silent:
        child = subprocess.Popen([sys.executable, str(script), f"http://127.0.0.1:{silent.getsockname()[1]}", "300"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert child.stderr is not None
            seen = []
            for line in child.stderr:  # wait until the exit hook says it is waiting
                seen.append(line)
                if "before exit" in line:
                    break
            child.send_signal(signal.SIGINT)
            _, rest = child.communicate(timeout=60)
        finally:
            child.kill()
    stderr = "".join(seen) + rest
    # Given up long before block_timeout (300 s), every span accounted for in one line. In the
    # CI rehearsal's full suite the exports were sometimes all counted failed rather than
    # abandoned when the signal came (not reproduced alone); either line says what was lost.
    assert re.search(r"stopped waiting for the exporter: 5001 span\(s\) lost in this process"
                     r"|0 span\(s\) dropped and 5001 failed to export in this process", stderr), stderr
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr


def test_the_documented_sigterm_handler_delivers_the_last_spans(limited: _LimitedServer, tmp_path: Path) -> None:
    """docs/sdk.md, "At exit, and on SIGTERM": without a handler, SIGTERM loses what is queued."""
    import signal

    script = tmp_path / "service.py"
    script.write_text(textwrap.dedent(f"""
        import signal, sys, time
        from handoffs import sdk
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
        sdk.configure("service", endpoint={limited.url!r}, schedule_delay=3600)
        with sdk.run("serving", run_id="sigterm-run"), sdk.agent("a"):
            print("serving", flush=True)
            time.sleep(600)
    """))
    child = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline() == "serving\n"
        child.send_signal(signal.SIGTERM)
        _, stderr = child.communicate(timeout=60)
    finally:
        child.kill()
    assert child.returncode == 0, stderr
    assert sorted(s.name for s in limited.spans) == ["handoff.run serving", "invoke_agent a"]  # type: ignore[attr-defined]
