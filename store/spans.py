"""Span rows in the span table's shape, built column by column into an Arrow table.

``SpanBatch`` is the one way spans become rows: the collector, the SDK's store exporter and the
importers all append to it, and the store inserts its Arrow table in one statement.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

_MAP = pa.map_(pa.string(), pa.string())
_TS = pa.timestamp("ns")

SPAN_ARROW_SCHEMA = pa.schema([
    ("Timestamp", _TS),
    ("TraceId", pa.string()),
    ("SpanId", pa.string()),
    ("ParentSpanId", pa.string()),
    ("TraceState", pa.string()),
    ("SpanName", pa.string()),
    ("SpanKind", pa.string()),
    ("ServiceName", pa.string()),
    ("ResourceAttributes", _MAP),
    ("ScopeName", pa.string()),
    ("ScopeVersion", pa.string()),
    ("SpanAttributes", _MAP),
    ("Duration", pa.uint64()),
    ("StatusCode", pa.string()),
    ("StatusMessage", pa.string()),
    ("Events.Timestamp", pa.list_(_TS)),
    ("Events.Name", pa.list_(pa.string())),
    ("Events.Attributes", pa.list_(_MAP)),
    ("Links.TraceId", pa.list_(pa.string())),
    ("Links.SpanId", pa.list_(pa.string())),
    ("Links.TraceState", pa.list_(pa.string())),
    ("Links.Attributes", pa.list_(_MAP)),
])

# OTLP's enum names, as the OpenTelemetry Collector's exporter writes them.
SPAN_KINDS = ("Unspecified", "Internal", "Server", "Client", "Producer", "Consumer")
STATUS_CODES = ("Unset", "Ok", "Error")
# Some versions of that exporter write the protobuf enum's own name; readers accept both.
ERROR_STATUS_CODES = frozenset({"Error", "STATUS_CODE_ERROR"})
# The same test as a SQL condition on the span table (a constant, never user input).
SPAN_FAILED_SQL = "CAST(StatusCode, 'String') IN ('Error', 'STATUS_CODE_ERROR')"


@dataclass
class Event:
    timestamp_ns: int
    name: str
    attributes: Mapping[str, str] = field(default_factory=dict)


@dataclass
class Link:
    trace_id: str
    span_id: str
    trace_state: str = ""
    attributes: Mapping[str, str] = field(default_factory=dict)


class SpanBatch:
    """Columns of span rows under construction. Attribute values must already be strings."""

    def __init__(self) -> None:
        self.columns: dict[str, list] = {name: [] for name in SPAN_ARROW_SCHEMA.names}

    def __len__(self) -> int:
        return len(self.columns["SpanId"])

    def append(
        self,
        *,
        trace_id: str,
        span_id: str,
        name: str,
        start_ns: int,
        duration_ns: int,
        parent_span_id: str = "",
        kind: str = "Internal",
        service_name: str = "",
        resource_attributes: Mapping[str, str] | None = None,
        attributes: Mapping[str, str] | None = None,
        status_code: str = "Unset",
        status_message: str = "",
        scope_name: str = "",
        scope_version: str = "",
        trace_state: str = "",
        events: Iterable[Event] = (),
        links: Iterable[Link] = (),
    ) -> None:
        c = self.columns
        c["Timestamp"].append(start_ns)
        c["TraceId"].append(trace_id)
        c["SpanId"].append(span_id)
        c["ParentSpanId"].append(parent_span_id)
        c["TraceState"].append(trace_state)
        c["SpanName"].append(name)
        c["SpanKind"].append(kind)
        c["ServiceName"].append(service_name)
        c["ResourceAttributes"].append(list((resource_attributes or {}).items()))
        c["ScopeName"].append(scope_name)
        c["ScopeVersion"].append(scope_version)
        c["SpanAttributes"].append(list((attributes or {}).items()))
        c["Duration"].append(max(0, duration_ns))
        c["StatusCode"].append(status_code)
        c["StatusMessage"].append(status_message)
        events = list(events)
        c["Events.Timestamp"].append([e.timestamp_ns for e in events])
        c["Events.Name"].append([e.name for e in events])
        c["Events.Attributes"].append([list(e.attributes.items()) for e in events])
        links = list(links)
        c["Links.TraceId"].append([lk.trace_id for lk in links])
        c["Links.SpanId"].append([lk.span_id for lk in links])
        c["Links.TraceState"].append([lk.trace_state for lk in links])
        c["Links.Attributes"].append([list(lk.attributes.items()) for lk in links])

    def to_arrow(self) -> pa.Table:
        return pa.table(self.columns, schema=SPAN_ARROW_SCHEMA)

    def clear(self) -> None:
        for column in self.columns.values():
            column.clear()


def last_row_per_span(table: pa.Table) -> pa.Table:
    """Keep the last row of each (TraceId, SpanId), as ReplacingMergeTree keeps the last one
    inserted: a client's retry of an acknowledged request lands in the same batch. A table
    without repeated span ids (the usual case, checked in one pass) is returned as it is."""
    if pc.count_distinct(table.column("SpanId")).as_py() == table.num_rows:
        return table
    positions = table.select(["TraceId", "SpanId"]).append_column(
        "_row", pa.array(range(table.num_rows), pa.int64()))
    last = positions.group_by(["TraceId", "SpanId"], use_threads=False).aggregate([("_row", "max")])
    rows = last.column("_row_max")
    return table.take(pc.take(rows, pc.sort_indices(rows)))


def expired(table: pa.Table, ttl_days: int) -> pa.ChunkedArray:
    """Which rows of ``table`` (span rows) started more than ``ttl_days`` days ago: the ones a
    span table with that retention deletes as soon as they are stored."""
    start_ns = time.time_ns() - ttl_days * 86_400 * 10**9
    return pc.less(table.column("Timestamp"), pa.scalar(start_ns, _TS))
