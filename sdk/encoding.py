"""OpenTelemetry spans to span-table rows, encoded as the OTel Collector's ClickHouse exporter does.

The span table stores attribute values as strings (``Map(String, String)``). The Collector's
exporter writes ``pcommon.Value.AsString()``: strings as they are (cut to 64 KiB, as
``handoffs.collector`` cuts them), booleans ``true``/``false``,
integers in decimal, doubles as numbers (``1`` not ``1.0``), arrays and maps as compact JSON.
Anything that writes span rows (this SDK's store exporter, the collector, importers) should use
``attribute_str`` so that a value reads the same whichever way it arrived. Doubles follow
``handoffs.collector``'s rule (``float_str``), which agrees with Go's for everyday values.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Iterable, Mapping
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

from handoffs.conventions import SERVICE_NAME
from handoffs.store.spans import SPAN_KINDS, STATUS_CODES, Event, Link, SpanBatch

from .export import truncate

_KIND_NAMES: dict[SpanKind, str] = {kind: SPAN_KINDS[kind.value + 1] for kind in SpanKind}
_STATUS_NAMES: dict[StatusCode, str] = {code: STATUS_CODES[code.value] for code in StatusCode}


def float_str(value: float) -> str:
    """A double as text: the shortest ``%.Ng`` (N = 15..17) that reads back as ``value``.

    The same rule as ``handoffs.collector`` (so a value reads the same whichever way it
    arrived); it matches Go's JSON formatting for the values agents record (``1`` for 1.0,
    ``0.25``), and differs from it only in exponent spelling below 1e-4 and from 1e15 up.
    """
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    for precision in (15, 16):
        text = f"{value:.{precision}g}"
        if float(text) == value:
            return text
    return f"{value:.17g}"


def _json_item(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return float_str(value) if math.isfinite(value) else json.dumps(float_str(value))
    if isinstance(value, bytes):
        return json.dumps(base64.b64encode(value).decode("ascii"))
    if value is None:
        return "null"
    return json.dumps(str(value), ensure_ascii=False)


def attribute_str(value: Any) -> str:
    """One attribute value as the span table stores it (see the module docstring)."""
    if isinstance(value, str):
        return truncate(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return float_str(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{json.dumps(str(k), ensure_ascii=False)}:{_json_item(v)}"
                              for k, v in value.items()) + "}"
    if isinstance(value, Iterable):
        return "[" + ",".join(_json_item(v) for v in value) + "]"
    return str(value)


def attributes_str(attributes: Mapping[str, Any] | None) -> dict[str, str]:
    """A whole attribute map as strings."""
    if not attributes:
        return {}
    return {key: attribute_str(value) for key, value in attributes.items() if value is not None}


def trace_id_hex(trace_id: int) -> str:
    """A trace id as the span table stores it: 32 lowercase hex digits."""
    return format(trace_id, "032x")


def span_id_hex(span_id: int) -> str:
    """A span id as the span table stores it: 16 lowercase hex digits."""
    return format(span_id, "016x")


def append_span(batch: SpanBatch, span: ReadableSpan) -> None:
    """Append one finished OpenTelemetry span to ``batch`` as a span-table row."""
    ctx = span.context
    resource = span.resource.attributes if span.resource is not None else {}
    scope = span.instrumentation_scope
    start = span.start_time or 0
    end = span.end_time or start
    status = span.status
    batch.append(
        trace_id=trace_id_hex(ctx.trace_id),
        span_id=span_id_hex(ctx.span_id),
        parent_span_id=span_id_hex(span.parent.span_id) if span.parent is not None else "",
        trace_state=ctx.trace_state.to_header() if ctx.trace_state else "",
        name=span.name,
        kind=_KIND_NAMES.get(span.kind, "Internal"),
        service_name=attribute_str(resource.get(SERVICE_NAME, "")),
        resource_attributes=attributes_str(resource),
        scope_name=scope.name if scope is not None else "",
        scope_version=(scope.version or "") if scope is not None else "",
        attributes=attributes_str(span.attributes),
        start_ns=start,
        duration_ns=end - start,
        status_code=_STATUS_NAMES.get(status.status_code, "Unset"),
        status_message=status.description or "",
        events=[Event(e.timestamp, e.name, attributes_str(e.attributes)) for e in span.events],
        links=[Link(trace_id_hex(lk.context.trace_id), span_id_hex(lk.context.span_id),
                    lk.context.trace_state.to_header() if lk.context.trace_state else "",
                    attributes_str(lk.attributes)) for lk in span.links],
    )
