"""How spans leave the agent's process: a span processor that never drops silently, and exporters.

OpenTelemetry's ``BatchSpanProcessor`` drops spans once its queue (2,048) is full, with one
warning line; under a fast producer that is about half of them. ``BoundedBatchProcessor``
keeps a bounded queue too (so memory stays bounded) but, when it is full, blocks the producer
until the exporter has made room. Only when the exporter stops making progress for
``block_timeout`` seconds does it give up on a span, and then it counts it and warns. Spans
still queued at exit are exported (``TracerProvider`` shuts its processors down at exit).

Exporters: ``otlp_exporter`` (OTLP/HTTP protobuf, to ``handoffs collect`` or any collector)
and ``StoreSpanExporter`` (straight into a store, for scripts and tests).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from handoffs.errors import HandoffsError

if TYPE_CHECKING:
    from handoffs.store import Store

log = logging.getLogger("handoffs.sdk")

DEFAULT_ENDPOINT = "http://127.0.0.1:4318"


@dataclass
class ExportStats:
    """What the processor did with the spans it was given. ``dropped + failed`` is what was lost."""

    accepted: int = 0  # queued for export
    exported: int = 0  # the exporter reported success
    failed: int = 0  # the exporter reported failure (its own retries exhausted)
    dropped: int = 0  # never queued: the exporter made no room for block_timeout, or after shutdown
    blocked: int = 0  # times a producer waited for room (backpressure applied)

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class BoundedBatchProcessor(SpanProcessor):
    """Batches finished spans to an exporter on a worker thread; a full queue blocks the producer."""

    def __init__(self, exporter: SpanExporter, max_queue_size: int = 8192, max_batch_size: int = 1024,
                 schedule_delay: float = 0.5, block_timeout: float = 10.0) -> None:
        if max_batch_size > max_queue_size:
            raise ValueError("max_batch_size must not exceed max_queue_size")
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
        self._worker = threading.Thread(target=self._run, name="handoffs-span-export", daemon=True)
        self._worker.start()

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        return None

    def on_end(self, span: ReadableSpan) -> None:
        with self._lock:
            if self._shutdown:
                self._drop("after shutdown")
                return
            queue = self._queue
            if len(queue) >= self.max_queue_size:
                if self._stalled or not self._wait_for_room():
                    self._drop("the exporter made no room")
                    return
            queue.append(span)
            self.stats.accepted += 1
            if len(queue) == self.max_batch_size:
                self._work.notify()

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
        try:
            result = self.exporter.export(batch)
        except Exception:  # an exporter bug must not kill the worker and strand the queue
            log.exception("handoffs: span exporter raised; %d span(s) lost", len(batch))
            result = SpanExportResult.FAILURE
        with self._lock:
            if result is SpanExportResult.SUCCESS:
                self.stats.exported += len(batch)
            else:
                self.stats.failed += len(batch)
                log.warning("handoffs: export of %d span(s) failed (%d so far); is the collector "
                            "running?", len(batch), self.stats.failed)

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Wait until every span queued so far has been handed to the exporter."""
        deadline = time.monotonic() + timeout_millis / 1000
        with self._lock:
            self._flushing += 1
            try:
                self._work.notify()
                while self._queue or self._in_flight:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0 or not self._worker.is_alive():
                        return False
                    self._idle.wait(min(remaining, 0.1))
                    self._work.notify()
                return True
            finally:
                self._flushing -= 1

    def shutdown(self) -> None:
        with self._lock:
            if self._shutdown:
                return
            self._shutdown = True
            self._work.notify_all()
            self._room.notify_all()
        self._worker.join()
        self.exporter.shutdown()


class StoreSpanExporter(SpanExporter):
    """Writes spans straight into a store (``chdb:///dir`` or ``clickhouse://...``), one insert per batch."""

    def __init__(self, store: Store | str) -> None:
        # Imported here: an agent that only speaks OTLP need not load pyarrow and the store.
        from handoffs.store import open_store

        self.store = open_store(store) if isinstance(store, str) else store

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        from handoffs.store import SpanBatch

        from .encoding import append_span

        batch = SpanBatch()
        for span in spans:
            append_span(batch, span)
        try:
            self.store.insert_spans(batch)
        except HandoffsError as exc:
            log.warning("handoffs: could not write %d span(s) to the store: %s", len(batch), exc)
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


def otlp_exporter(endpoint: str = DEFAULT_ENDPOINT, headers: dict[str, str] | None = None,
                  timeout: float = 10.0) -> SpanExporter:
    """OTLP/HTTP protobuf to ``<endpoint>/v1/traces`` (``endpoint`` may also name the full path)."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    url = endpoint.rstrip("/")
    if not url.endswith("/v1/traces"):
        url += "/v1/traces"
    return OTLPSpanExporter(endpoint=url, headers=headers, timeout=timeout)
