"""Helpers for the collector's tests: OTLP requests with known ids, and raw HTTP posts."""

from __future__ import annotations

import base64
import http.client
import json
import os
import random
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue, KeyValueList
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from handoffs import conventions as conv
from handoffs.store import Store

# An hour ago: the span table's TTL drops rows older than its retention at insert.
BASE_NS = (time.time_ns() // 10**9 - 3600) * 10**9


def span_ids(run: int, index: int) -> tuple[bytes, bytes]:
    """A unique (trace id, span id) for the index-th span of a run: tests count them back."""
    return struct.pack(">QQ", run + 1, index // 8 + 1), struct.pack(">Q", (run + 1) << 32 | (index + 1))


def request(run: int, start: int, count: int, service: str = "svc", project: str | None = None,
            bad: set[int] | None = None) -> ExportTraceServiceRequest:
    """Spans ``start..start+count`` of ``run``; indexes in ``bad`` get a 3-byte trace id."""
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    rs.resource.attributes.add(key=conv.SERVICE_NAME, value=AnyValue(string_value=service))
    if project is not None:
        rs.resource.attributes.add(key=conv.RESOURCE_PROJECT, value=AnyValue(string_value=project))
    ss = rs.scope_spans.add()
    ss.scope.name = "tests"
    for i in range(start, start + count):
        trace_id, span_id = span_ids(run, i)
        span = ss.spans.add(
            trace_id=b"\x01\x02\x03" if bad and i in bad else trace_id, span_id=span_id,
            name=f"span {i}", kind=Span.SPAN_KIND_INTERNAL,
            start_time_unix_nano=BASE_NS + i * 1000, end_time_unix_nano=BASE_NS + i * 1000 + 500)
        span.attributes.extend([
            KeyValue(key=conv.SPAN_TYPE, value=AnyValue(string_value="tool")),
            KeyValue(key=conv.STEP, value=AnyValue(int_value=i)),
        ])
    return req


def to_otlp_json(req: ExportTraceServiceRequest) -> bytes:
    """The request as OTLP/JSON: proto3 JSON with hex ids instead of base64."""
    doc = json_format.MessageToDict(req)
    for rs in doc.get("resourceSpans", []):
        for ss in rs.get("scopeSpans", []):
            for span in ss.get("spans", []):
                for obj in [span, *span.get("links", [])]:
                    for key in ("traceId", "spanId", "parentSpanId"):
                        if key in obj:
                            obj[key] = base64.b64decode(obj[key]).hex()
    return json.dumps(doc).encode()


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes


def post(port: int, body: bytes, content_type: str = "application/x-protobuf",
         headers: dict[str, str] | None = None, path: str = "/v1/traces", host: str = "127.0.0.1",
         context: object | None = None) -> Reply:
    """One POST on a fresh connection; returns status, headers and body."""
    if context is not None:
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(host, port, timeout=30,
                                                                        context=context)  # type: ignore[arg-type]
    else:
        conn = http.client.HTTPConnection(host, port, timeout=30)
    try:
        conn.request("POST", path, body=body, headers={"Content-Type": content_type, **(headers or {})})
        resp = conn.getresponse()
        return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
    finally:
        conn.close()


def get_json(port: int, path: str = "/health") -> dict:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", path)
        return json.loads(conn.getresponse().read())
    finally:
        conn.close()


def wait_for(predicate: Callable[[], bool], timeout: float = 60.0) -> bool:
    """Poll ``predicate`` until it holds (True) or ``timeout`` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def span_counts(store: Store) -> tuple[int, int]:
    """(rows, distinct (TraceId, SpanId)) in the span table, before any merge."""
    row = store.query("SELECT count() AS n, uniqExact(TraceId, SpanId) AS u FROM otel_traces")[0]
    return int(row["n"]), int(row["u"])


def have_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


class Outage:
    """A TCP proxy in front of a store endpoint that can be cut (every connection and the
    listener closed, as when a server goes down) and restored on the same port."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = 0
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self.restore()

    def restore(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        with self._lock:
            conns, self._conns = self._conns, []
            listener, self._listener = self._listener, None
        for sock in [*conns, listener]:
            if sock is None:
                continue
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.upstream)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(1 << 16)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


_WORDS = ["", "a", conv.SPAN_TYPE, conv.RESOURCE_PROJECT, conv.SERVICE_NAME, "é" * 30, "\x00\n\t\"\\",
          "x" * 70, "日本語", "emoji 🎉", "k" * 21]


def random_value(rng: random.Random, depth: int = 0) -> AnyValue:
    """A random AnyValue of any kind, nesting up to 5 levels (cheap, for bulk fuzzing)."""
    kind = rng.randrange(9 if depth < 5 else 7)
    if kind == 0:
        return AnyValue(string_value=random_text(rng))
    if kind == 1:
        return AnyValue(int_value=rng.choice([0, -1, 2**63 - 1, -(2**63), rng.randrange(-10**6, 10**6)]))
    if kind == 2:
        return AnyValue(bool_value=rng.random() < 0.5)
    if kind == 3:
        return AnyValue(double_value=rng.choice([0.1, -0.0, 1e300, float("inf"), float("nan"), rng.random()]))
    if kind == 4:
        return AnyValue(bytes_value=rng.randbytes(rng.randrange(6)))
    if kind == 5:
        return AnyValue()
    if kind == 6:
        return AnyValue(string_value=rng.choice(_WORDS))
    if kind == 7:
        return AnyValue(array_value=ArrayValue(values=[random_value(rng, depth + 1) for _ in range(rng.randrange(4))]))
    return AnyValue(kvlist_value=KeyValueList(values=[KeyValue(key=random_text(rng), value=random_value(rng, depth + 1))
                                                      for _ in range(rng.randrange(4))]))


def random_text(rng: random.Random) -> str:
    if rng.random() < 0.5:
        return rng.choice(_WORDS)
    return "".join(chr(rng.choice([rng.randrange(32, 127), rng.randrange(0, 32), rng.randrange(0xA0, 0xD7FF),
                                   rng.randrange(0x10000, 0x10FFFF)])) for _ in range(rng.randrange(12)))


def random_attributes(rng: random.Random) -> list[KeyValue]:
    return [KeyValue(key=random_text(rng), value=random_value(rng)) for _ in range(rng.randrange(5))]


def random_request(rng: random.Random) -> ExportTraceServiceRequest:
    """A random request mixing good spans with every kind of bad one (bulk fuzzing corpus)."""
    def ident(size: int) -> bytes:
        roll = rng.random()
        if roll < 0.8:
            return rng.randbytes(size)
        return rng.choice([b"", bytes(size), rng.randbytes(rng.randrange(1, 20))])

    def moment() -> int:
        return rng.choice([BASE_NS + rng.randrange(10**12)] * 8 + [0, 2**63 - 1, 2**63, 2**64 - 1])

    req = ExportTraceServiceRequest()
    for _ in range(rng.randrange(3)):
        rs = req.resource_spans.add()
        rs.resource.attributes.extend(random_attributes(rng))
        for _ in range(rng.randrange(3)):
            ss = rs.scope_spans.add()
            ss.scope.name, ss.scope.version = random_text(rng), random_text(rng)
            for _ in range(rng.randrange(5)):
                span = ss.spans.add(trace_id=ident(16), span_id=ident(8),
                                    parent_span_id=b"" if rng.random() < 0.4 else ident(8),
                                    trace_state=random_text(rng), name=random_text(rng),
                                    kind=rng.randrange(-1, 8), start_time_unix_nano=moment(),
                                    end_time_unix_nano=moment(), attributes=random_attributes(rng))
                if rng.random() < 0.5:
                    span.status.code = rng.randrange(5)
                    span.status.message = random_text(rng)
                for _ in range(rng.randrange(3)):
                    span.events.add(time_unix_nano=moment(), name=random_text(rng),
                                    attributes=random_attributes(rng))
                for _ in range(rng.randrange(3)):
                    span.links.add(trace_id=ident(16), span_id=ident(8), trace_state=random_text(rng),
                                   attributes=random_attributes(rng))
    return req
