"""The collector over a real socket: the OTel SDK's exporter in, the store out; OTLP/HTTP status
codes and bodies; tokens, projects and TLS."""

from __future__ import annotations

import gzip
import http.client
import json
import re
import socket
import ssl
import subprocess
import time
from pathlib import Path

import pytest
from collector_helpers import get_json, post, request, span_counts, to_otlp_json, wait_for
from hypothesis import HealthCheck, given, settings
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from test_decoder import requests as generated_requests

from handoffs import conventions as conv
from handoffs.collector import Collector, Tokens, load_tokens, otlp, server
from handoffs.errors import UsageError
from handoffs.store import Store


def wait_stored(store: Store, expected: int, timeout: float = 30.0) -> int:
    deadline = time.monotonic() + timeout
    while True:
        rows, _ = span_counts(store)
        if rows >= expected or time.monotonic() > deadline:
            return rows
        time.sleep(0.05)


def test_sdk_spans_come_back_from_the_store_with_ids_parents_attributes_events(
        store: Store, collector: Collector) -> None:
    provider = TracerProvider(resource=Resource.create({conv.SERVICE_NAME: "team"}))
    exporter = OTLPSpanExporter(endpoint=collector.url, compression=Compression.Gzip)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("tests")
    with tracer.start_as_current_span("run") as run:
        run.set_attribute(conv.SPAN_TYPE, "run")
        with tracer.start_as_current_span("execute_tool transfer_to_coder") as child:
            child.set_attribute(conv.TARGET_AGENT, "coder")
            child.set_attribute(conv.OUTPUT_TOKENS, 42)
            child.add_event(conv.EVENT_OUTPUT, {conv.OUTPUT_ID: "o1"})
    provider.shutdown()
    assert wait_stored(store, 2) == 2
    rows = {r["SpanName"]: r for r in store.query("SELECT * FROM otel_traces")}
    run_ctx, child_ctx = run.get_span_context(), child.get_span_context()
    assert rows["run"]["SpanId"] == format(run_ctx.span_id, "016x")
    child_row = rows["execute_tool transfer_to_coder"]
    assert child_row["TraceId"] == format(child_ctx.trace_id, "032x")
    assert child_row["ParentSpanId"] == rows["run"]["SpanId"]
    assert dict(child_row["SpanAttributes"])[conv.OUTPUT_TOKENS] == "42"
    assert child_row["Events.Name"] == [conv.EVENT_OUTPUT]
    assert dict(child_row["Events.Attributes"][0]) == {conv.OUTPUT_ID: "o1"}
    assert child_row["ServiceName"] == "team"


def test_partial_success_keeps_good_spans_in_both_encodings(store: Store, collector: Collector) -> None:
    reply = post(collector.port, request(1, 0, 4, bad={1}).SerializeToString())
    assert reply.status == 200 and reply.headers["content-type"] == otlp.PROTOBUF
    response = ExportTraceServiceResponse.FromString(reply.body)
    assert response.partial_success.rejected_spans == 1
    assert "trace id must be 16 bytes" in response.partial_success.error_message

    reply = post(collector.port, to_otlp_json(request(2, 0, 3, bad={0, 2})), otlp.JSON)
    assert reply.status == 200 and reply.headers["content-type"] == otlp.JSON
    body = json.loads(reply.body)
    assert body["partialSuccess"]["rejectedSpans"] == "2"

    reply = post(collector.port, request(3, 0, 2).SerializeToString())
    assert reply.status == 200 and ExportTraceServiceResponse.FromString(reply.body).ByteSize() == 0
    assert wait_stored(store, 3 + 1 + 2) == 6
    # Rows are queryable a moment before the writer commits them and counts them as stored.
    assert wait_for(lambda: get_json(collector.port)["stored"] >= 6)
    health = get_json(collector.port)
    assert (health["accepted"], health["rejected"], health["stored"]) == (6, 3, 6)


