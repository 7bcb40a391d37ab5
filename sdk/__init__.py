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
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator

from handoffs import __version__
from handoffs import conventions as c
from handoffs.errors import UsageError

from .export import (
    DEFAULT_ENDPOINT,
    BoundedBatchProcessor,
    ExportStats,
    StoreSpanExporter,
    otlp_exporter,
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
    "Agent", "BoundedBatchProcessor", "Compensation", "Delegation", "ExportStats", "Llm", "Output",
    "Run", "StoreSpanExporter", "ThreadPoolExecutor", "Tool", "Verification", "agent", "approval",
    "checkpoint", "configure", "content_hash", "current_agent", "current_run", "current_run_id", "flush",
    "otlp_exporter", "propagate", "resume", "run", "shutdown", "stats", "traced_agent", "traced_tool",
]

if TYPE_CHECKING:
    from handoffs.store import Store

log = logging.getLogger("handoffs.sdk")

_provider: TracerProvider | None = None
_processor: BoundedBatchProcessor | None = None
_final_stats = ExportStats()  # the last processor's counts once ``shutdown`` stopped it


def configure(service_name: str = "handoffs", *, endpoint: str | None = None,
              store: Store | str | None = None, exporter: SpanExporter | None = None,
              capture_content: bool = False, redact: Callable[[str], str] | None = None,
              project: str | None = None, resource_attributes: Mapping[str, Any] | None = None,
              max_queue_size: int = 8192, max_batch_size: int = 1024, schedule_delay: float = 0.5,
              block_timeout: float = 10.0, id_generator: IdGenerator | None = None,
              set_global: bool = False) -> TracerProvider:
    """Send this process's spans somewhere: an OTLP/HTTP ``endpoint``, a ``store``, or an ``exporter``.

    With none of the three, spans go over OTLP to ``http://127.0.0.1:4318`` (``handoffs collect``).
    Calling it again flushes and replaces the previous configuration. Spans still queued when
    the process exits are exported first.
    """
    global _provider, _processor, _final_stats
    if sum(x is not None for x in (endpoint, store, exporter)) > 1:
        raise UsageError("configure takes one of endpoint=, store= or exporter=, not several")
    if redact is not None and not callable(redact):
        raise UsageError("redact must be a function taking and returning a string")
    shutdown()
    _final_stats = ExportStats()
    if exporter is None:
        exporter = StoreSpanExporter(store) if store is not None else otlp_exporter(endpoint or DEFAULT_ENDPOINT)
    attrs: dict[str, Any] = dict(resource_attributes or {})
    attrs[c.SERVICE_NAME] = service_name
    if project:
        attrs[c.RESOURCE_PROJECT] = project
    provider = TracerProvider(resource=Resource.create(attrs), id_generator=id_generator,
                              shutdown_on_exit=False)
    processor = BoundedBatchProcessor(exporter, max_queue_size=max_queue_size, max_batch_size=max_batch_size,
                                      schedule_delay=schedule_delay, block_timeout=block_timeout)
    provider.add_span_processor(processor)
    if set_global:
        trace.set_tracer_provider(provider)
    _provider, _processor = provider, processor
    # Exit hooks run last-registered first: registering again puts our flush ahead of the
    # store's own hook (registered when the exporter opened it), which closes the store.
    atexit.unregister(shutdown)
    atexit.register(shutdown)
    settings.tracer = provider.get_tracer(SCOPE_NAME, __version__)
    settings.capture_content = capture_content
    settings.redact = redact
    return provider


def flush(timeout: float = 30.0) -> bool:
    """Export every span finished so far; False if that did not complete within ``timeout`` seconds."""
    return _provider.force_flush(int(timeout * 1000)) if _provider is not None else True


def stats() -> ExportStats:
    """Counts of spans accepted, exported, failed and dropped by the configured processor; after
    ``shutdown``, its final counts (what was delivered in the end), until ``configure`` again."""
    return _processor.stats if _processor is not None else _final_stats


def shutdown() -> None:
    """Flush and stop the configured exporter; later spans go to OpenTelemetry's global provider."""
    global _provider, _processor, _final_stats
    provider, processor = _provider, _processor
    _provider = _processor = None
    fresh = Settings()
    settings.tracer, settings.capture_content, settings.redact = fresh.tracer, False, None
    if provider is None:
        return
    provider.shutdown()
    if processor is not None:
        _final_stats = processor.stats
    if processor is not None and (processor.stats.dropped or processor.stats.failed):
        log.warning("handoffs: %d span(s) dropped and %d failed to export in this process",
                    processor.stats.dropped, processor.stats.failed)


# Spans buffered at exit are exported, not lost: the run that just crashed is the one to look at.
atexit.register(shutdown)
