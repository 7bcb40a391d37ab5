"""The writer's fast path: rows handed over in memory by the request thread, or read back from
the spool when they were not (cache full, replay); repeated span ids collapsed before the
insert, since the collector inserts with the engine's own in-block collapse turned off."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
from collector_helpers import post, request, span_counts

from handoffs.collector import Collector
from handoffs.collector.server import last_row_per_span
from handoffs.store import Store

ROWS_SQL = """SELECT TraceId, SpanId, SpanName, Timestamp, Duration, SpanAttributes, ResourceAttributes
FROM otel_traces ORDER BY TraceId, SpanId"""


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


def test_rows_from_memory_and_from_the_spool_are_the_same(store: Store, tmp_path: Path) -> None:
    # cache_bytes=0: nothing is handed over, the writer decodes every spooled request again.
    for name, cache in (("memory", 128 << 20), ("spool", 0)):
        c = Collector(store, port=0, spool_dir=tmp_path / name, flush_interval=3600, batch_rows=10**6,
                      cache_bytes=cache).start()
        for i in range(4):
            body = request(20, i * 25, 25, project=f"p-{name}").SerializeToString()
            assert post(c.port, body).status == 200
        assert c.stop() is True
    rows = store.query(ROWS_SQL)
    assert len(rows) == 200
    by_source: dict[str, list[dict]] = {"p-memory": [], "p-spool": []}
    for row in rows:
        resource = dict(row["ResourceAttributes"])
        by_source[resource.pop("handoffs.project")].append({**row, "ResourceAttributes": resource})
    assert by_source["p-memory"] == by_source["p-spool"] and len(by_source["p-memory"]) == 100


def test_a_request_sent_twice_into_one_batch_is_stored_once(store: Store, tmp_path: Path) -> None:
    c = Collector(store, port=0, spool_dir=tmp_path / "spool", flush_interval=3600, batch_rows=10**6).start()
    body = request(21, 0, 30).SerializeToString()
    for _ in range(2):  # a client retrying a request whose reply it lost
        assert post(c.port, body).status == 200
    assert post(c.port, request(21, 30, 10).SerializeToString()).status == 200
    assert c.stop() is True
    assert span_counts(store) == (40, 40)


def test_a_backlog_bigger_than_one_insert_is_stored_whole(store: Store, tmp_path: Path) -> None:
    # 12 requests of 25 spans, at most 60 spans per INSERT: several batches, each committed.
    c = Collector(store, port=0, spool_dir=tmp_path / "spool", flush_interval=3600, batch_rows=50,
                  max_batch_rows=60, cache_bytes=3000).start()  # the cache holds some requests only
    for i in range(12):
        assert post(c.port, request(22, i * 25, 25).SerializeToString()).status == 200
    assert c.stop() is True
    assert span_counts(store) == (300, 300)
    assert c.counters.snapshot()["stored"] == 300
