"""Fixtures for SDK tests: the SDK configured with an in-memory exporter behind our processor."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from handoffs import sdk


class Captured:
    """Spans the SDK exported, read after a flush."""

    def __init__(self, exporter: InMemorySpanExporter) -> None:
        self.exporter = exporter

    def spans(self) -> list[ReadableSpan]:
        assert sdk.flush(10)
        return list(self.exporter.get_finished_spans())

    def by_name(self) -> dict[str, ReadableSpan]:
        return {s.name: s for s in self.spans()}


@pytest.fixture
def captured() -> Iterator[Captured]:
    exporter = InMemorySpanExporter()
    sdk.configure("test-team", exporter=exporter, schedule_delay=0.05)
    yield Captured(exporter)
    sdk.shutdown()


@pytest.fixture
def capture_with_content() -> Iterator[Captured]:
    exporter = InMemorySpanExporter()
    sdk.configure("test-team", exporter=exporter, capture_content=True, schedule_delay=0.05,
                  redact=lambda text: text.replace("hunter2", "[redacted]"))
    yield Captured(exporter)
    sdk.shutdown()
