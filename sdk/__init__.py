"""handoffs.sdk: trace who delegated what to whom, what came back, and what was done with it.

    from handoffs import sdk
    sdk.configure(service_name="team", endpoint="http://127.0.0.1:4318")   # or store="chdb:///dir"
    with sdk.run("build-api", tags=["nightly"], topology="centralized") as run:
        with sdk.agent("supervisor", role="supervisor", model="gpt-4o") as sup:
            with sup.delegate("schema_writer", task="write the schema") as d:
                with sdk.agent("schema_writer", role="worker") as w:
                    with w.llm(input_tokens=100, output_tokens=50):
                        ...
                    out = d.output("CREATE TABLE ...", tokens=120, unit_complete=True)
                d.decision("accepted", output=out)
            with sup.verify("unit tests", target=out, coverage=1.0) as v:
                v.verdict("pass")
        run.terminate("done", success_claimed=True, agent="supervisor")

Without ``configure`` the spans go to OpenTelemetry's global tracer provider, so a process
that already exports OTel spans gets ours alongside. Content (outputs, tasks) is hashed, and
kept only with ``capture_content=True``, after the ``redact`` hook. The full reference is
``docs/sdk.md``; every attribute is listed in ``docs/conventions.md``.
"""

from __future__ import annotations

import atexit
import logging
import os
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator

from handoffs import __version__
from handoffs import conventions as c
from handoffs.errors import UsageError

from .export import (
    DEFAULT_ENDPOINT,
    BoundedBatchProcessor,
    ExportStats,
    OtlpExporter,
    StoreSpanExporter,
    check_batching,
    check_endpoint,
    otlp_exporter,
    traces_url,
)
from .tracing import (
    SCOPE_NAME,
    Agent,
    Compensation,
    Delegation,
    Llm,
    Output,
    Run,
    Settings,
    ThreadPoolExecutor,
    Tool,
    Verification,
    agent,
    approval,
    checkpoint,
    content_hash,
    current_agent,
    current_run,
    current_run_id,
    propagate,
    resume,
    run,
    settings,
    traced_agent,
    traced_tool,
)

__all__ = [
    "Agent", "BoundedBatchProcessor", "Compensation", "Delegation", "ExportStats", "Llm", "OtlpExporter",
    "Output", "Run", "StoreSpanExporter", "ThreadPoolExecutor", "Tool", "Verification", "agent", "approval",
    "checkpoint", "configure", "content_hash", "current_agent", "current_run", "current_run_id", "flush",
    "otlp_exporter", "propagate", "resume", "run", "shutdown", "stats", "traced_agent", "traced_tool",
]

if TYPE_CHECKING:
    from handoffs.store import Store

log = logging.getLogger("handoffs.sdk")

_provider: TracerProvider | None = None
_processor: BoundedBatchProcessor | None = None
_final_stats = ExportStats()  # the last processor's counts once ``shutdown`` stopped it
# OpenTelemetry keeps 128 events a span by default; a hand-off records one event per message it
# streams. Bounded still: a span's events stay in memory until it ends.
MAX_EVENTS = 10_000


def configure(service_name: str | None = None, *, endpoint: str | None = None,
              store: Store | str | None = None, exporter: SpanExporter | None = None,
              capture_content: bool = False, redact: Callable[[str], str] | None = None,
              project: str | None = None, resource_attributes: Mapping[str, Any] | None = None,
              max_queue_size: int = 8192, max_batch_size: int = 1024, schedule_delay: float = 0.5,
              block_timeout: float = 10.0, id_generator: IdGenerator | None = None,
              set_global: bool = False) -> TracerProvider:
    """Send this process's spans somewhere: an OTLP/HTTP ``endpoint``, a ``store``, or an ``exporter``.

    With none of the three, spans go over OTLP to OpenTelemetry's ``$OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``
    or ``$OTEL_EXPORTER_OTLP_ENDPOINT``, else to ``http://127.0.0.1:4318`` (``handoffs collect``);
    an endpoint that is not an http(s) URL is a ``UsageError``. ``service_name`` defaults to
    ``$OTEL_SERVICE_NAME``, else ``handoffs``. Calling it again flushes and replaces the previous
    configuration, once the new one is built. Spans still queued when the process exits are
    exported first (waiting at most ``block_timeout`` seconds).
    """
    global _provider, _processor, _final_stats
    if sum(x is not None for x in (endpoint, store, exporter)) > 1:
        raise UsageError("configure takes one of endpoint=, store= or exporter=, not several")
    if redact is not None and not callable(redact):
        raise UsageError("redact must be a function taking and returning a string")
    check_batching(max_queue_size, max_batch_size, schedule_delay, block_timeout)
    if exporter is None and store is None:
        exporter = otlp_exporter(endpoint) if endpoint is not None else _exporter_from_environment()
    elif exporter is None:
        exporter = StoreSpanExporter(store)
    attrs: dict[str, Any] = dict(resource_attributes or {})
    attrs[c.SERVICE_NAME] = service_name or os.environ.get("OTEL_SERVICE_NAME") or "handoffs"
    if project:
        attrs[c.RESOURCE_PROJECT] = project
    provider = TracerProvider(resource=Resource.create(attrs), id_generator=id_generator,
                              span_limits=SpanLimits(max_events=MAX_EVENTS), shutdown_on_exit=False)
    processor = BoundedBatchProcessor(exporter, max_queue_size=max_queue_size, max_batch_size=max_batch_size,
                                      schedule_delay=schedule_delay, block_timeout=block_timeout)
    provider.add_span_processor(processor)
    # Only now that the new setup stands is the old one stopped; spans it opened that end later
    # are exported by the new one.
    if _processor is not None:
        _processor.hand_over(processor)
    shutdown()
    _final_stats = ExportStats()
    if set_global:
        trace.set_tracer_provider(provider)
    _provider, _processor = provider, processor
    # Exit hooks run last-registered first: registering again puts our flush ahead of the
    # store's own hook (registered when the exporter opened it), which closes the store.
    atexit.unregister(_at_exit)
    atexit.register(_at_exit)
    settings.tracer = provider.get_tracer(SCOPE_NAME, __version__)
    settings.capture_content = capture_content
    settings.redact = redact
    settings.stats = processor.stats
    return provider


