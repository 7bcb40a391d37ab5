"""The dashboard's queries on a seeded store, below the pages that show them."""

from __future__ import annotations

import pandas as pd
import pytest
from dashboard_seed import BAD, PROJECT, RUNS, seed

from handoffs import taxonomy as T
from handoffs.dashboards import queries
from handoffs.store import Store, schema


def test_compare_sides_reads_both_sides_at_once_as_each_alone(store: Store) -> None:
    seed(store)
    ok, new = RUNS[0].run_id, RUNS[2].run_id
    side_a, side_b = [ok], [BAD.run_id, ok]  # a run may sit on both sides
    sa, sb, ma, mb = queries.compare_sides(store, side_a, side_b)
    assert sa["run_id"].tolist() == [ok]
    assert sorted(sb["run_id"]) == sorted(side_b)
    for got, side in ((sa, side_a), (sb, side_b)):
        alone = queries.runs(store, run_ids=side, limit=len(side)).drop(columns="trend")
        assert got.sort_values("run_id").reset_index(drop=True).equals(
            alone.sort_values("run_id").reset_index(drop=True))
    by_code_a = dict(zip(ma["code"], ma["runs_with_mode"], strict=True))
    by_code_b = dict(zip(mb["code"], mb["runs_with_mode"], strict=True))
    assert by_code_b.get(T.ERROR_CASCADE) == 1 and T.ERROR_CASCADE not in by_code_a
    assert set(by_code_a) <= set(by_code_b)  # A's run is on B's side too
    assert all(len(x) == 0 for x in queries.compare_sides(store, [new], []))


def test_supervisor_overwrites_from_pair_metrics_else_from_findings(store: Store) -> None:
    seed(store)
    by_pairs = queries.supervisor_overwrites(store, "", 0)
    assert by_pairs[["supervisor", "overwrites", "delegations", "source"]].values.tolist() == [
        ["planner", 1.0, 3.0, "metrics"]]
    assert by_pairs["overwrite_rate"].tolist() == [1 / 3]
    # Without pair metrics (detectors that stored none) the overwrite findings stand in.
    store.command(f"TRUNCATE TABLE {schema.METRICS_TABLE}")
    by_findings = queries.supervisor_overwrites(store, "", 0)
    assert by_findings[["supervisor", "overwrites", "delegations", "source"]].values.tolist() == [
        ["planner", 1.0, 0.0, "findings"]]
    assert by_findings["overwrite_rate"].isna().all()
    # The window applies to both: runs that started before it count for nothing.
    assert queries.supervisor_overwrites(store, "", 2**40).empty


def test_agent_metrics_are_daily_means_over_every_run_in_the_window(store: Store) -> None:
    seed(store)
    pairs = queries.agent_metrics(store, "", 0, T.SCOPE_PAIR)
    started = queries.runs(store)[["run_id", "started_at"]]
    days = sorted({d.date() for d in started["started_at"]})
    assert sorted({pd.Timestamp(d).date() for d in pairs["day"]}) == days
    assert set(pairs["subject"]) == {"planner->coder"} and set(pairs["metric"]) == {T.OVERWRITE_RATE}
    # Every run counts once, and the day means weigh back to the mean over runs (0, 1, 0).
    assert pairs["runs"].sum() == len(RUNS)
    assert (pairs["value"] * pairs["runs"]).sum() / pairs["runs"].sum() == 1 / 3
    assert pairs["numerator"].sum() == 1 and pairs["denominator"].sum() == 3
    agents = queries.agent_metrics(store, "shop", 0, T.SCOPE_AGENT)
    assert set(agents["subject"]) == {"coder"} and agents["runs"].sum() == len(RUNS)
    # Runs before the window, or of another project, count for nothing.
    assert queries.agent_metrics(store, "", 2**40, T.SCOPE_PAIR).empty
    assert queries.agent_metrics(store, "other", 0, T.SCOPE_PAIR).empty


