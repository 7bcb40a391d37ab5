"""Judging a chunk: the cascade graph, built on a thread beside the structural statement, joins
the findings as if built in line; a graph that fails fails the judgement."""

from __future__ import annotations

import threading
from typing import Any

import pyarrow as pa
import pytest

from handoffs import taxonomy as t
from handoffs.demo import simulate
from handoffs.detectors import cascade, pipeline
from handoffs.store import Store


@pytest.fixture
def demo(store: Store) -> tuple[Store, list[str]]:
    """A store of demo runs with error cascades, and its trace ids."""
    simulate(40, seed=5, inject="error-cascade", failure_rate=1.0, store=store)
    return store, [r["t"] for r in store.query("SELECT DISTINCT TraceId AS t FROM otel_traces ORDER BY t")]


def test_judge_takes_the_cascade_graph_from_a_thread(demo: tuple[Store, list[str]],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    store, ids = demo
    built_on: list[str] = []
    table_results = cascade.table_results

    def recorded(nodes: pa.Table) -> Any:
        built_on.append(threading.current_thread().name)
        return table_results(nodes)

    monkeypatch.setattr(cascade, "table_results", recorded)
    judged = {tf.trace_id: tf for tf in pipeline.judge(store, ids, "v")}
    assert built_on and all(name.startswith("handoffs-cascade") for name in built_on)
    # What the graph alone finds on the same spans is what judge reports for error cascades.
    rows, amplification = table_results(cascade.nodes_table(store, ids))
    expected = sorted((r["trace_id"], r["span_id"], r["agent"], r["step"]) for r in rows)
    assert expected and {r["code"] for r in rows} == {t.ERROR_CASCADE}
    got = sorted((f.trace_id, f.span_id, f.agent, f.step) for tf in judged.values()
                 for f in tf.findings if f.code == t.ERROR_CASCADE)
    assert got == expected
    assert amplification and {tid: (tf.own_errors, tf.root_errors) for tid, tf in judged.items()
                              if tid in amplification} == amplification


def test_a_failing_graph_fails_the_judgement(demo: tuple[Store, list[str]],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    store, ids = demo

    def broken(nodes: pa.Table) -> Any:
        raise RuntimeError("graph broke")

    monkeypatch.setattr(cascade, "table_results", broken)
    with pytest.raises(RuntimeError, match="graph broke"):
        pipeline.judge(store, ids, "v")
