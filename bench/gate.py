"""Gate latency: how long ``run_gate`` takes to judge one commit's runs against a baseline in a
store holding many earlier builds, without detection (metrics and findings already current).

Each build is one commit on main of ``--runs`` runs; each run has run-scope metrics for every
metric the gate knows, agent-scope ones for 3 agents, and about one finding per run. The gate
judges the last commit with 3 absolute and 3 regression checks against the last green commit.
Figures printed: seconds per gate (median of ``--repeat``), runs and rows in the store.

    python bench/gate.py                           # 200 builds of 20 runs (4,000 runs)
    python bench/gate.py --builds 50 --runs 10 --repeat 3
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
import uuid

import pyarrow as pa

from handoffs import conventions as c
from handoffs import taxonomy as tx
from handoffs.gate import parse_policy, run_gate
from handoffs.gate.policy import METRIC_DIRECTIONS
from handoffs.store import SpanBatch, open_store
from handoffs.store.schema import FINDINGS_TABLE, METRICS_TABLE

POLICY = """
[gate]
name = "bench"
detect = false

[runs]
commit = "{commit}"

[baseline]
green = false

[[check]]
metric = "overwrite_rate"
max = 0.5
[[check]]
metric = "overwrite_rate"
scope = "agent"
max = 0.5
[[check]]
failure_mode = "overwrite"
max_rate = 0.9
[[check]]
metric = "error_amplification"
max_regression = 0.1
[[check]]
metric = "autonomous_completion_rate"
max_increase = 0.05
[[check]]
failure_mode = "FM-3.1"
max_regression = 0
"""


def seed(store, builds: int, runs: int, rng: random.Random) -> str:
    """Write ``builds`` commits of ``runs`` runs each; return the last commit."""
    spans, metrics, findings = SpanBatch(), [], []
    t0 = time.time_ns() - builds * 3_600 * 10**9
    commit = ""
    for b in range(builds):
        commit = uuid.uuid4().hex + uuid.uuid4().hex[:8]
        for i in range(runs):
            run_id, trace_id = uuid.uuid4().hex, uuid.uuid4().hex
            spans.append(trace_id=trace_id, span_id=uuid.uuid4().hex[:16], name="handoffs.run bench",
                         start_ns=t0 + b * 3_600 * 10**9 + i, duration_ns=1000, service_name="team",
                         attributes={c.SPAN_TYPE: c.SpanType.RUN.value, c.RUN_ID: run_id,
                                     c.RUN_COMMIT: commit, c.RUN_BRANCH: "main", c.RUN_TAGS: "[]"})
            for metric in METRIC_DIRECTIONS:
                metrics.append((run_id, tx.SCOPE_RUN, run_id, metric, rng.random()))
                for agent in ("supervisor", "writer", "coder"):
                    metrics.append((run_id, tx.SCOPE_AGENT, agent, metric, rng.random()))
            if rng.random() < 0.7:
                findings.append((run_id, trace_id, rng.choice(["overwrite", "FM-3.1", "FM-3.2"])))
    store.insert_spans(spans)
    store.insert(METRICS_TABLE, pa.table({
        "project": [""] * len(metrics), "run_id": [m[0] for m in metrics], "scope": [m[1] for m in metrics],
        "subject": [m[2] for m in metrics], "metric": [m[3] for m in metrics],
        "value": [m[4] for m in metrics], "numerator": [0.0] * len(metrics),
        "denominator": [0.0] * len(metrics)}))
    store.insert(FINDINGS_TABLE, pa.table({
        "project": [""] * len(findings), "run_id": [f[0] for f in findings],
        "trace_id": [f[1] for f in findings], "code": [f[2] for f in findings],
        "name": [tx.BY_CODE[f[2]].name for f in findings], "agent": ["supervisor"] * len(findings),
        "step": pa.array([3] * len(findings), pa.int32()), "span_id": ["0" * 16] * len(findings),
        "confidence": [0.9] * len(findings), "evidence": ["bench"] * len(findings),
        "detector": ["bench"] * len(findings), "detector_version": ["0"] * len(findings)}))
    return commit


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--builds", type=int, default=200)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    store = open_store(f"chdb://{tempfile.mkdtemp(prefix='handoffs-bench-gate-')}")
    commit = seed(store, args.builds, args.runs, random.Random(1))
    policy = parse_policy(POLICY.replace("{commit}", commit), "bench.toml")
    times = []
    for _ in range(args.repeat):
        t = time.perf_counter()
        result = run_gate(store, policy, record=False, env={})
        times.append(time.perf_counter() - t)
    print(json.dumps({
        "builds": args.builds, "runs_per_build": args.runs,
        "runs_in_store": store.scalar("SELECT count() FROM handoffs_runs FINAL"),
        "metric_rows": store.scalar("SELECT count() FROM handoffs_metrics"),
        "checks": len(policy.checks), "judged": len(result.runs), "baseline": len(result.baseline),
        "seconds_per_gate_median": round(statistics.median(times), 3),
        "seconds_per_gate_min": round(min(times), 3), "verdict": result.verdict,
    }))


if __name__ == "__main__":
    main()
