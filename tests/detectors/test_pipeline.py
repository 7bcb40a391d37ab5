"""Judging a chunk: the cascade graph, built on a thread beside the structural statement, joins
the findings as if built in line; a graph that fails fails the judgement."""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any

import pyarrow as pa
import pytest

from handoffs import taxonomy as t
from handoffs.cli import main
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


def _scratch_tables(store: Store) -> set[str]:
    return {r["name"] for r in store.query("SELECT name FROM system.tables WHERE database = currentDatabase() "
                                           "AND name LIKE 'handoffs_scratch_%'")}


def test_detection_drops_the_scratch_tables_a_killed_pass_left(demo: tuple[Store, list[str]]) -> None:
    store, _ = demo
    # A pass killed a day ago left its tables (a MergeTree one with data); one made now is live.
    dead = f"handoffs_scratch_{int(time.time()) - 25 * 3600}_{'a' * 12}_pairs"
    live = f"handoffs_scratch_{int(time.time()) - 60}_{'b' * 12}_s"
    store.command(f"CREATE TABLE {dead} ENGINE = MergeTree ORDER BY x AS SELECT 1 AS x")
    store.command(f"CREATE TABLE {live} (x UInt8) ENGINE = Memory")
    pipeline.detect_pending(store)
    assert _scratch_tables(store) == {live}
    store.command(f"DROP TABLE {live}")


def test_a_pass_stopped_by_sigterm_drops_its_scratch_tables(demo: tuple[Store, list[str]], chdb_dir,
                                                            monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    # SIGTERM (a cancelled CI job, `timeout`) killed the process where it stood: every scratch
    # table of the chunk being judged stayed in the store for good.
    store, _ = demo
    held: list[set[str]] = []
    nodes_table = cascade.nodes_table

    def terminated_midway(*args: Any, **kwargs: Any) -> Any:
        held.append(_scratch_tables(store))
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler runs here
        return nodes_table(*args, **kwargs)

    monkeypatch.setattr(cascade, "nodes_table", terminated_midway)
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(SystemExit) as exit_:
        main(["detect", "--full", "--store", f"chdb://{chdb_dir}?database={store.url.database}"])
    assert exit_.value.code == 128 + signal.SIGTERM
    assert held and held[0]  # the pass was inside a chunk's scratch
    assert _scratch_tables(store) == set()
    assert capsys.readouterr().err.strip().endswith("terminated")
    assert signal.getsignal(signal.SIGTERM) is before  # main() puts back the handler it found
