"""The seed metrics per run, per agent and per agent pair, stored in ``handoffs_metrics``.

    from handoffs.detectors.metrics import compute_metrics
    rows = compute_metrics(store)          # [{"run_id", "scope", "subject", "metric", "value", ...}]

ClickHouse reduces each trace to one row per delegation, per verification and per agent
(``_DELEGATIONS``, ``_VERIFICATIONS``, ``_AGENTS``); Python only sums those rows into scopes:
``run`` (subject = run id), ``agent`` (an agent's name) and ``pair`` (``"delegator->delegate"``).
Definitions (DESIGN.md), with the choices the seeds leave open:

- overwrite_rate: delegations whose output the delegator overwrote (or modified) before the
  delegate completed its first logical unit, within 5 steps of the hand-off / delegations.
  Agent scope: the delegator's.
- tokens_before_interruption: output tokens the delegate delivered before the delegator's first
  intervention (overwrote, modified, rejected, rederived), mean over intervened delegations.
- autonomous_completion_rate: delegations completed with no intervention / delegations.
- rewrite_bug_rate, original_bug_rate: failed / all verifications of the delegator's rewrites
  (a check of a decision's result hash, or of a delegation after it was rewritten) and of the
  delegates' originals (a check of an output, or of a delegation not rewritten yet).
- error_amplification: own errors per root error along the data flow (``cascade``).
- coordination_overhead: tokens of coordinating agents (those that delegate) / tokens of the
  others; without token counts, delegation and verification spans / tool and LLM spans.
- failure_rate:<code>: findings of the mode in the run (every code, zeros included); agent and
  pair scopes count the findings pointing at them (non-zero only).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence
from typing import Any

import pyarrow as pa

from handoffs import conventions as c
from handoffs import taxonomy as t
from handoffs.conventions import DecisionAction as Act
from handoffs.conventions import DelegationStatus, SpanType, Verdict
from handoffs.store import Store, among, schema

from . import cascade
from .normalise import Scratch, prelude
from .pipeline import CHUNK_TRACES, chunks, detect_pending

FIRST_STEPS = 5
_INTERVENTIONS = "('" + "','".join(a.value for a in (Act.OVERWROTE, Act.MODIFIED, Act.REJECTED,
                                                      Act.REDERIVED)) + "')"
_REWRITES = f"('{Act.OVERWROTE.value}','{Act.MODIFIED.value}')"

_RUN_OF = """tr AS (
    SELECT trace_id, anyIf(run_id, run_id != '') AS r, if(r = '', trace_id, r) AS rid,
        anyIf(project, project != '') AS project
    FROM s GROUP BY trace_id
)"""

_DELEGATIONS = f"""
SELECT tr.rid AS run_id, any(tr.project) AS project, x.span_id AS span_id, any(x.delegator) AS delegator,
    any(x.delegate) AS delegate,
    any(x.status) = '{DelegationStatus.COMPLETED.value}' AS completed,
    countIf(d.action IN {_INTERVENTIONS}) > 0 AS intervened,
    countIf(d.action IN {_REWRITES} AND (o.units = 0 OR d.ts < o.first_unit)
            AND d.step - x.step <= {FIRST_STEPS}) > 0 AS early_overwrite,
    any(o.tokens_before) AS tokens_before
FROM e AS x
INNER JOIN tr ON tr.trace_id = x.trace_id
LEFT JOIN decisions AS d ON d.trace_id = x.trace_id AND d.span_id = x.span_id
LEFT JOIN (
    SELECT op.trace_id AS trace_id, op.span_id AS span_id, countIf(op.unit_complete) AS units,
        minIf(op.ts, op.unit_complete) AS first_unit,
        sumIf(op.tokens, di.first_intervention = 0 OR toUnixTimestamp64Nano(op.ts) < di.first_intervention)
            AS tokens_before
    FROM outputs AS op
    LEFT JOIN (SELECT trace_id, span_id, minIf(ts, action IN {_INTERVENTIONS}) AS first_intervention_ts,
                      toUnixTimestamp64Nano(first_intervention_ts) AS first_intervention
               FROM decisions GROUP BY trace_id, span_id) AS di
        ON di.trace_id = op.trace_id AND di.span_id = op.span_id
    GROUP BY op.trace_id, op.span_id
) AS o ON o.trace_id = x.trace_id AND o.span_id = x.span_id
GROUP BY tr.rid, x.trace_id, x.span_id
"""

_VERIFICATIONS = f"""
SELECT tr.rid AS run_id, vv.span_id AS span_id, vv.verdict IN ('{Verdict.FAIL.value}', '{Verdict.ERROR.value}') AS bad,
    any(x.delegator) AS delegator, any(x.delegate) AS delegate,
    countIf(rw.ts < vv.ts AND rw.trace_id != '') > 0 OR any(rh.trace_id) != '' AS rewrite
