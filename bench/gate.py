"""Gate latency: how long ``run_gate`` takes to judge one commit's runs against a baseline in a
store holding many earlier builds, without detection (metrics and findings already current).

Each build is one commit on main of ``--runs`` runs; each run has run-scope metrics for every
metric the gate knows, agent-scope ones for 3 agents, and about one finding per run; each
build also has a recorded gate (3 in 4 green). The gate judges the last commit with 3 absolute
and 3 regression checks, against the last commit ("last") and against the last green commit
("green", the default policy's baseline). Each run also carries ``--spans-per-run`` child
spans, so the store's span count is realistic. The store grows through ``--builds`` sizes; at
each, p50 and p95 seconds per gate over ``--repeat`` gates. With ``--before REV`` the gate of
that git revision (its gate/judge.py, on the same store) runs in the same rounds, alternating,
and the ratio is the median of per-round ratios; at the largest size one gate of each is timed
query by query. Results are appended to bench/results/gate.txt.

    python bench/gate.py                           # 400, 800, 1600 builds of 20 runs (about 1M spans at the end)
    python bench/gate.py --builds 400,800,1600,3200 --before 9f4be27
    python bench/gate.py --builds 50,100 --runs 10 --repeat 3
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
import types
import uuid
from collections.abc import Callable
from typing import Any

import pyarrow as pa

from handoffs import conventions as c
from handoffs import taxonomy as tx
from handoffs.gate import parse_policy, run_gate
from handoffs.gate.policy import METRIC_DIRECTIONS
from handoffs.store import SpanBatch, Store, open_store
from handoffs.store.schema import FINDINGS_TABLE, GATE_TABLE, METRICS_TABLE, RUNS_TABLE

POLICY = """
[gate]
name = "bench"
detect = false

[runs]
commit = "{commit}"

[baseline]
green = {green}

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
    spans, metrics, findings, gates = SpanBatch(), [], [], []
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
        gates.append((uuid.uuid4().hex, commit, "pass" if b % 4 else "fail"))
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
    checks = 6  # one row per check of each recorded gate, as record_result writes them
    store.insert(GATE_TABLE, pa.table({
        "project": [""] * len(gates) * checks, "gate_id": [g[0] for g in gates for _ in range(checks)],
        "policy": ["bench"] * len(gates) * checks,
        "check_name": [f"check {k}" for _ in gates for k in range(checks)],
        "severity": ["fail"] * len(gates) * checks,
        "verdict": [g[2] if k == 0 else "pass" for g in gates for k in range(checks)],
        "value": pa.array([0.1] * len(gates) * checks, pa.float64()),
        "limit_value": pa.array([0.5] * len(gates) * checks, pa.float64()),
        "baseline": pa.array([None] * len(gates) * checks, pa.float64()),
        "run_ids": pa.array([[]] * len(gates) * checks, pa.list_(pa.string())),
        "commit": [g[1] for g in gates for _ in range(checks)], "branch": ["main"] * len(gates) * checks,
        "message": [""] * len(gates) * checks}))
    return commit


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def gate_of(rev: str) -> Callable[..., Any]:
    """``run_gate`` as gate/judge.py was at git revision ``rev`` (same package around it)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    source = subprocess.run(["git", "show", f"{rev}:gate/judge.py"], cwd=root, check=True,
                            capture_output=True, text=True).stdout
    path = os.path.join(tempfile.mkdtemp(prefix="handoffs-bench-gate-before-"), "judge_before.py")
    with open(path, "w") as fh:
        fh.write(source)
    spec = importlib.util.spec_from_file_location("handoffs.gate.judge_before", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module.run_gate


class QueryTimer:
    """Wraps a store's ``query`` to time each query of one gate."""

    def __init__(self, store: Store) -> None:
        self.store, self.calls = store, []
        self.original = store.query

    def __enter__(self) -> QueryTimer:
        def timed(sql: str, params: dict | None = None, *args: Any, **kwargs: Any) -> Any:
            t = time.perf_counter()
            rows = self.original(sql, params, *args, **kwargs)
            self.calls.append((time.perf_counter() - t, _label(sql), len(rows)))
            return rows
        self.store.query = types.MethodType(lambda _self, *a, **k: timed(*a, **k), self.store)
        return self

    def __exit__(self, *exc: object) -> None:
        del self.store.query


