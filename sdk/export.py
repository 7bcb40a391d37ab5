"""How spans leave the agent's process: a span processor that never drops silently, and exporters.

OpenTelemetry's ``BatchSpanProcessor`` drops spans once its queue (2,048) is full, with one
warning line; under a fast producer that is about half of them. ``BoundedBatchProcessor``
keeps a bounded queue too (so memory stays bounded) but, when it is full, blocks the producer
until the exporter has made room. Only when the exporter stops making progress for
``block_timeout`` seconds does it give up on a span, and then it counts it and warns. Spans
still queued at exit are exported by ``handoffs.sdk``'s exit hook, which waits for a stuck
exporter no longer than ``block_timeout`` either.

Exporters: ``otlp_exporter`` (OTLP/HTTP protobuf, to ``handoffs collect`` or any collector, in
requests the collector accepts) and ``StoreSpanExporter`` (straight into a store, for scripts
and tests).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from handoffs.errors import HandoffsError, UsageError

if TYPE_CHECKING:
    from handoffs.store import Store

log = logging.getLogger("handoffs.sdk")

DEFAULT_ENDPOINT = "http://127.0.0.1:4318"
# The collector cuts a string value to this many bytes (handoffs.collector.otlp.Limits;
# tests/sdk pin the two together). Not imported from there: that module loads pyarrow.
MAX_VALUE_BYTES = 64 * 1024
# Half the collector's default request limit (16 MiB, ``handoffs collect --max-body``): room for
# what the estimate of a span's size leaves out.
MAX_REQUEST_BYTES = 8 << 20
_CUT_FROM = MAX_VALUE_BYTES // 4  # UTF-8 takes at most 4 bytes a character: shorter texts fit


def truncate(text: str) -> str:
    """``text`` cut to ``MAX_VALUE_BYTES`` of UTF-8 on a character boundary, as the collector cuts it."""
    if len(text) <= _CUT_FROM:
        return text
    raw = text.encode("utf-8", "surrogatepass")
    if len(raw) <= MAX_VALUE_BYTES:
        return text
    return raw[:MAX_VALUE_BYTES].decode("utf-8", "ignore")


@dataclass
class ExportStats:
    """What became of this setup's spans on their way out. ``dropped + failed`` is what was lost."""

    accepted: int = 0  # queued for export
    exported: int = 0  # the exporter reported success
    failed: int = 0  # the exporter reported failure (its own retries exhausted)
    # never exported: no room for block_timeout, ended after shutdown, or still queued when the
    # wait at exit (or in shutdown) ran out
    dropped: int = 0
    blocked: int = 0  # times a producer waited for room (backpressure applied)
    truncated: int = 0  # texts cut to MAX_VALUE_BYTES when recorded (the collector's limit)
    events_dropped: int = 0  # events OpenTelemetry dropped from a span at its event limit

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def check_batching(max_queue_size: int, max_batch_size: int, schedule_delay: float,
                   block_timeout: float) -> None:
    """Refuse settings the export thread cannot work with (a zero delay spins, a zero batch hangs)."""
    for name, value in (("max_queue_size", max_queue_size), ("max_batch_size", max_batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise UsageError(f"{name} must be a whole number of spans, at least 1, not {value!r}")
    if max_batch_size > max_queue_size:
        raise UsageError(f"max_batch_size ({max_batch_size}) must not exceed "
                         f"max_queue_size ({max_queue_size})")
    for name, value in (("schedule_delay", schedule_delay), ("block_timeout", block_timeout)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
            raise UsageError(f"{name} must be a number of seconds above 0, not {value!r}")


class BoundedBatchProcessor(SpanProcessor):
    """Batches finished spans to an exporter on a worker thread; a full queue blocks the producer.

    After a failed export, an exporter may say why in ``last_failure`` and how many of the batch
    were lost in ``last_failed`` (``OtlpExporter``, ``StoreSpanExporter`` do); the warning and
    the counts use them.
    """

    def __init__(self, exporter: SpanExporter, max_queue_size: int = 8192, max_batch_size: int = 1024,
                 schedule_delay: float = 0.5, block_timeout: float = 10.0) -> None:
        check_batching(max_queue_size, max_batch_size, schedule_delay, block_timeout)
        self.exporter = exporter
        self.max_queue_size = max_queue_size
        self.max_batch_size = max_batch_size
        self.schedule_delay = schedule_delay
        self.block_timeout = block_timeout
        self.stats = ExportStats()
        self._queue: deque[ReadableSpan] = deque()
        lock = threading.Lock()
        self._lock = lock
        self._work = threading.Condition(lock)  # the worker waits here for spans
        self._room = threading.Condition(lock)  # producers wait here for room
        self._idle = threading.Condition(lock)  # flushers wait here for an empty queue
        self._in_flight = 0
        self._flushing = 0
        self._stalled = False  # the last wait for room timed out: do not wait again until room
        self._shutdown = False
        self._abandoned = False  # shutdown stopped waiting for the exporter: what was left is dropped
        self._successor: BoundedBatchProcessor | None = None  # configure() was called again
        self._worker = threading.Thread(target=self._run, name="handoffs-span-export", daemon=True)
        self._worker.start()

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        return None

    def on_end(self, span: ReadableSpan) -> None:
        with self._lock:
            if not self._shutdown:
                queue = self._queue
                if len(queue) >= self.max_queue_size:
                    if self._stalled or not self._wait_for_room():
                        self._drop("the exporter made no room")
                        return
                queue.append(span)
                self.stats.accepted += 1
                if len(queue) == self.max_batch_size:
                    self._work.notify()
                return
            successor = self._successor
            if successor is None:
                self._drop("after shutdown")
                return
        successor.on_end(span)  # opened before configure() was called again, ended after it

    def hand_over(self, successor: BoundedBatchProcessor) -> None:
        """Spans that end after this processor shut down go to ``successor`` instead of being dropped."""
        with self._lock:
            self._successor = successor

    @property
    def pending(self) -> int:
        """Spans queued or being exported right now."""
        with self._lock:
            return len(self._queue) + self._in_flight

    def _wait_for_room(self) -> bool:
        """Block until the queue has room (lock held); False when the exporter stalled."""
        self.stats.blocked += 1
        deadline = time.monotonic() + self.block_timeout
        while len(self._queue) >= self.max_queue_size and not self._shutdown:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._stalled = True
                return False
            self._room.wait(remaining)
        return not self._shutdown

    def _drop(self, why: str) -> None:
        self.stats.dropped += 1
        if self.stats.dropped == 1 or self.stats.dropped % 10_000 == 0:
            log.warning("handoffs: %d span(s) dropped so far (%s); see handoffs.sdk.stats()",
                        self.stats.dropped, why)

    def _run(self) -> None:
        while True:
            with self._lock:
                queue = self._queue
                if len(queue) < self.max_batch_size and not self._shutdown and not self._flushing:
                    self._work.wait(self.schedule_delay)
                n = min(len(queue), self.max_batch_size)
                batch = [queue.popleft() for _ in range(n)]
                if n:
                    self._stalled = False
                    self._room.notify_all()
                self._in_flight = n
                stop = self._shutdown and not queue and not n
            if n:
                self._export(batch)
            with self._lock:
                self._in_flight = 0
                if not self._queue:
                    self._idle.notify_all()
            if stop:
                return

    def _export(self, batch: list[ReadableSpan]) -> None:
        exporter = self.exporter
        try:
            result = exporter.export(batch)
        except Exception:  # an exporter bug must not kill the worker and strand the queue
            log.exception("handoffs: span exporter raised; %d span(s) lost", len(batch))
            result = SpanExportResult.FAILURE
        with self._lock:
            if self._abandoned:
                return  # already counted as dropped
            if result is SpanExportResult.SUCCESS:
                self.stats.exported += len(batch)
                return
            lost = min(getattr(exporter, "last_failed", 0), len(batch)) or len(batch)
            self.stats.exported += len(batch) - lost
            self.stats.failed += lost
            why = getattr(exporter, "last_failure", "") or "the exporter reported failure"
            log.warning("handoffs: export of %d span(s) failed (%d so far): %s", lost, self.stats.failed, why)

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Wait until every span queued so far has been handed to the exporter; False if that took
        longer than ``timeout_millis`` or an export failed meanwhile."""
        deadline = time.monotonic() + timeout_millis / 1000
        with self._lock:
            failed_before = self.stats.failed
            self._flushing += 1
            try:
                self._work.notify()
                while self._queue or self._in_flight:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0 or not self._worker.is_alive():
                        return False
                    self._idle.wait(min(remaining, 0.1))
                    self._work.notify()
                return self.stats.failed == failed_before
            finally:
                self._flushing -= 1

    def shutdown(self, timeout: float | None = None) -> None:
        """Export what is queued and stop, waiting at most ``timeout`` seconds (``block_timeout`` by
        default) for the exporter; what is left after that (or a Ctrl-C) is counted as dropped."""
        with self._lock:
            if self._shutdown:
                return
            self._shutdown = True
            self._work.notify_all()
            self._room.notify_all()
        try:
            self._worker.join(self.block_timeout if timeout is None else timeout)
        finally:
            self._abandon()
            self.exporter.shutdown()  # also cuts the OTLP exporter's retries short

    @property
    def abandoned(self) -> bool:
        """``shutdown`` stopped waiting for the exporter before everything was exported."""
        return self._abandoned

    def _abandon(self) -> None:
        """Stop waiting for the exporter: what is still queued or in flight counts as dropped."""
        with self._lock:
            left = len(self._queue) + self._in_flight
            if left:
                self._abandoned = True
                self.stats.dropped += left
                self._queue.clear()


class StoreSpanExporter(SpanExporter):
    """Writes spans straight into a store (``chdb:///dir`` or ``clickhouse://...``), one insert per batch."""

    def __init__(self, store: Store | str) -> None:
        # Imported here: an agent that only speaks OTLP need not load pyarrow and the store.
        from handoffs.store import open_store

        self.store = open_store(store) if isinstance(store, str) else store
        self.last_failure = ""  # why the last export failed, for the processor's warning

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        from handoffs.store import SpanBatch

        from .encoding import append_span

        self.last_failure = ""
        batch = SpanBatch()
        for span in spans:
            append_span(batch, span)
        try:
            self.store.insert_spans(batch)
        except HandoffsError as exc:
            self.last_failure = f"could not write to the store: {exc}"
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


def check_endpoint(endpoint: str, what: str = "endpoint") -> str:
    """``endpoint`` if it is an http(s) URL with a host; otherwise a UsageError saying how to write it."""
    parts = urlsplit(endpoint) if isinstance(endpoint, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        grpc = " (the SDK speaks OTLP over HTTP, not gRPC)" if parts and parts.scheme == "grpc" else ""
        raise UsageError(f"{what} {endpoint!r} is not an http(s) URL{grpc}: write it as http://host:port, "
                         f"e.g. {DEFAULT_ENDPOINT} (the port of `handoffs collect`)")
    return endpoint


def traces_url(endpoint: str) -> str:
    """``<endpoint>/v1/traces``, unless ``endpoint`` names that path already."""
    url = endpoint.rstrip("/")
    return url if url.endswith("/v1/traces") else url + "/v1/traces"


def otlp_exporter(endpoint: str = DEFAULT_ENDPOINT, headers: dict[str, str] | None = None,
                  timeout: float | None = None) -> OtlpExporter:
    """OTLP/HTTP protobuf to ``<endpoint>/v1/traces`` (``endpoint`` may also name the full path).

    ``headers`` and ``timeout`` left out are OpenTelemetry's (``$OTEL_EXPORTER_OTLP_HEADERS``,
    ``$OTEL_EXPORTER_OTLP_TIMEOUT``, else 10 s), as are certificates and compression.
    """
    return OtlpExporter(traces_url(check_endpoint(endpoint)), headers=headers, timeout=timeout)


class OtlpExporter(SpanExporter):
    """OpenTelemetry's OTLP/HTTP exporter, in requests the collector accepts, its failures explained.

    A batch goes out in parts of at most ``max_request_bytes`` (estimated), so spans heavy with
    captured content cannot make a request over the collector's limit; a part refused as too
    large anyway (HTTP 413) is halved and sent again.
    """

    def __init__(self, url: str, headers: Mapping[str, str] | None = None, timeout: float | None = None,
                 max_request_bytes: int = MAX_REQUEST_BYTES) -> None:
        import requests
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        self.url = url
        self.max_request_bytes = max_request_bytes
        self.last_failure = ""  # why the last export failed, for the processor's warning
        self.last_failed = 0  # spans of the last export that were not delivered
        self._status: int | None = None  # of the last HTTP answer; None: no answer
        session = requests.Session()
        session.hooks["response"].append(self._answered)  # the status code OTel's exporter keeps to itself
        self._inner = OTLPSpanExporter(endpoint=url, headers=headers, timeout=timeout, session=session)

    def _answered(self, response: Any, *args: Any, **kwargs: Any) -> None:
        self._status = response.status_code

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.last_failed, self.last_failure = 0, ""
        part: list[ReadableSpan] = []
        size = 0
        for span in spans:
            n = _estimated_bytes(span)
            if part and size + n > self.max_request_bytes:
                self._send(part)
                part, size = [], 0
            part.append(span)
            size += n
        if part:
            self._send(part)
        return SpanExportResult.FAILURE if self.last_failed else SpanExportResult.SUCCESS

    def _send(self, spans: list[ReadableSpan]) -> None:
        self._status = None
        if self._inner.export(spans) is SpanExportResult.SUCCESS:
            return
        if self._status == 413 and len(spans) > 1:
            half = len(spans) // 2
            self._send(spans[:half])
            self._send(spans[half:])
            return
        self.last_failed += len(spans)
        self.last_failure = self._why(self._status)

    def _why(self, status: int | None) -> str:
        if status is None:
            return f"no answer from {self.url}: is the collector running there?"
        if status == 413:
            return (f"{self.url} refused a single span as too large (HTTP 413): capture less content, "
                    "or start the collector with a larger --max-body")
        if status in (401, 403):
            return (f"{self.url} refused the token (HTTP {status}): set OTEL_EXPORTER_OTLP_HEADERS="
                    "'Authorization=Bearer <token>' with a token from the collector's tokens file")
        return f"{self.url} answered HTTP {status}"

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


def _estimated_bytes(span: ReadableSpan) -> int:
    """About what ``span`` takes in an OTLP request, erring high: its strings are most of it."""
    n = 128 + len(span.name) + _attributes_bytes(span.attributes)
    for event in span.events:
        n += 32 + len(event.name) + _attributes_bytes(event.attributes)
    return n


def _attributes_bytes(attributes: Mapping[str, Any] | None) -> int:
    n = 0
    for key, value in (attributes or {}).items():
        n += 16 + len(key)
        if isinstance(value, str):
            n += len(value) if value.isascii() else 4 * len(value)  # UTF-8: at most 4 bytes a character
        elif not isinstance(value, (bool, int, float)):
            n += 4 * len(str(value))  # a sequence
    return n
