"""The writer's fast path: rows handed over in memory by the request thread, or read back from
the spool when they were not (cache full, replay); a client's retry in the same batch stored once;
a flood held until the writer has room, and when a batch that is not full goes."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from collector_helpers import post, request, span_counts

from handoffs.collector import Collector, otlp, server
from handoffs.store import Store

ROWS_SQL = """SELECT TraceId, SpanId, SpanName, Timestamp, Duration, SpanAttributes, ResourceAttributes
FROM otel_traces ORDER BY TraceId, SpanId"""


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


def test_a_batch_waits_to_fill_while_requests_flow_and_goes_when_they_pause(store: Store, tmp_path: Path) -> None:
    c = Collector(store, port=0, spool_dir=tmp_path / "spool", flush_interval=1.0)  # not started
    c._last_arrival = 100.0
    assert c._due(waited=0.1, now=100.1) == pytest.approx(0.3)  # too young: a trickle stays batched
    assert c._due(waited=0.5, now=100.5) == 0.0  # requests paused for 0.5 s: insert now
    assert c._due(waited=0.5, now=100.05) == pytest.approx(0.05)  # still flowing: wait for a pause
    assert c._due(waited=0.98, now=100.0) == pytest.approx(0.02)  # ... but never past the interval
    assert c._due(waited=1.0, now=100.0) == 0.0


@pytest.mark.parametrize("held", [True, False])
def test_a_flood_is_held_until_the_writer_takes_rows(store: Store, tmp_path: Path, monkeypatch, held: bool) -> None:
    """Requests arriving faster than the store takes them wait for room in memory, so the writer
    never reads the spool back; without the hold (``ROOM_WAIT`` 0) it does. Nothing is lost."""
    if not held:
        monkeypatch.setattr(server, "ROOM_WAIT", 0.0)
    insert = store.insert_spans

    def slow_insert(*args: object, **kwargs: object) -> int:
        time.sleep(0.1)
        return insert(*args, **kwargs)

    monkeypatch.setattr(store, "insert_spans", slow_insert)
    bodies = [request(23, i * 25, 25).SerializeToString() for i in range(24)]
    room = 2 * otlp.decode_protobuf(bodies[0]).table.get_total_buffer_size()  # about two requests wait in memory
    c = Collector(store, port=0, spool_dir=tmp_path / "spool", flush_interval=0.05, batch_rows=25,
                  cache_bytes=room).start()
    with ThreadPoolExecutor(4) as clients:
        assert {reply.status for reply in clients.map(lambda body: post(c.port, body), bodies)} == {200}
    assert c.stop() is True
    assert span_counts(store) == (600, 600)
    again = c.counters.snapshot()["decoded_again"]
    assert (again == 0) if held else (again > 0)