FROM v AS vv
INNER JOIN tr ON tr.trace_id = vv.trace_id
LEFT JOIN produced AS p ON p.trace_id = vv.trace_id AND p.output_id = vv.check_target
LEFT JOIN (SELECT trace_id, result_hash, any(span_id) AS span_id FROM decisions
           WHERE action IN {_REWRITES} AND result_hash != '' GROUP BY trace_id, result_hash) AS rh
    ON rh.trace_id = vv.trace_id AND rh.result_hash = vv.check_target
INNER JOIN e AS x ON x.trace_id = vv.trace_id
    AND (x.delegation_id = vv.check_target OR x.span_id = vv.check_target OR x.span_id = p.span_id
         OR x.span_id = rh.span_id)
LEFT JOIN (SELECT trace_id, span_id, ts FROM decisions WHERE action IN {_REWRITES}) AS rw
    ON rw.trace_id = x.trace_id AND rw.span_id = x.span_id AND p.output_id = ''
WHERE vv.verdict != '' AND vv.check_target != ''
GROUP BY tr.rid, vv.trace_id, vv.span_id, vv.verdict
"""

_AGENTS = f"""
SELECT tr.rid AS run_id, a.agent AS agent, a.tokens AS tokens, a.coord_spans AS coord_spans,
    a.work_spans AS work_spans, has(c.coordinators, a.agent) AS coordinator
FROM (
    SELECT trace_id, agent, sum(input_tokens + output_tokens) AS tokens,
        countIf(type IN ('{SpanType.DELEGATION.value}', '{SpanType.VERIFICATION.value}')) AS coord_spans,
        countIf(type IN ('{SpanType.TOOL.value}', '{SpanType.LLM.value}')) AS work_spans
    FROM s WHERE agent != '' GROUP BY trace_id, agent
) AS a
INNER JOIN tr ON tr.trace_id = a.trace_id
LEFT JOIN (SELECT trace_id, groupUniqArray(delegator) AS coordinators FROM e GROUP BY trace_id) AS c
    ON c.trace_id = a.trace_id