def _exporter_from_environment() -> OtlpExporter:
    """OTLP to what OpenTelemetry's variables name (the traces URL as it is, the base plus
    ``/v1/traces``), else to ``handoffs collect`` on this machine."""
    for name, full in (("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", True), ("OTEL_EXPORTER_OTLP_ENDPOINT", False)):
        value = os.environ.get(name, "").strip()
        if value:
            url = check_endpoint(value, f"${name}")
            return OtlpExporter(url if full else traces_url(url))
    return otlp_exporter(DEFAULT_ENDPOINT)


def flush(timeout: float = 30.0) -> bool:
    """Export every span finished so far; False if that did not complete within ``timeout``
    seconds or an export failed meanwhile (``stats()`` counts what was lost)."""
    return _provider.force_flush(int(timeout * 1000)) if _provider is not None else True


def stats() -> ExportStats:
    """Counts of spans accepted, exported, failed and dropped by the configured processor; after
    ``shutdown``, its final counts (what was delivered in the end), until ``configure`` again."""
    return _processor.stats if _processor is not None else _final_stats


def shutdown(timeout: float | None = None) -> None:
    """Flush and stop the configured exporter, waiting for it at most ``timeout`` seconds
    (``configure``'s ``block_timeout`` by default); later spans go to OpenTelemetry's global provider."""
    global _provider, _processor, _final_stats
    provider, processor = _provider, _processor
    try:
        if processor is not None:
            processor.shutdown(timeout)
    finally:  # after a Ctrl-C as well: the setup is gone, with one line on what was lost
        _provider = _processor = None
        fresh = Settings()
        settings.tracer, settings.capture_content, settings.redact = fresh.tracer, False, None
        settings.stats = fresh.stats
        if provider is not None and processor is not None:
            provider.shutdown()  # the processor has stopped already: this returns at once
            _final_stats = counts = processor.stats
            if processor.abandoned:
                log.warning("handoffs: stopped waiting for the exporter: %d span(s) lost in this process "
                            "(%d not exported, %d failed); see handoffs.sdk.stats()",
                            counts.dropped + counts.failed, counts.dropped, counts.failed)
            elif counts.dropped or counts.failed:
                log.warning("handoffs: %d span(s) dropped and %d failed to export in this process",
                            counts.dropped, counts.failed)


def _at_exit() -> None:
    """Export the spans still queued (the run that just crashed is the one to look at), waiting
    at most ``block_timeout`` seconds in all; Ctrl-C gives up at once."""
    processor = _processor
    if processor is None:
        return
    deadline = time.monotonic() + processor.block_timeout
    try:
        # Most exits are done in well under a second: say nothing then.
        processor.force_flush(int(min(1.0, processor.block_timeout / 2) * 1000))
        pending = processor.pending
        if pending:
            to = getattr(processor.exporter, "url", None)
            log.warning("handoffs: exporting %d span(s)%s before exit, waiting at most %.1f s "
                        "(Ctrl-C to give up)", pending, f" to {to}" if to else "",
                        max(0.0, deadline - time.monotonic()))
        shutdown(max(0.0, deadline - time.monotonic()))
    except KeyboardInterrupt:
        shutdown(0)  # if the interrupt came before shutdown began; else there is nothing left to do


atexit.register(_at_exit)