def test_replies_leave_without_waiting_for_the_clients_acknowledgement(
        collector: Collector, accepted_nodelay: list[int]) -> None:
    # A reply with a body (OTLP/JSON, partial success, 429, health) is written as headers, then
    # body: under Nagle's algorithm the body waited 40 ms for the client's delayed ACK.
    reply = post(collector.port, to_otlp_json(request(4, 0, 2)), otlp.JSON)
    assert reply.status == 200 and json.loads(reply.body) == {}
    assert get_json(collector.port)["accepted"] == 2
    assert len(accepted_nodelay) == 2 and all(accepted_nodelay)


def test_bad_requests_get_clear_4xx_and_the_collector_keeps_serving(store: Store, tmp_path: Path) -> None:
    c = Collector(store, port=0, spool_dir=tmp_path / "spool", max_body_bytes=64 << 10,
                  flush_interval=0.05).start()
    try:
        good = request(4, 0, 2).SerializeToString()
        cases = [
            (post(c.port, b"\x0a\xff\xff", ), 400, "not a valid OTLP"),
            (post(c.port, b"{nope", otlp.JSON), 400, "not valid JSON"),
            (post(c.port, good, "text/plain"), 415, "unsupported Content-Type"),
            (post(c.port, good, headers={"Content-Encoding": "br"}), 415, "Content-Encoding"),
            (post(c.port, b"x" * (65 << 10)), 413, "over the"),
            (post(c.port, gzip.compress(b"\x00" * (4 << 20)), headers={"Content-Encoding": "gzip"}), 413,
             "inflates to more than"),
            (post(c.port, b"not gzip", headers={"Content-Encoding": "gzip"}), 400, "not valid gzip"),
            (post(c.port, good, path="/v1/metrics"), 404, "no such endpoint"),
        ]
        for reply, status, text in cases:
            assert reply.status == status, (status, reply.body)
            assert text in reply.body.decode("utf-8", "replace")
        json_reply = post(c.port, b"[]", otlp.JSON)
        assert json_reply.status == 400 and "message" in json.loads(json_reply.body)
        assert post(c.port, good).status == 200
        assert wait_stored(store, 2) == 2
        assert get_json(c.port)["bad_requests"] == len(cases) + 1
    finally:
        c.stop()


def test_a_method_a_path_does_not_take_is_405_with_allow(collector: Collector) -> None:
    for method, path, allowed in (("GET", "/v1/traces", "POST"), ("PUT", "/v1/traces", "POST"),
                                  ("DELETE", "/health", "GET")):
        conn = http.client.HTTPConnection("127.0.0.1", collector.port, timeout=30)
        try:
            conn.request(method, path)
            reply = conn.getresponse()
            body = json.loads(reply.read())
        finally:
            conn.close()
        assert (reply.status, reply.getheader("Allow")) == (405, allowed), (method, path)
        assert f"{method} is not accepted here: {allowed} {path}" in body["message"]


def test_stop_flushes_what_was_acknowledged(store: Store, tmp_path: Path) -> None:
    c = Collector(store, port=0, spool_dir=tmp_path / "spool", flush_interval=3600,
                  batch_rows=10**6).start()
    for i in range(5):
        assert post(c.port, request(5, i * 10, 10).SerializeToString()).status == 200
    assert span_counts(store) == (0, 0)  # still batching
    assert c.stop() is True
    assert span_counts(store) == (50, 50)


def test_tokens_are_required_and_set_the_project(store: Store, tmp_path: Path) -> None:
    tokens = Tokens({"t" * 32: "team-a", "u" * 32: "team-b"})
    c = Collector(store, port=0, spool_dir=tmp_path / "spool", tokens=tokens, flush_interval=0.05).start()
    try:
        body = request(6, 0, 2, project="team-b").SerializeToString()
        assert post(c.port, body).status == 401
        assert post(c.port, body, headers={"Authorization": "Bearer " + "x" * 32}).status == 401
        denied = post(c.port, body, headers={"Authorization": "Basic " + "t" * 32})
        assert denied.status == 401 and denied.headers["www-authenticate"] == "Bearer"
        assert post(c.port, body, headers={"Authorization": "Bearer " + "t" * 32}).status == 200
        assert wait_stored(store, 2) == 2
        projects = store.query("SELECT DISTINCT ResourceAttributes[{k:String}] AS p FROM otel_traces",
                               {"k": conv.RESOURCE_PROJECT})
        assert [r["p"] for r in projects] == ["team-a"]
    finally:
        c.stop()


