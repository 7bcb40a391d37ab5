"""The seed metrics on SDK traces whose answers are known by construction."""

from __future__ import annotations

from handoffs import conventions as c
from handoffs import sdk
from handoffs import taxonomy as t
from handoffs.detectors.metrics import compute_metrics, load
from handoffs.store import Store, schema


def _team(overwrite: bool, rewrite_fails: bool) -> str:
    """Two delegations: the first overwritten early (or accepted), the second accepted."""
    with sdk.run("metrics", topology="centralized") as run:
        with sdk.agent("sup", role="supervisor", model="gpt-4o") as sup:
            with sup.llm(input_tokens=100, output_tokens=100):
                pass
            with sup.delegate("coder", task="f") as d:
                with sdk.agent("coder", role="worker") as w:
                    with w.llm(input_tokens=200, output_tokens=200):
                        pass
                    out = d.output("def f(", tokens=47, unit_complete=False)
                if overwrite:
                    d.decision("overwrote", output=out, result="def f(): pass")
                    with sup.verify("tests", target=d) as v:
                        v.verdict("fail" if rewrite_fails else "pass")
                else:
                    d.decision("accepted", output=out)
            with sup.delegate("tester", task="t") as d2:
                with sdk.agent("tester", role="worker") as w2:
                    with w2.llm(input_tokens=100, output_tokens=100):
                        pass
                    out2 = d2.output("tests", tokens=30, unit_complete=True)
                with sup.verify("lint", target=out2) as v2:
                    v2.verdict("pass")
                d2.decision("accepted", output=out2)
        run.terminate("done", success_claimed=True, agent="sup")
    return run.run_id


def _by(rows: list[dict], run: str, scope: str, subject: str, metric: str) -> dict:
    [row] = [r for r in rows if (r["run_id"], r["scope"], r["subject"], r["metric"]) == (run, scope, subject, metric)]
    return row


def _modified(units_recorded: bool) -> str:
    """A supervisor modifying an output that completed no unit; another output of the run
    completes one when ``units_recorded``."""
    with sdk.run("metrics-modified") as run:
        with sdk.agent("sup", role="supervisor") as sup:
            with sup.delegate("coder", task="f") as d:
                out = d.output("def f(", tokens=10)
                d.decision("modified", output=out, reason="typo", result="def f():")
            with sup.delegate("tester", task="t") as d2:
                d2.decision("accepted", output=d2.output("tests", tokens=5, unit_complete=units_recorded))
        run.terminate("done", success_claimed=True, agent="sup")
    return run.run_id


def test_a_modification_counts_as_an_overwrite_only_where_the_trace_records_units(store: Store, traced) -> None:
    """unit_complete defaults to false: with no output completing a unit the run says nothing
    about units, and the detector (overwrite) does not flag the modification; the metric agrees."""
    with traced():
        silent, recorded = _modified(units_recorded=False), _modified(units_recorded=True)
    compute_metrics(store)
    rows = load(store)
    assert _by(rows, silent, "run", silent, t.OVERWRITE_RATE)["value"] == 0.0
    assert _by(rows, recorded, "run", recorded, t.OVERWRITE_RATE)["value"] == 0.5


def test_seed_metrics(store: Store, traced) -> None:
    with traced():
        a = _team(overwrite=True, rewrite_fails=True)
        b = _team(overwrite=False, rewrite_fails=False)
    stored = compute_metrics(store)
    rows = load(store)
    assert _by(rows, a, "run", a, t.OVERWRITE_RATE)["value"] == 0.5
    assert _by(rows, b, "run", b, t.OVERWRITE_RATE)["value"] == 0.0
    assert _by(rows, a, "pair", "sup->coder", t.OVERWRITE_RATE)["value"] == 1.0
    assert _by(rows, a, "agent", "sup", t.OVERWRITE_RATE)["value"] == 0.5
    assert _by(rows, a, "run", a, t.TOKENS_BEFORE_INTERRUPTION)["value"] == 47
    assert _by(rows, a, "run", a, t.AUTONOMOUS_COMPLETION_RATE)["value"] == 0.5
    assert _by(rows, b, "run", b, t.AUTONOMOUS_COMPLETION_RATE)["value"] == 1.0
    assert _by(rows, a, "run", a, t.REWRITE_BUG_RATE)["value"] == 1.0
    assert _by(rows, a, "run", a, t.ORIGINAL_BUG_RATE)["value"] == 0.0
    # coordinating agent (sup) 200 tokens against 600 tokens of work
    assert abs(_by(rows, a, "run", a, t.COORDINATION_OVERHEAD)["value"] - 200 / 600) < 1e-9
    assert _by(rows, a, "run", a, t.failure_rate_metric(t.OVERWRITE))["value"] == 1
    assert _by(rows, b, "run", b, t.failure_rate_metric(t.OVERWRITE))["value"] == 0
    assert stored == len(rows) == store.scalar("SELECT count() FROM handoffs_metrics FINAL")
    assert compute_metrics(store) == stored  # computed again: replaced, not added
    assert store.scalar("SELECT count() FROM handoffs_metrics FINAL") == stored


