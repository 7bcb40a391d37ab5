"""The cascade graph in a worker process: the same findings as in this one, and none lost if it dies."""

from __future__ import annotations

import logging
from typing import Any

import pyarrow as pa
import pytest

from handoffs import taxonomy as t
from handoffs.demo import simulate
from handoffs.detectors import cascade, pipeline
from handoffs.detectors.graph_worker import GraphWorker
from handoffs.store import Store


def _key(row: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(row[k] for k in ("trace_id", "span_id", "code", "agent", "step", "evidence"))


@pytest.fixture
def demo(store: Store) -> tuple[Store, list[str], pa.Table]:
    """A store of demo runs with error cascades, its trace ids and its cascade spans."""
    simulate(40, seed=5, inject="error-cascade", failure_rate=1.0, store=store)
    ids = [r["t"] for r in store.query("SELECT DISTINCT TraceId AS t FROM otel_traces ORDER BY t")]
    return store, ids, cascade.nodes_table(store, ids)


def test_worker_builds_the_graphs_this_process_would(demo: tuple[Store, list[str], pa.Table]) -> None:
    _, _, nodes = demo
    expected = sorted(map(_key, cascade.table_results(nodes)[0]))
    assert expected and {k[2] for k in expected} == {t.ERROR_CASCADE}
    with GraphWorker() as worker:
        for part in (nodes, nodes.slice(0, nodes.num_rows // 2), nodes):  # one child, many chunks
            worker.submit(part)
            rows, amplification = worker.result()
            expected_rows, expected_amplification = cascade.table_results(part)
            assert sorted(map(_key, rows)) == sorted(map(_key, expected_rows))
            assert amplification == expected_amplification and amplification


def test_a_dead_worker_loses_no_finding(demo: tuple[Store, list[str], pa.Table],
                                        caplog: pytest.LogCaptureFixture) -> None:
    _, _, nodes = demo
    expected = sorted(map(_key, cascade.table_results(nodes)[0]))
    with GraphWorker() as worker:
        worker.submit(nodes)
        worker._child.kill()  # type: ignore[union-attr]  # dies with a table in hand
        with caplog.at_level(logging.WARNING, "handoffs.detectors"):
            assert sorted(map(_key, worker.result()[0])) == expected
        assert "worker process stopped" in caplog.text
        worker.submit(nodes)  # from then on the graphs are built here
        assert sorted(map(_key, worker.result()[0])) == expected


def test_judge_with_a_worker_finds_what_judge_alone_finds(demo: tuple[Store, list[str], pa.Table],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    store, ids, _ = demo
    alone = {tf.trace_id: (sorted(f.key for f in tf.findings), tf.own_errors, tf.root_errors)
             for tf in pipeline.judge(store, ids, "v")}
    monkeypatch.setattr(pipeline, "OFFLOAD_SPANS", 1)
    with GraphWorker() as worker:
        beside = {tf.trace_id: (sorted(f.key for f in tf.findings), tf.own_errors, tf.root_errors)
                  for tf in pipeline.judge(store, ids, "v", worker=worker)}
    assert beside == alone
    assert any(t.ERROR_CASCADE in key for keys, _, _ in alone.values() for key in keys)
    assert any(roots for _, _, roots in alone.values())