def test_listening_beyond_loopback_needs_tokens(store: Store, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="without ingest tokens"):
        Collector(store, host="0.0.0.0", port=0, spool_dir=tmp_path / "a")
    c = Collector(store, host="0.0.0.0", port=0, spool_dir=tmp_path / "b",
                  tokens=Tokens({"s" * 20: "p"})).start()
    try:
        assert post(c.port, request(7, 0, 1).SerializeToString()).status == 401
    finally:
        c.stop()
    with pytest.raises(UsageError, match="shorter than"):
        Tokens({"short": "p"})


def test_tls(store: Store, tmp_path: Path, caplog: pytest.LogCaptureFixture,
             capfd: pytest.CaptureFixture[str]) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    made = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                           "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1",
                           "-keyout", str(key), "-out", str(cert)], capture_output=True)
    if made.returncode != 0:
        pytest.skip("openssl cannot make a test certificate here")
    c = Collector(store, port=0, spool_dir=tmp_path / "spool", tls_cert=cert, tls_key=key,
                  flush_interval=0.05).start()
    try:
        assert c.url.startswith("https://")
        context = ssl.create_default_context(cafile=str(cert))
        reply = post(c.port, request(8, 0, 3).SerializeToString(), context=context)
        assert reply.status == 200
        assert wait_stored(store, 3) == 3
        with pytest.raises((OSError, http.client.HTTPException)):  # plain HTTP gets no answer
            post(c.port, b"")
        with pytest.raises(ssl.SSLError):  # a client that does not trust the certificate
            post(c.port, b"", context=ssl.create_default_context())
        assert post(c.port, request(8, 3, 1).SerializeToString(), context=context).status == 200
    finally:
        c.stop()
    # Each broken connection is one line in the log, not a traceback on stderr.
    failed = [r for r in caplog.records if "connection from 127.0.0.1 failed" in r.getMessage()]
    assert len(failed) == 2 and not any(r.exc_info for r in failed)
    assert "Traceback" not in capfd.readouterr().err
    assert wait_stored(store, 4) == 4


def test_spans_older_than_the_retention_are_rejected_not_acknowledged_and_lost(
        collector: Collector, store: Store, caplog: pytest.LogCaptureFixture) -> None:
    assert post(collector.port, request(14, 0, 2).SerializeToString()).status == 200
    assert wait_stored(store, 2) == 2  # by now the writer has read the store's retention
    mixed = request(14, 2, 4)
    for span in mixed.resource_spans[0].scope_spans[0].spans[:3]:  # a year ago: past the 90-day retention
        span.start_time_unix_nano -= 365 * 86_400 * 10**9
        span.end_time_unix_nano -= 365 * 86_400 * 10**9
    reply = post(collector.port, mixed.SerializeToString())
    assert reply.status == 200
    partial = ExportTraceServiceResponse.FromString(reply.body).partial_success
    assert partial.rejected_spans == 3
    assert partial.error_message == ("3 span(s) rejected: 3 started more than 90 days ago, before the "
                                     "store's retention, which would delete them on arrival")
    assert wait_stored(store, 3) == 3  # the fourth, recent span
    # Rows are queryable a moment before the writer commits them and counts them as stored.
    assert wait_for(lambda: get_json(collector.port)["stored"] >= 3)
    health = get_json(collector.port)
    assert (health["expired"], health["rejected"], health["stored"]) == (3, 3, 3)
    assert any("rejected 3 span(s) that started more than 90 days ago" in r.getMessage() for r in caplog.records)
    # The spool holds the request whole; read back (a replay) its old spans are left out again,
    # and not counted twice.
    replayed = collector.drop_expired(otlp.decode_protobuf(mixed.SerializeToString()), counted=False)
    assert replayed.table.column("SpanName").to_pylist() == ["span 5"]
    assert get_json(collector.port)["expired"] == 3