def test_capped_pages_keep_the_newest_runs(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    seed(store)
    every = queries.agent_modes(store, "", 0)
    monkeypatch.setattr(queries, "AGENT_MODE_ROWS", 1)
    (newest,) = queries.agent_modes(store, "", 0).itertuples()
    assert newest.day == every["day"].max() and len(every) > 1
    monkeypatch.setattr(queries, "HEATMAP_RUNS", 1)
    cells = queries.mode_heatmap(store, "", 0, "run")
    assert cells["grp"].tolist() == [RUNS[-1].run_id]  # the latest run, and only it


def test_the_run_pickers_list_follow_the_window(store: Store) -> None:
    import time

    seed(store)
    assert set(queries.run_list(store, "")["run_id"]) == {r.run_id for r in RUNS}
    assert queries.run_list(store, "", since=int(time.time()) + 3600).empty


def test_cascade_roots_without_agent_amplification_are_null_not_zero(store: Store) -> None:
    seed(store)
    store.command(f"DELETE FROM {schema.METRICS_TABLE} WHERE scope = '{T.SCOPE_AGENT}'")
    roots = queries.cascade_roots(store, "", 0)
    coder = roots.set_index("agent").loc["coder"]
    assert coder["cascades"] >= 1 and pd.isna(coder["max_amplification"]) and pd.isna(coder["mean_amplification"])


def test_a_commits_runs_are_the_ones_the_gate_judges(store: Store) -> None:
    import time

    from handoffs import conventions as C
    from handoffs.store import SpanBatch

    # Two pytest runs in which no agent worked (the run span alone) beside three that worked:
    # the gate judges 3 and says "too few runs"; the page counted 5 and gave verdicts.
    batch, now = SpanBatch(), time.time_ns()
    for i in range(5):
        trace, idle = f"{i + 40:032x}", i >= 3
        batch.append(trace_id=trace, span_id="0" * 15 + "1", name="handoffs.run test", start_ns=now + i,
                     duration_ns=10, attributes={C.SPAN_TYPE: C.SpanType.RUN.value, C.RUN_ID: f"t-{i}",
                                                 C.RUN_COMMIT: "f" * 40, C.RUN_TEST_ID: f"tests/test_a.py::t{i}"})
        if not idle:
            batch.append(trace_id=trace, span_id="0" * 15 + "2", parent_span_id="0" * 15 + "1",
                         name="invoke_agent a", start_ns=now + i, duration_ns=5,
                         attributes={C.SPAN_TYPE: C.SpanType.AGENT.value, C.GEN_AI_AGENT_NAME: "a",
                                     C.RUN_ID: f"t-{i}"})
    store.insert_spans(batch)
    assert sorted(queries.runs_of_commit(store, "", "f" * 40)) == ["t-0", "t-1", "t-2"]


def test_a_runs_status_follows_the_latest_gate_that_judged_it(store: Store) -> None:
    import datetime as dt

    import pyarrow as pa

    from handoffs.gate.policy import FAIL, PASS

    seed(store)  # run-bad: g0 passed, then g1 failed an hour later
    status = queries.runs(store, run_ids=[BAD.run_id], limit=1).iloc[0]
    assert (status["status"], status["status_from"]) == ("failed", "gate")
    # Gated again and passed (a re-run, a lenient policy): the latest gate decides, as in CI.
    store.insert(schema.GATE_TABLE, pa.table({
        "project": [PROJECT], "gate_id": ["g2"], "policy": ["handoffs.toml"], "check_name": ["x"],
        "severity": [FAIL], "verdict": [PASS], "value": [0.0], "limit_value": [0.0], "baseline": [None],
        "run_ids": [[BAD.run_id]], "commit": [BAD.commit], "branch": ["main"], "message": ["ok"],
        "evaluated_at": pa.array([dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)], pa.timestamp("ms"))}))
    again = queries.runs(store, run_ids=[BAD.run_id], limit=1).iloc[0]
    assert (again["status"], again["gate_checks"], again["gate_failed"]) == ("passed", 1, 0)


def test_a_run_the_detectors_never_judged_is_not_checked_not_passed(store: Store) -> None:
    seed(store)
    store.command(f"TRUNCATE TABLE {schema.DETECTED_TABLE}")
    row = queries.runs(store, run_ids=[RUNS[0].run_id], limit=1).iloc[0]
    # The NULL of the unmatched join read as NaN, which is true: every such run showed passed.
    assert (row["status"], bool(row["detected"])) == ("not checked", False)


def test_the_heatmap_by_run_shows_the_latest_runs_not_the_most_flagged(store: Store) -> None:
    seed(store)
    # run-bad has the most findings (2), run-new is the latest with any (1): by findings the
    # page's "run (latest)" column showed run-bad.
    cells = queries.mode_heatmap(store, "", 0, "run", limit=1)
    assert set(cells["grp"]) == {RUNS[2].run_id}
    by_system = queries.mode_heatmap(store, "", 0, "system", limit=1)
    assert by_system["findings"].sum() == 3  # systems and agents still by findings


def test_a_delegation_failed_by_its_attribute_is_failed_in_the_trace_and_graph(store: Store) -> None:
    import time

    from handoffs import conventions as C
    from handoffs.store import SpanBatch

    trace, now = "f" * 32, time.time_ns()
    batch = SpanBatch()
    for i, status in enumerate(("FAILED", "completed")):
        # The span's own status is Ok: only the delegation's status says it failed (the SDK's
        # set_status("failed")); the detectors read that status lower-cased.
        batch.append(trace_id=trace, span_id=f"{i + 1:016x}", name="transfer_to_coder",
                     start_ns=now + i, duration_ns=1, status_code="Ok", attributes={
                         C.SPAN_TYPE: C.SpanType.DELEGATION.value, C.SOURCE_AGENT: "planner",
                         C.TARGET_AGENT: "coder", C.DELEGATION_STATUS: status})
    store.insert_spans(batch)
    spans = queries.trace_spans(store, trace)
    assert spans["failed"].tolist() == [True, False]
    assert queries.handoff_edges(store, [trace])["failures"].tolist() == [1]


def test_the_agents_rankings_filter_before_final_merges_rows(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    # Under FINAL the engine keeps a WHERE where it is and reads every column asked for of every
    # granule into the merge; the rankings' conditions on the sort key are PREWHERE.
    seed(store)
    issued: list[tuple[str, dict]] = []
    query_arrow = Store.query_arrow

    def spy(self: Store, sql: str, params: dict | None = None):  # type: ignore[no-untyped-def]
        issued.append((sql, params or {}))
        return query_arrow(self, sql, params)

    monkeypatch.setattr(Store, "query_arrow", spy)
    assert not queries.supervisor_overwrites(store, PROJECT, 0).empty
    queries.cascade_roots(store, PROJECT, 0)
    queries.agent_metrics(store, PROJECT, 0, T.SCOPE_AGENT)
    monkeypatch.undo()
    # One FINAL read of the metrics; of the findings and the metrics; of the metrics.
    assert len(issued) == 3
    for (sql, params), reads in zip(issued, (1, 2, 1), strict=True):
        plan = "\n".join(str(next(iter(r.values()))) for r in store.query("EXPLAIN actions = 1 " + sql, params))
        assert plan.count("Prewhere filter column") == reads, sql
