"""Gate latency: how long ``run_gate`` takes to judge one commit's runs against a baseline in a
store holding many earlier builds, without detection (metrics and findings already current).

Each build is one commit on main of ``--runs`` runs; each run has run-scope metrics for every
metric the gate knows, agent-scope ones for 3 agents, and about one finding per run. The gate
judges the last commit with 3 absolute and 3 regression checks against the last green commit.
Each run also carries ``--spans-per-run`` child spans, so the store's span count is realistic.
The store grows through ``--builds`` sizes; at each, p50 and p95 seconds per gate over
``--repeat`` gates, written to bench/results/gate.txt.

    python bench/gate.py                           # 400, 800, 1600 builds of 20 runs (about 1M spans at the end)
    python bench/gate.py --builds 50,100 --runs 10 --repeat 3
"""

from __future__ import annotations

import argparse
import os
import platform
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


def seed(store, builds: int, runs: int, rng: random.Random, first: int = 0,
         spans_per_run: int = 0) -> str:
    """Write ``builds`` commits of ``runs`` runs each (hours after build ``first``); return the last commit."""
    spans, metrics, findings = SpanBatch(), [], []
    t0 = time.time_ns() - 2_000 * 3_600 * 10**9  # within the default 90-day retention
    commit = ""
    for b in range(first, first + builds):
        commit = uuid.uuid4().hex + uuid.uuid4().hex[:8]
        for i in range(runs):
            run_id, trace_id = uuid.uuid4().hex, uuid.uuid4().hex
            spans.append(trace_id=trace_id, span_id=uuid.uuid4().hex[:16], name="handoffs.run bench",
                         start_ns=t0 + b * 3_600 * 10**9 + i, duration_ns=1000, service_name="team",
                         attributes={c.SPAN_TYPE: c.SpanType.RUN.value, c.RUN_ID: run_id,
                                     c.RUN_COMMIT: commit, c.RUN_BRANCH: "main", c.RUN_TAGS: "[]"})
            for k in range(spans_per_run):
                spans.append(trace_id=trace_id, span_id=uuid.uuid4().hex[:16], name="execute_tool work",
                             start_ns=t0 + b * 3_600 * 10**9 + i + k + 1, duration_ns=100,
                             service_name="team", attributes={c.SPAN_TYPE: c.SpanType.TOOL.value,
                                                              c.RUN_ID: run_id, c.STEP: str(k)})
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


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--builds", default="400,800,1600", help="store sizes in builds, ascending")
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--spans-per-run", type=int, default=30)
    ap.add_argument("--repeat", type=int, default=9)
    ap.add_argument("--no-write", action="store_true", help="do not write bench/results/gate.txt")
    args = ap.parse_args()
    sizes = [int(x) for x in args.builds.split(",")]
    store = open_store(f"chdb://{tempfile.mkdtemp(prefix='handoffs-bench-gate-')}")
    rng, done = random.Random(1), 0
    lines = [f"# {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC  python bench/gate.py "
             f"--builds {args.builds} --runs {args.runs} --spans-per-run {args.spans_per_run} --repeat {args.repeat}",
             f"# {platform.platform()}, {platform.python_version()}, {os.cpu_count()} cores; chDB embedded "
             f"store; load average {os.getloadavg()[0]:.1f}; detection off (metrics and findings current)"]
    for size in sizes:
        commit = seed(store, size - done, args.runs, rng, first=done, spans_per_run=args.spans_per_run)
        done = size
        policy = parse_policy(POLICY.replace("{commit}", commit), "bench.toml")
        times = []
        for _ in range(args.repeat):
            t = time.perf_counter()
            result = run_gate(store, policy, record=False, env={})
            times.append(time.perf_counter() - t)
        line = (f"builds {size:>6,}  runs {store.scalar('SELECT count() FROM handoffs_runs FINAL'):>8,}  "
                f"spans {store.scalar('SELECT count() FROM otel_traces'):>10,}  "
                f"metric rows {store.scalar('SELECT count() FROM handoffs_metrics'):>10,}  "
                f"{len(policy.checks)} checks, {len(result.runs)} runs vs {len(result.baseline)}  "
                f"gate p50 {statistics.median(times):6.3f} s  p95 {_quantile(times, 0.95):6.3f} s  "
                f"verdict {result.verdict}")
        print(line, flush=True)
        lines.append(line)
    if not args.no_write:
        out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "gate.txt")
        with open(out, "w") as fh:
            fh.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