def _label(sql: str) -> str:
    """Which table a query reads and how (FINAL or not), for the breakdown."""
    words = sql.split()
    tables = [words[i + 1] for i, w in enumerate(words[:-1]) if w == "FROM" and words[i + 1].startswith(("handoffs", "otel"))]
    final = " FINAL" if "FINAL" in words else ""
    return ", ".join(dict.fromkeys(tables)) + final


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--builds", default="400,800,1600", help="store sizes in builds, ascending")
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--spans-per-run", type=int, default=30)
    ap.add_argument("--repeat", type=int, default=9)
    ap.add_argument("--before", default="", help="git revision whose gate/judge.py to time alongside")
    ap.add_argument("--no-write", action="store_true", help="do not append to bench/results/gate.txt")
    args = ap.parse_args()
    sizes = [int(x) for x in args.builds.split(",")]
    gates: dict[str, Callable[..., Any]] = {"now": run_gate}
    if args.before:
        gates = {f"before ({args.before})": gate_of(args.before), "now": run_gate}
    store = open_store(f"chdb://{tempfile.mkdtemp(prefix='handoffs-bench-gate-')}")
    rng, done = random.Random(1), 0
    argv = " ".join(sys.argv[1:])
    lines = [f"# {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC  python bench/gate.py {argv}".rstrip(),
             f"# {platform.platform()}, {platform.python_version()}, {os.cpu_count()} cores; chDB embedded "
             f"store; load average {os.getloadavg()[0]:.1f} at start; detection off (metrics and findings "
             f"current); {args.runs} runs per build, a gate recorded per build (3 in 4 green); "
             f"{args.repeat} rounds, alternating the gates compared"]
    print("\n".join(lines), flush=True)
    for size in sizes:
        commit = seed(store, size - done, args.runs, rng, first=done, spans_per_run=args.spans_per_run)
        done = size
        counts = (f"builds {size:>6,}  runs {store.scalar(f'SELECT uniqExact(run_id) FROM {RUNS_TABLE}'):>8,}  "
                  f"spans {store.scalar('SELECT count() FROM otel_traces'):>10,}  "
                  f"metric rows {store.scalar(f'SELECT count() FROM {METRICS_TABLE}'):>10,}")
        for baseline in ("last", "green"):
            policy = parse_policy(POLICY.replace("{commit}", commit).replace(
                "{green}", "true" if baseline == "green" else "false"), "bench.toml")
            times: dict[str, list[float]] = {name: [] for name in gates}
            results = {name: gate(store, policy, record=False, env={}) for name, gate in gates.items()}  # warm-up
            for _ in range(args.repeat):
                for name, gate in gates.items():
                    t = time.perf_counter()
                    results[name] = gate(store, policy, record=False, env={})
                    times[name].append(time.perf_counter() - t)
            for name in gates:
                r = results[name]
                line = (f"{counts}  baseline {baseline:<5}  {name:<16}  {len(r.runs)} runs vs {len(r.baseline)}  "
                        f"gate p50 {statistics.median(times[name]):6.3f} s  p95 {_quantile(times[name], 0.95):6.3f} s  "
                        f"verdict {r.verdict}")
                print(line, flush=True)
                lines.append(line)
            if len(gates) == 2:
                before, now = times.values()
                ratio = statistics.median(b / n for b, n in zip(before, now, strict=True))
                a, b = results.values()
                same = ([x.verdict for x in a.checks] == [x.verdict for x in b.checks]
                        and sorted(x.run_id for x in a.baseline) == sorted(x.run_id for x in b.baseline))
                line = f"{'':>60}  baseline {baseline:<5}  before/now {ratio:5.1f}x (median of per-round ratios); same verdicts and baseline: {same}"
                print(line, flush=True)
                lines.append(line)
            if size == sizes[-1]:
                for name, gate in gates.items():
                    with QueryTimer(store) as timer:
                        gate(store, policy, record=False, env={})
                    lines.append(f"  one gate, baseline {baseline}, {name}: {len(timer.calls)} queries, "
                                 f"{sum(t for t, _, _ in timer.calls) * 1000:.0f} ms in queries")
                    lines += [f"    {t * 1000:8.1f} ms  {n:>7,} rows  {label}" for t, label, n in timer.calls]
                    print("\n".join(lines[-len(timer.calls) - 1:]), flush=True)
    lines.append(f"# load average at end {os.getloadavg()[0]:.1f}")
    if not args.no_write:
        out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "gate.txt")
        with open(out, "a") as fh:
            fh.write("\n" + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
