"""Seed data for the dashboard tests: three runs of a supervisor and two workers.

Spans go in through ``SpanBatch`` (the run spans become runs through the store's view);
findings, metrics and a gate result go in as the detectors and the gate write them. Run
``run-bad`` has an overwrite, an error cascade rooted in ``coder`` and a failing gate check;
``run-ok`` is clean and detected; ``run-new`` is on another branch with one low-confidence
finding and no gate result.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from dataclasses import dataclass

import pyarrow as pa

from handoffs import conventions as C
from handoffs import taxonomy as T
from handoffs.gate.policy import FAIL, PASS
from handoffs.store import Event, SpanBatch, Store, schema

PROJECT = "shop"
SERVICE = "shop-team"


@dataclass(frozen=True)
class SeededRun:
    run_id: str
    trace_id: str
    commit: str
    branch: str
    tags: tuple[str, ...]


RUNS = (
    SeededRun("run-ok", "1" * 32, "c0ffee1", "main", ("nightly",)),
    SeededRun("run-bad", "2" * 32, "badc0de", "main", ("nightly", "canary")),
    SeededRun("run-new", "3" * 32, "feed123", "feature/x", ("pr",)),
)
BAD = RUNS[1]
CASCADE_EVIDENCE = "coder's failing output step 3 was accepted by reviewer without a check"
OVERWRITE_REASON = "faster to write it myself"
OVERWRITE_EVIDENCE = "planner overwrote coder's output at step 2 after 12 tokens"
CONTEXT_MESSAGE = "def total(cart): return sum(cart)  # ignores discounts"
GATE_AT = dt.datetime(2026, 11, 20, 12, 0)  # when the seed's latest gate judged run-bad


def _sid(trace: str, i: int) -> str:
    return f"{trace[:4]}{i:012x}"


def _add_run(batch: SpanBatch, run: SeededRun, start: int, *, overwrite: bool, error: bool) -> None:
    res = {C.SERVICE_NAME: SERVICE, C.RESOURCE_PROJECT: PROJECT, C.RESOURCE_SYSTEM: "shop-mas"}
    t = run.trace_id
    batch.append(trace_id=t, span_id=_sid(t, 1), name="handoffs.run shop", start_ns=start,
                 duration_ns=9_000_000_000, service_name=SERVICE, resource_attributes=res,
                 status_code="Error" if error else "Ok",
                 attributes={C.SPAN_TYPE: C.SpanType.RUN.value, C.RUN_ID: run.run_id,
                             C.RUN_NAME: "checkout", C.RUN_COMMIT: run.commit,
                             C.RUN_BRANCH: run.branch, C.RUN_TAGS: json.dumps(list(run.tags)),
                             C.RUN_TOPOLOGY: "centralized"})
    batch.append(trace_id=t, span_id=_sid(t, 2), parent_span_id=_sid(t, 1),
                 name="invoke_agent planner", start_ns=start + 10**6, duration_ns=8 * 10**9,
                 service_name=SERVICE, resource_attributes=res,
                 attributes={C.SPAN_TYPE: C.SpanType.AGENT.value, C.GEN_AI_AGENT_NAME: "planner",
                             C.STEP: "1", C.GEN_AI_USAGE_INPUT_TOKENS: "100",
                             C.GEN_AI_USAGE_OUTPUT_TOKENS: "50"})
    for i, (target, step) in enumerate((("coder", 2), ("reviewer", 4))):
        decision = (C.DecisionAction.OVERWROTE if overwrite and target == "coder"
                    else C.DecisionAction.ACCEPTED)
        batch.append(
            trace_id=t, span_id=_sid(t, 3 + i), parent_span_id=_sid(t, 2),
            name=C.delegation_span_name(target), start_ns=start + (2 + 3 * i) * 10**9,
            duration_ns=2 * 10**9, service_name=SERVICE, resource_attributes=res,
            status_code="Error" if error and target == "coder" else "Ok",
            attributes={C.SPAN_TYPE: C.SpanType.DELEGATION.value, C.SOURCE_AGENT: "planner",
                        C.TARGET_AGENT: target, C.STEP: str(step), C.TASK: f"{target}: checkout total",
                        C.GEN_AI_USAGE_OUTPUT_TOKENS: "12"},
            events=[Event(start + (3 + 3 * i) * 10**9, C.EVENT_OUTPUT,
                          {C.OUTPUT_CONTENT: CONTEXT_MESSAGE if target == "coder" else "looks fine"}),
                    Event(start + (3 + 3 * i) * 10**9 + 1, C.EVENT_DECISION,
                          {C.DECISION_ACTION: decision.value, C.DECISION_AGENT: "planner",
                           C.DECISION_REASON: OVERWRITE_REASON if decision is C.DecisionAction.OVERWROTE
                           else ""})])
    batch.append(trace_id=t, span_id=_sid(t, 5), parent_span_id=_sid(t, 3),
                 name="chat gpt", start_ns=start + 3 * 10**9, duration_ns=5 * 10**8,
                 service_name=SERVICE, resource_attributes=res,
                 attributes={C.SPAN_TYPE: C.SpanType.MESSAGE.value, C.GEN_AI_AGENT_NAME: "coder",
                             C.STEP: "3", C.MESSAGE_CONTENT: CONTEXT_MESSAGE})


def _findings(rows: list[dict]) -> pa.Table:
    cols = ("project", "run_id", "trace_id", "source_id", "code", "name", "category", "agent",
            "step", "span_id", "confidence", "evidence", "detector", "detector_version")
    return pa.table({c: [r.get(c, "") for r in rows] for c in cols}).set_column(
        cols.index("step"), "step", pa.array([r["step"] for r in rows], pa.int32()))


def seed(store: Store) -> None:
    """Write the three runs, their findings, metrics, detection state and one gate result."""
    now = time.time_ns()
    batch = SpanBatch()
    for i, run in enumerate(RUNS):
        _add_run(batch, run, now - (3 - i) * 3600 * 10**9,
                 overwrite=run is BAD, error=run is BAD)
    store.insert_spans(batch)

    def finding(run: SeededRun, code: str, agent: str, step: int, span: int, conf: float,
                evidence: str) -> dict:
        mode = T.BY_CODE[code]
        return {"project": PROJECT, "run_id": run.run_id, "trace_id": run.trace_id, "code": code,
                "name": mode.name, "category": mode.category, "agent": agent, "step": step,
                "span_id": _sid(run.trace_id, span), "confidence": conf, "evidence": evidence,
                "detector": "seed", "detector_version": "0"}

    store.insert(schema.FINDINGS_TABLE, _findings([
        finding(BAD, T.ERROR_CASCADE, "coder", 3, 5, 0.9, CASCADE_EVIDENCE),
        finding(BAD, T.OVERWRITE, "planner", 2, 3, 0.8, OVERWRITE_EVIDENCE),
        finding(RUNS[2], T.STEP_REPETITION, "reviewer", 4, 4, 0.3, "reviewer asked twice"),
    ]))
    store.insert(schema.DETECTED_TABLE, pa.table({
        "project": [PROJECT] * 3, "trace_id": [r.trace_id for r in RUNS],
        "detector_version": ["0"] * 3, "span_count": pa.array([6, 6, 6], pa.uint64())}))
    metric_rows = []
    for run in RUNS:
        bad = run is BAD
        metric_rows += [
            (run.run_id, T.SCOPE_RUN, run.run_id, T.OVERWRITE_RATE, 0.5 if bad else 0.0, 1 if bad else 0, 2),
            (run.run_id, T.SCOPE_RUN, run.run_id, T.ERROR_AMPLIFICATION, 2.0 if bad else 0.0, 0, 0),
            (run.run_id, T.SCOPE_PAIR, "planner->coder", T.OVERWRITE_RATE, 1.0 if bad else 0.0,
             1 if bad else 0, 1),
            (run.run_id, T.SCOPE_AGENT, "coder", T.ERROR_AMPLIFICATION, 2.0 if bad else 0.0, 0, 0),
        ]
    names = ("run_id", "scope", "subject", "metric", "value", "numerator", "denominator")
    store.insert(schema.METRICS_TABLE, pa.table(
        {"project": [PROJECT] * len(metric_rows)}
        | {n: [float(r[i]) if i >= 4 else r[i] for r in metric_rows] for i, n in enumerate(names)}))
    # Two gates judged run-bad: g0 an hour before g1, with an older policy and one check.
    store.insert(schema.GATE_TABLE, pa.table({
        "project": [PROJECT] * 3, "gate_id": ["g1", "g1", "g0"],
        "policy": ["handoffs.toml", "handoffs.toml", "old.toml"],
        "check_name": ["overwrite_rate <= 0.2", "error_cascades == 0", "error_cascades == 0"],
        "severity": [FAIL, FAIL, FAIL], "verdict": [PASS, FAIL, PASS],
        "value": [0.25, 1.0, 0.0], "limit_value": [0.2, 0.0, 0.0], "baseline": [None, None, None],
        "run_ids": [[BAD.run_id]] * 3, "commit": [BAD.commit] * 3,
        "branch": ["main"] * 3, "message": ["ok", "1 error cascade rooted in coder", "ok"],
        "evaluated_at": pa.array([GATE_AT, GATE_AT, GATE_AT - dt.timedelta(hours=1)], pa.timestamp("ms"))}))