"""


_RUN_ID = f"SpanAttributes['{c.RUN_ID}']"


def _traces_of_runs(store: Store, run_ids: Sequence[str] | None) -> list[str]:
    if run_ids is None:
        return [r["t"] for r in store.query(f"SELECT DISTINCT TraceId AS t FROM {schema.SPAN_TABLE}")]
    return [r["t"] for r in store.query(
        f"SELECT DISTINCT TraceId AS t FROM {schema.SPAN_TABLE} "
        f"WHERE {among(_RUN_ID, 'runs', len(run_ids))} OR {among('TraceId', 'runs', len(run_ids))}",
        {"runs": list(run_ids)})]


class _Acc:
    """Numerators and denominators per (run, scope, subject, metric)."""

    def __init__(self) -> None:
        self.sums: dict[tuple[str, str, str, str], list[float]] = defaultdict(lambda: [0.0, 0.0])

    def add(self, run: str, scope: str, subject: str, metric: str, num: float, den: float) -> None:
        cell = self.sums[(run, scope, subject, metric)]
        cell[0] += num
        cell[1] += den

    def add_all(self, run: str, agent: str, pair: str, metric: str, num: float, den: float) -> None:
        self.add(run, t.SCOPE_RUN, run, metric, num, den)
        if agent:
            self.add(run, t.SCOPE_AGENT, agent, metric, num, den)
        if pair:
            self.add(run, t.SCOPE_PAIR, pair, metric, num, den)

    def rows(self) -> list[dict[str, Any]]:
        """One row per cell, in no particular order (sorting 1.4M cells of a 1M-span store cost
        5 s, and every reader looks rows up by their key)."""
        out = []
        for (run, scope, subject, metric), (num, den) in self.sums.items():
            value = num if metric.startswith(t.FAILURE_RATE_PREFIX) else (num / den if den else None)
            if value is None:
                continue
            out.append({"run_id": run, "scope": scope, "subject": subject, "metric": metric,
                        "value": float(value), "numerator": float(num), "denominator": float(den)})
        return out


def _chunks(ids: Sequence[str], size: int = CHUNK_TRACES) -> list[list[str]]:
    return [list(ids[i:i + size]) for i in range(0, len(ids), size)]


def _scratches(store: Store, traces: Sequence[str], every: bool) -> Iterator[Scratch]:
    """The normalised shape of ``traces``, a chunk at a time (``pipeline.chunks``): every metric
    query of a chunk reads it, so the attribute maps are read once per chunk, not once per query."""
    for _, where, params in chunks(traces, every):
        with Scratch(store, where, params) as scratch:
            yield scratch


def _rows(store: Store, scratch: Scratch, body: str) -> list[dict[str, Any]]:
    """``body`` over a chunk's normalised shape, with ``tr`` (each trace's run) beside it."""
    return store.query_arrow(prelude(scratch, _RUN_OF + body) + ", " + _RUN_OF + body).to_pylist()


def compute_metrics(store: Store, run_ids: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Compute every metric for ``run_ids`` (all runs when None), store them, and return them.

    Detection runs first on traces not judged yet, since failure rates count findings.
    """
    traces = _traces_of_runs(store, run_ids)
    # Every trace: the incremental pass, which reads only what arrived since the last one.
    detect_pending(store, None if run_ids is None else traces)
    acc = _Acc()
    projects: dict[str, str] = {}
    pair_of_span: dict[str, str] = {}
    run_of_trace: dict[str, str] = {}
    for scratch in _scratches(store, traces, every=run_ids is None):
        for r in _rows(store, scratch, _DELEGATIONS):
            run, pair = r["run_id"], f"{r['delegator']}->{r['delegate']}"
            projects[run] = r["project"] or projects.get(run, "")
            pair_of_span[r["span_id"]] = pair
            acc.add_all(run, r["delegator"], pair, t.OVERWRITE_RATE, float(r["early_overwrite"]), 1)
            acc.add_all(run, r["delegate"], pair, t.AUTONOMOUS_COMPLETION_RATE,
                        float(r["completed"] and not r["intervened"]), 1)
            if r["intervened"]:
                acc.add_all(run, r["delegate"], pair, t.TOKENS_BEFORE_INTERRUPTION,
                            float(r["tokens_before"] or 0), 1)
        for r in _rows(store, scratch, _VERIFICATIONS):
            metric = t.REWRITE_BUG_RATE if r["rewrite"] else t.ORIGINAL_BUG_RATE
            author = r["delegator"] if r["rewrite"] else r["delegate"]
            acc.add_all(r["run_id"], author, f"{r['delegator']}->{r['delegate']}", metric, float(r["bad"]), 1)
        coord: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0, 0.0])
        for r in _rows(store, scratch, _AGENTS):
            cell = coord[r["run_id"]]
            cell[0 if r["coordinator"] else 1] += r["tokens"]
            cell[2] += r["coord_spans"]
            cell[3] += r["work_spans"]
        for run, (ctok, wtok, cspans, wspans) in coord.items():
            if ctok + wtok > 0:
                acc.add(run, t.SCOPE_RUN, run, t.COORDINATION_OVERHEAD, ctok, wtok)
            else:
                acc.add(run, t.SCOPE_RUN, run, t.COORDINATION_OVERHEAD, cspans, wspans)
        for r in _rows(store, scratch, "SELECT trace_id, rid, project FROM tr"):
            run_of_trace[r["trace_id"]] = r["rid"]
            projects.setdefault(r["rid"], r["project"])
        amp: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for tid, result in cascade.analyse_traces(store, None, scratch).items():
            cell = amp[run_of_trace.get(tid, tid)]
            cell[0] += result.own_errors
            cell[1] += result.roots
        for run, (own, roots) in amp.items():
            if roots:
                acc.add(run, t.SCOPE_RUN, run, t.ERROR_AMPLIFICATION, own, roots)
    runs = sorted(set(run_of_trace.values()))
    for run in runs:
        for mode in t.MODES:
            acc.add(run, t.SCOPE_RUN, run, t.failure_rate_metric(mode.code), 0, 1)
    for chunk in _chunks(traces):
        for f in store.query(f"""
                SELECT trace_id, code, agent, span_id FROM {schema.FINDINGS_TABLE} FINAL
                WHERE trace_id IN {{traces:Array(String)}}""", {"traces": chunk}):
            run = run_of_trace.get(f["trace_id"], f["trace_id"])
            metric = t.failure_rate_metric(f["code"])
            acc.add(run, t.SCOPE_RUN, run, metric, 1, 0)
            if f["agent"]:
                acc.add(run, t.SCOPE_AGENT, f["agent"], metric, 1, 1)
            if f["span_id"] in pair_of_span:
                acc.add(run, t.SCOPE_PAIR, pair_of_span[f["span_id"]], metric, 1, 1)
    rows = acc.rows()
    _write(store, rows, projects, runs)
    return rows


def _write(store: Store, rows: list[dict[str, Any]], projects: dict[str, str], runs: list[str]) -> None:
    """Replace the stored metrics of ``runs`` with ``rows``."""
    if runs:
        store.command(f"DELETE FROM {schema.METRICS_TABLE} WHERE {among('run_id', 'runs', len(runs))}",
                      {"runs": runs})
    if not rows:
        return
    store.insert(schema.METRICS_TABLE, pa.table({
        "project": pa.array([projects.get(r["run_id"], "") for r in rows], pa.string()),
        "run_id": pa.array([r["run_id"] for r in rows], pa.string()),
        "scope": pa.array([r["scope"] for r in rows], pa.string()),
        "subject": pa.array([r["subject"] for r in rows], pa.string()),
        "metric": pa.array([r["metric"] for r in rows], pa.string()),
        "value": pa.array([r["value"] for r in rows], pa.float64()),
        "numerator": pa.array([r["numerator"] for r in rows], pa.float64()),
        "denominator": pa.array([r["denominator"] for r in rows], pa.float64()),
    }))