def test_an_unreadable_certificate_is_one_error_and_nothing_left_running(store: Store, tmp_path: Path) -> None:
    bad = tmp_path / "not-a-cert.pem"
    bad.write_text("not PEM at all\n")
    c = Collector(store, port=0, spool_dir=tmp_path / "spool", tls_cert=bad, tls_key=bad)
    with pytest.raises(UsageError, match="cannot load the TLS certificate/key"):
        c.start()
    assert c.stop()  # it used to wait forever for a serve loop that never started


def test_a_binary_tokens_file_is_one_clear_error(tmp_path: Path) -> None:
    garbage = tmp_path / "tokens.bin"
    garbage.write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(UsageError, match="is not UTF-8 text: expected lines of 'project token'"):
        load_tokens(garbage)


def test_a_client_that_stalls_mid_body_is_let_go(store: Store, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(server._Handler, "read_timeout", 0.5)  # 30 s in service
    c = Collector(store, port=0, spool_dir=tmp_path / "spool", flush_interval=0.05).start()
    try:
        with socket.create_connection(("127.0.0.1", c.port), timeout=30) as stalled:
            stalled.sendall(b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n"
                            b"Content-Length: 1000\r\n\r\n" + b"\x00" * 10)
            reply = stalled.makefile("rb").read()  # to the end: the collector closes the connection
            assert reply.startswith(b"HTTP/1.1 408 ") and b"the body stopped after 10 of 1000 bytes" in reply
        # ...and still serves everyone else.
        assert post(c.port, request(9, 0, 2).SerializeToString()).status == 200
    finally:
        assert c.stop()
    assert wait_stored(store, 2) == 2


@pytest.mark.parametrize("head", [b"POST /v1/tra", b"POST /v1/traces HTTP/1.1\r\nHost: x\r\n",
                                  b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Ty"])
def test_a_client_that_stalls_mid_head_gets_408_not_a_verdict_on_half_a_request(
        head: bytes, store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The head read so far was taken for a whole one: 400 "Bad HTTP/0.9 request type", or 415 for
    # a Content-Type that had not arrived yet.
    monkeypatch.setattr(server._Handler, "read_timeout", 0.5)  # 30 s in service
    c = Collector(store, port=0, spool_dir=tmp_path / "spool", flush_interval=0.05).start()
    try:
        with socket.create_connection(("127.0.0.1", c.port), timeout=30) as stalled:
            stalled.sendall(head)
            reply = stalled.makefile("rb").read()
        assert reply.startswith(b"HTTP/1.1 408 "), reply
        assert b"the request's head stopped before its end" in reply
        assert post(c.port, request(9, 0, 2).SerializeToString()).status == 200
    finally:
        assert c.stop()


def _raw(port: int, data: bytes) -> bytes:
    """Send ``data`` as is and read the answer until the collector closes the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
        conn.sendall(data)
        conn.shutdown(socket.SHUT_WR)
        return conn.makefile("rb").read()


def _chunked(body: bytes, sizes: tuple[int, ...]) -> bytes:
    out, at = b"", 0
    for n in sizes:
        out += f"{n:x};ext=1\r\n".encode() + body[at:at + n] + b"\r\n"
        at += n
    return out + b"0\r\nX-Trailer: t\r\n\r\n"


_POST = (b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n"
         b"Connection: close\r\n")


def test_a_chunked_body_is_read_and_stored(store: Store, tmp_path: Path) -> None:
    # Proxies and some exporters send chunked bodies: they got 411 and were lost.
    c = Collector(store, port=0, spool_dir=tmp_path / "spool", flush_interval=0.05, max_body_bytes=4096).start()
    try:
        body = request(12, 0, 3).SerializeToString()
        third = len(body) // 3
        reply = _raw(c.port, _POST + b"Transfer-Encoding: chunked\r\n\r\n"
                     + _chunked(body, (third, third, len(body) - 2 * third)))
        assert reply.startswith(b"HTTP/1.1 200 "), reply[:200]
        # Transfer-Encoding wins over a Content-Length that disagrees (RFC 9112 6.3).
        body = request(12, 3, 2).SerializeToString()
        reply = _raw(c.port, _POST.replace(b"Connection: close\r\n", b"")
                     + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
                     + _chunked(body, (7, len(body) - 7)) + b"GET /health HTTP/1.1\r\n\r\n")
        # ...and the connection is closed after it, the next request unread (no smuggling).
        assert reply.startswith(b"HTTP/1.1 200 ") and b"Connection: close" in reply, reply[:200]
        assert reply.count(b"HTTP/1.1 ") == 1
        big = _raw(c.port, _POST + b"Transfer-Encoding: chunked\r\n\r\n" + _chunked(b"\x00" * 5000, (3000, 2000)))
        assert big.startswith(b"HTTP/1.1 413 ") and b"passed the 4096-byte limit" in big
        bad = _raw(c.port, _POST + b"Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n")
        assert bad.startswith(b"HTTP/1.1 400 ") and b"malformed chunk size" in bad
        cut = _raw(c.port, _POST + b"Transfer-Encoding: chunked\r\n\r\n10\r\nabc")
        assert cut.startswith(b"HTTP/1.1 408 ") and b"stopped after 3 bytes" in cut
        other = _raw(c.port, _POST + b"Transfer-Encoding: gzip, chunked\r\n\r\n")
        assert other.startswith(b"HTTP/1.1 501 ") and b"unsupported Transfer-Encoding" in other
        neither = _raw(c.port, _POST + b"\r\n")
        assert neither.startswith(b"HTTP/1.1 411 ")
        # A real client's chunked requests, two on one kept-alive connection.
        conn = http.client.HTTPConnection("127.0.0.1", c.port, timeout=30)
        for start in (5, 7):
            data = request(12, start, 2).SerializeToString()
            conn.request("POST", "/v1/traces", body=iter([data[:10], data[10:]]),
                         headers={"Content-Type": "application/x-protobuf"})
            answer = conn.getresponse()
            assert answer.status == 200 and not answer.will_close
            answer.read()
        conn.close()
    finally:
        assert c.stop()
    assert wait_stored(store, 9) == 9


def test_framing_a_proxy_could_read_differently_is_refused(store: Store, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(server._Handler, "read_timeout", 0.5)  # 30 s in service
    c = Collector(store, port=0, spool_dir=tmp_path / "spool", flush_interval=0.05, max_body_bytes=4096).start()
    chunked = _POST + b"Transfer-Encoding: chunked\r\n\r\n"
    try:
        # int(x, 16) takes all of these; "-1" read to the end of the stream past --max-body.
        for size in (b"-1", b"-5", b"+16", b"0x16", b"1_6"):
            reply = _raw(c.port, chunked + size + b"\r\n" + b"a" * 5000 + b"\r\n0\r\n\r\n")
            assert reply.startswith(b"HTTP/1.1 400 ") and b"malformed chunk size" in reply, (size, reply[:120])
        # Two Transfer-Encoding headers are one list: "chunked, gzip" is not chunked last.
        two = _raw(c.port, _POST + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n")
        assert two.startswith(b"HTTP/1.1 501 ")
        lengths = _raw(c.port, _POST + b"Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!")
        assert lengths.startswith(b"HTTP/1.1 400 ") and b"Content-Length headers disagree: 5, 6" in lengths
        superscript = _raw(c.port, _POST + "Content-Length: ²\r\n\r\n".encode())
        assert superscript.startswith(b"HTTP/1.1 411 ")
        # A GET's body is never read as the next request.
        smuggled = (_POST.replace(b"Connection: close\r\n", b"") + b"Content-Length: %d\r\n\r\n"
                    % len(request(13, 0, 2).SerializeToString()) + request(13, 0, 2).SerializeToString())
        reply = _raw(c.port, b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: %d\r\n\r\n"
                     % len(smuggled) + smuggled)
        assert reply.count(b"HTTP/1.1 ") == 1 and c.health()["accepted"] == 0
        # A GET on the traces path with a body, then a pipelined request: each answered once.
        reply = _raw(c.port, b"GET /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
                     b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert reply.startswith(b"HTTP/1.1 405 ") and reply.count(b"HTTP/1.1 200 ") == 1
        # A body that stalls before its first byte gets its 408 (the read returned None).
        for stalled in (_POST + b"Content-Length: 361\r\n\r\n", chunked + b"10\r\n"):
            with socket.create_connection(("127.0.0.1", c.port), timeout=30) as conn:
                conn.sendall(stalled)
                assert conn.makefile("rb").read().startswith(b"HTTP/1.1 408 ")
        # Expect: 100-continue over the limit is refused before the client uploads anything.
        with socket.create_connection(("127.0.0.1", c.port), timeout=30) as conn:
            conn.sendall(_POST + b"Expect: 100-continue\r\nContent-Length: 99999999\r\n\r\n")
            answer = conn.makefile("rb").read()
            assert answer.startswith(b"HTTP/1.1 413 ") and b"100 Continue" not in answer
        # HEAD /health, as load balancers probe: headers only, then a GET on the same connection.
        conn = http.client.HTTPConnection("127.0.0.1", c.port, timeout=30)
        conn.request("HEAD", "/health")
        head = conn.getresponse()
        assert head.status == 200 and head.read() == b""
        conn.request("GET", "/health")
        assert json.loads(conn.getresponse().read())["bad_requests"] >= 8
        conn.close()
    finally:
        assert c.stop()


@pytest.mark.parametrize("line", [b"GARBAGE\r\n\r\n", b"GET / HTTP/9.9\r\n\r\n", b"BREW /v1/traces HTTP/1.1\r\n\r\n",
                                  b"POST /v1/traces HTTP/1.1\r\nX: " + b"a" * 70000 + b"\r\n\r\n"])
def test_what_http_server_refuses_itself_is_an_otlp_status_not_html(store: Store, tmp_path: Path,
                                                                     line: bytes) -> None:
    c = Collector(store, port=0, spool_dir=tmp_path / "spool").start()
    try:
        reply = _raw(c.port, line)
        head, _, body = reply.partition(b"\r\n\r\n")
        assert re.match(rb"HTTP/1\.[01] (400|431|501|505) ", head), reply[:200]
        assert b"Content-Type: application/json" in head and b"<html" not in body.lower()
        assert json.loads(body)["message"]
        assert c.health()["bad_requests"] == 1
    finally:
        assert c.stop()


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(generated_requests())
def test_generated_requests_over_the_socket(collector_for_fuzz: Collector, req: ExportTraceServiceRequest) -> None:
    data = req.SerializeToString()
    expected = otlp.decode_protobuf(data)
    reply = post(collector_for_fuzz.port, data)
    assert reply.status == 200
    rejected = ExportTraceServiceResponse.FromString(reply.body).partial_success.rejected_spans
    assert rejected == expected.rejected


@pytest.fixture(scope="module")
def collector_for_fuzz(tmp_path_factory: pytest.TempPathFactory, chdb_dir: Path):
    """One collector for every generated request (hypothesis reuses function-scoped fixtures)."""
    import uuid

    from handoffs.store.engines import ChdbEngine
    from handoffs.store.url import StoreURL

    database = "t_" + uuid.uuid4().hex[:12]
    store = Store(ChdbEngine(chdb_dir, database), StoreURL("chdb", path=chdb_dir, database=database))
    # Kept forever: generated timestamps reach from 1970 to 2262, and this is about decoding.
    store.migrate(ttl_days=0)
    c = Collector(store, port=0, spool_dir=tmp_path_factory.mktemp("fuzz-spool"), flush_interval=0.05).start()
    yield c
    c.stop()
    health = c.health()
    assert health["stored"] == health["accepted"] > 0  # every acknowledged span reached an insert
    assert health["expired"] == 0
    ChdbEngine(chdb_dir).command(f"DROP DATABASE IF EXISTS `{database}`")


def test_json_request_round_trip(store: Store, collector: Collector) -> None:
    req = ExportTraceServiceRequest()
    req.CopyFrom(request(9, 0, 2))
    assert post(collector.port, to_otlp_json(req), "application/json; charset=utf-8").status == 200
    assert wait_stored(store, 2) == 2
