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


def _found(judged: list) -> dict[str, list[tuple]]:
    return {tf.trace_id: sorted((f.code, f.span_id, f.agent, f.step, f.confidence, f.evidence) for f in tf.findings)
            for tf in judged}


def test_a_trace_judged_alone_gets_what_it_gets_among_others(store: Store, traced) -> None:
    # Alone, a trace meets few detectors' conditions (Detector.present) and the rest are not
    # asked; among every structural mode, with a healthy team's noise around, all are asked.
    from handoffs.detectors import scenarios, structural
    from handoffs.detectors.normalise import TRACE_FILTER, Scratch

    with traced():
        scenarios.simulate(40, seed=37)  # a seed whose runs inject every mode of the suite
    simulate(15, seed=4, failure_rate=1.0, store=store)
    ids = [r["t"] for r in store.query("SELECT DISTINCT TraceId AS t FROM otel_traces ORDER BY t")]
    with Scratch(store, TRACE_FILTER, {"traces": ids}) as scratch:
        assert structural.possible(store, scratch) == structural.SQL_DETECTORS
    together = _found(pipeline.judge(store, ids))
    codes = {f[0] for found in together.values() for f in found}
    # Every structural mode but a conversation reset, which neither suite plays.
    assert codes >= {d.code for d in structural.SQL_DETECTORS} - {"FM-2.1"}
    alone = {tid: found for tid in ids for tid, found in _found(pipeline.judge(store, [tid])).items()}
    assert alone == together


def test_a_chunk_is_not_asked_what_it_cannot_show(store: Store, traced) -> None:
    from handoffs import sdk
    from handoffs.detectors import structural
    from handoffs.detectors.normalise import TRACE_FILTER, Scratch

    with traced(), sdk.run("clean", run_id="clean") as run:
        with sdk.agent("supervisor", role="supervisor") as sup:
            with sup.delegate("worker", task="write it") as d:
                d.decision("accepted", output=d.output("done"))
        run.terminate("done", success_claimed=True, agent="supervisor")
    with Scratch(store, TRACE_FILTER, {"traces": [run.trace_id]}) as scratch:
        asked = {d.code for d in structural.possible(store, scratch)}
    # No failure, check, checkpoint, side effect or high-stakes call: nothing for these to find.
    assert asked.isdisjoint({"missing-compensation", "restart-instead-of-resume", "conformity", "FM-1.1",
                             "FM-3.3", "duplicate-side-effect", "unapproved-high-stakes-action", "FM-2.1"})
    assert {"FM-3.1", "FM-3.2", "FM-2.6"} <= asked


def test_a_chunk_reads_its_traces_spans_before_final_merges_them(store: Store) -> None:
    # Under FINAL the engine keeps a WHERE on the trace id as it is, reading every column of
    # each granule the key cannot rule out; the shape's reads filter first (PREWHERE).
    from handoffs.demo import simulate
    from handoffs.detectors.normalise import SPANS, TRACE_FILTER

    [run] = simulate(1, seed=3, store=store)
    assert TRACE_FILTER in SPANS
    plan = "\n".join(str(next(iter(r.values()))) for r in store.query(
        f"EXPLAIN actions = 1 WITH {SPANS} SELECT * FROM s", {"traces": [run.trace_id]}))
    assert "Prewhere filter" in plan and "TraceId" in plan.split("Prewhere filter", 1)[1]


def _stored(store: Store, table: str) -> tuple[int, int, int]:
    """(active parts, rows they hold, rows FINAL keeps) of ``table``."""
    parts = store.query("SELECT count() AS n, sum(rows) AS rows FROM system.parts WHERE active "
                        "AND database = currentDatabase() AND table = {t:String}", {"t": table})[0]
    return int(parts["n"]), int(parts["rows"] or 0), int(store.scalar(f"SELECT count() FROM {table} FINAL"))


def test_a_pass_judging_every_trace_again_leaves_one_version_of_each_row(
        demo: tuple[Store, list[str]], chdb_dir, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every finding and mark written again, and the metrics of many runs deleted and written
    again, would stay as they are until the engine's merges, which every FINAL read (the
    dashboard's pages) merges meanwhile; the pass merges them."""
    from handoffs.detectors import metrics
    from handoffs.store import schema

    store, _ = demo
    monkeypatch.setattr(metrics, "_FEW_RUNS", 0)  # these 40 runs written as a large store's are
    for _ in range(2):
        try:
            main(["detect", "--full", "--format", "jsonl", "--store", f"chdb://{chdb_dir}?database={store.url.database}"])
        except SystemExit as exc:
            assert not exc.code
    for table in (schema.FINDINGS_TABLE, schema.DETECTED_TABLE, schema.METRICS_TABLE):
        parts, rows, kept = _stored(store, table)
        assert kept > 0 and (parts, rows) == (1, kept), table
