"""Span rows before they are inserted."""

from __future__ import annotations

import pyarrow as pa

from handoffs.store.spans import last_row_per_span


def test_last_row_per_span_keeps_the_last_of_each_trace_and_span_id() -> None:
    table = pa.table({"TraceId": ["t1", "t1", "t2", "t1", "t2"], "SpanId": ["a", "b", "a", "a", "c"],
                      "SpanName": ["first", "b", "other trace", "second", "c"]})
    kept = last_row_per_span(table).to_pydict()
    assert kept == {"TraceId": ["t1", "t2", "t1", "t2"], "SpanId": ["b", "a", "a", "c"],
                    "SpanName": ["b", "other trace", "second", "c"]}
    same_span_id_in_two_traces = table.slice(0, 3)
    assert last_row_per_span(same_span_id_in_two_traces).equals(same_span_id_in_two_traces)
    unique = table.slice(1, 2)
    assert last_row_per_span(unique) is unique  # the usual case: no copy