def test_error_amplification(store: Store, traced) -> None:
    """A worker's error consumed by the next worker, who fails too: 2 own errors, 1 root."""
    with traced():
        with sdk.run("cascade") as run:
            with sdk.agent("sup") as sup:
                with sup.delegate("a", task="x") as d1:
                    with sdk.agent("a") as a:
                        with a.tool("compute", {"x": 1}) as bad:
                            bad.error("wrong unit")
                        out = d1.output("42 km", tokens=5, unit_complete=True)
                    d1.decision("accepted", output=out)
                with sup.delegate("b", task="y", consumes=[out]) as d2:
                    with sdk.agent("b") as b:
                        with b.tool("convert", {"v": 42}) as worse:
                            worse.error("nonsense input")
                        d2.output("?", tokens=1, unit_complete=True)
            run.terminate("done", success_claimed=True, agent="sup")
    compute_metrics(store)
    rows = load(store, [run.run_id])
    amp = _by(rows, run.run_id, "run", run.run_id, t.ERROR_AMPLIFICATION)
    assert (amp["numerator"], amp["denominator"]) == (2, 1)
    casc = _by(rows, run.run_id, "run", run.run_id, t.failure_rate_metric(t.ERROR_CASCADE))
    assert casc["value"] == 1



def _untokened_team(run_id: str | None = None) -> str:
    """One delegation, three tool calls and a check, with no token counts anywhere."""
    with sdk.run("no-tokens", run_id=run_id) as run:
        with sdk.agent("sup", role="supervisor") as sup:
            with sup.delegate("w", task="t") as d:
                with sdk.agent("w") as w:
                    for i in range(3):
                        with w.tool("search", {"q": i}):
                            pass
                    out = d.output("found", unit_complete=True)
                d.decision("accepted", output=out)
            with sup.verify("lint", target=out) as v:
                v.verdict("pass")
        run.terminate("done", success_claimed=True, agent="sup")
    return run.run_id


def test_coordination_overhead_without_tokens_counts_spans(store: Store, traced) -> None:
    """No token counts anywhere in the run: delegation and verification spans / tool and LLM spans."""
    with traced():
        run = _untokened_team()
    compute_metrics(store, [run])
    over = _by(load(store, [run]), run, "run", run, t.COORDINATION_OVERHEAD)
    assert (over["numerator"], over["denominator"]) == (2, 3)


def _sums(rows: list[dict]) -> list[tuple]:
    return sorted((r["run_id"], r["scope"], r["subject"], r["metric"], r["numerator"], r["denominator"])
                  for r in rows)


def test_a_run_over_many_traces_and_chunks(store: Store, traced, monkeypatch) -> None:
    """A run whose traces are judged in different chunks sums to what one chunk gives; its
    coordination overhead counts tokens, since one of its traces has them."""
    from handoffs.detectors import pipeline

    with traced():
        runs = [_team(overwrite=i % 2 == 0, rewrite_fails=i % 3 == 0) for i in range(3)]
        shared = _untokened_team(run_id="shared-run")
        with sdk.run("tokens", run_id=shared) as run:  # a second trace of the same run
            with sdk.agent("sup", role="supervisor") as sup:
                with sup.llm(input_tokens=30, output_tokens=10):
                    pass
                with sup.delegate("w", task="u") as d:
                    with sdk.agent("w") as w:
                        with w.llm(input_tokens=60, output_tokens=20):
                            pass
                        d.output("done", tokens=20, unit_complete=True)
            run.terminate("done", success_claimed=True, agent="sup")
    compute_metrics(store)
    whole = _sums(load(store))
    over = _by(load(store, [shared]), shared, "run", shared, t.COORDINATION_OVERHEAD)
    assert (over["numerator"], over["denominator"]) == (40, 80)
    monkeypatch.setattr(pipeline, "RANGE_TRACES", 1)
    assert compute_metrics(store) == len(whole)
    assert _sums(load(store)) == whole
    assert {r["run_id"] for r in load(store, runs[:2])} == set(runs[:2])


def test_metrics_through_every_engine(any_store: Store) -> None:
    """The scratch tables, totals and replacement of old rows work over HTTP as embedded."""
    from handoffs.demo import simulate

    runs = simulate(6, seed=7, inject="overwrite,error-cascade", failure_rate=1.0, store=any_store)
    stored = compute_metrics(any_store)
    rows = load(any_store)
    assert stored == len(rows) > 0
    assert {r["run_id"] for r in rows} == {r.run_id for r in runs}
    assert {r["metric"] for r in rows} >= {t.OVERWRITE_RATE, t.ERROR_AMPLIFICATION,
                                          t.failure_rate_metric(t.OVERWRITE)}
    assert compute_metrics(any_store, [runs[0].run_id]) == len(load(any_store, [runs[0].run_id]))
    assert len(load(any_store)) == stored  # one run again: its rows replaced, the others kept
    assert not any_store.query("SHOW TABLES LIKE 'handoffs_scratch_%'")  # dropped once done


def test_computing_again_replaces_rows_and_deletes_only_stale_ones(store: Store, traced,
                                                                   monkeypatch) -> None:
    """A run computed again keeps one row per metric; a row its totals no longer have (a pair
    gone since) is deleted; and with nothing gone, no DELETE runs: on a large table a DELETE
    costs seconds for one run. Many runs at once delete without looking (cheaper then)."""
    import pyarrow as pa

    from handoffs.store import schema

    with traced():
        a = _team(overwrite=True, rewrite_fails=True)
    stored = compute_metrics(store)
    before = sorted((r["scope"], r["subject"], r["metric"], r["value"]) for r in load(store))
    statements: list[str] = []
    command = Store.command

    def spy(self: Store, sql: str, params: dict | None = None) -> None:
        statements.append(sql)
        command(self, sql, params)

    monkeypatch.setattr(Store, "command", spy)
    assert compute_metrics(store, [a]) == stored
    assert not [s for s in statements if s.lstrip().startswith("DELETE")]
    assert sorted((r["scope"], r["subject"], r["metric"], r["value"]) for r in load(store)) == before

    # A row from an earlier computation that the run's totals no longer produce.
    store.insert(schema.METRICS_TABLE, pa.table({
        "project": [""], "run_id": [a], "scope": [t.SCOPE_PAIR], "subject": ["sup->gone"],
        "metric": [t.OVERWRITE_RATE], "value": [1.0], "numerator": [1.0], "denominator": [1.0]}))
    assert len(load(store)) == stored + 1
    statements.clear()
    assert compute_metrics(store, [a]) == stored
    assert [s for s in statements if s.lstrip().startswith("DELETE")]
    assert sorted((r["scope"], r["subject"], r["metric"], r["value"]) for r in load(store)) == before

    # Many runs at once (a full pass) delete their old rows without looking for leftovers first.
    from handoffs.detectors import metrics

    monkeypatch.setattr(metrics, "_FEW_RUNS", 0)
    monkeypatch.setattr(metrics, "_STALE", "SELECT throwIf(1, 'looked for leftovers')")
    statements.clear()
    assert compute_metrics(store, [a]) == stored
    assert [s for s in statements if s.lstrip().startswith("DELETE")]
    assert sorted((r["scope"], r["subject"], r["metric"], r["value"]) for r in load(store)) == before


def test_runs_totalled_a_slice_at_a_time_give_the_same_metrics(store: Store, traced, monkeypatch) -> None:
    """Totals written a few runs at a time (what bounds a full pass's memory) equal totals
    written at once, for a first computation and for one that replaces rows."""
    from handoffs.detectors import metrics

    with traced():
        for i in range(5):
            _team(overwrite=i % 2 == 0, rewrite_fails=i % 3 == 0)
    at_once = compute_metrics(store)
    whole = sorted((r["run_id"], r["scope"], r["subject"], r["metric"], r["value"]) for r in load(store))
    monkeypatch.setattr(metrics, "RUNS_PER_SLICE", 2)
    store.command(f"TRUNCATE TABLE {schema.METRICS_TABLE}")
    assert compute_metrics(store) == at_once
    assert sorted((r["run_id"], r["scope"], r["subject"], r["metric"], r["value"]) for r in load(store)) == whole
    assert compute_metrics(store) == at_once  # again, replacing every row
    assert sorted((r["run_id"], r["scope"], r["subject"], r["metric"], r["value"]) for r in load(store)) == whole


def test_out_of_date_computes_only_runs_whose_traces_were_judged_since(store: Store, traced,
                                                                        monkeypatch) -> None:
    """``out_of_date``: a run with no metrics, or a trace judged after its metrics were stored
    (again, or by a new detector set), is computed; the others keep their rows untouched."""
    from handoffs.detectors import metrics, pipeline

    def computed_at(run: str) -> list:
        return sorted(r["at"] for r in store.query(
            f"SELECT computed_at AS at FROM {schema.METRICS_TABLE} FINAL WHERE run_id = {{r:String}}", {"r": run}))

    with traced():
        a = _team(overwrite=True, rewrite_fails=True)
        b = _team(overwrite=False, rewrite_fails=False)
    assert compute_metrics(store, [a], out_of_date=True) == len(load(store, [a])) > 0  # none stored yet
    assert not load(store, [b])
    rows_b = compute_metrics(store, [a, b], out_of_date=True)  # a is current: b only
    assert rows_b == len(load(store, [b])) > 0
    before = {run: computed_at(run) for run in (a, b)}
    assert compute_metrics(store, [a, b], out_of_date=True) == 0
    assert {run: computed_at(run) for run in (a, b)} == before

    [trace_b] = [r["t"] for r in store.query(
        f"SELECT DISTINCT TraceId AS t FROM {schema.SPAN_TABLE} WHERE SpanAttributes['{c.RUN_ID}'] = {{r:String}}",
        {"r": b})]
    pipeline.detect_pending(store, [trace_b], incremental=False)  # judged again, after its metrics
    assert compute_metrics(store, [a, b], out_of_date=True) == rows_b
    assert computed_at(a) == before[a] and computed_at(b) > before[b]

    for module in (pipeline, metrics):  # every trace pending again
        monkeypatch.setattr(module, "version", lambda: "a-new-detector-set")
    assert compute_metrics(store, [a, b], out_of_date=True) == len(load(store))
    assert computed_at(a) > before[a]
    assert compute_metrics(store, [a, b]) == len(load(store))  # without it: every run, always


def test_a_runs_traces_are_found_through_the_run_id_index(store: Store, traced, monkeypatch) -> None:
    # The engine read SpanAttributes['handoff.run.id'] as a map subcolumn and skipped the index
    # written on that expression: every gate read a third of the span table to find 40 runs.
    from handoffs.detectors import metrics

    with traced():
        a = _team(overwrite=False, rewrite_fails=False)
    asked: list[tuple[str, dict]] = []
    query = Store.query

    def spy(self: Store, sql: str, params: dict | None = None) -> list[dict]:
        asked.append((sql, params or {}))
        return query(self, sql, params)

    monkeypatch.setattr(Store, "query", spy)
    assert [r for r, _ in metrics._run_traces(store, [a])] == [a]
    monkeypatch.undo()
    [(sql, params)] = asked
    plan = "\n".join(str(next(iter(r.values()))) for r in store.query("EXPLAIN indexes = 1 " + sql, params))
    assert "idx_run_id" in plan
