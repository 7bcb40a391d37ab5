"""Dashboard page loads over a large store: p50 and p95 of every query each page runs.

Data: runs of about 100 spans in our conventions (a run span, a supervisor, 6-14 delegations
each with an output and a decision event, a worker with model calls, tools, a verification),
with findings (about 1.5 per run), run/agent/pair metrics (33 rows a run, every mode's failure
rate among them, as ``compute_metrics`` stores them), detection state and gate results
(one gate per commit of 4 runs), spread over 30 days on 4 branches. Span rows are built with
``SpanBatch``: 40 template runs, then replicated column-wise with new trace ids and start
times (generation in Python per span would take longer than the benchmark), and each run's
own run span is appended through ``SpanBatch`` so the runs view fills as in production.

Each page's queries are timed as the page runs them on first load (no Streamlit cache), on
the embedded engine (chDB in this process) and through the store's ClickHouse HTTP endpoint
(clickhouse-connect), at each size; the store grows from one size to the next.

    python bench/dashboard.py                                  # 1M, 2M, 4M spans; both engines
    python bench/dashboard.py --sizes 200000 --repeat 3 --no-write
    python bench/dashboard.py --sizes 1000000,4000000,16000000 --before REV
        # also each query as it was at REV, alternating with this checkout's: the ratio
    python bench/dashboard.py --sizes 1000000,4000000,16000000 --rejudged
        # at each size, every finding and metric written again first, as `handoffs detect
        # --full` on a judged store writes them (findings in a second version, metrics deleted
        # and written again), the pages timed as that leaves the store (the rows awaiting the
        # engine's merges are counted), then again once versions are merged as the pass now does
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numpy as np
import pyarrow as pa

from handoffs import conventions as C
from handoffs import taxonomy as T
from handoffs.dashboards import queries
from handoffs.gate.policy import FAIL, PASS
from handoffs.store import Event, SpanBatch, Store, schema
from handoffs.store.engines import ChdbEngine, HttpEngine
from handoffs.store.sharing import open_embedded, owned_endpoint
from handoffs.store.url import StoreURL

sys.path.insert(0, str(Path(__file__).resolve().parent))
import record  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "dashboard.txt"
DAY_NS = 86_400 * 10**9
SPREAD_DAYS = 30
TEMPLATES = 40
RUNS_PER_COMMIT = 4
BRANCHES = ("main", "main", "feature/router", "fix/verify")
WORKERS = ("coder", "tester", "writer", "researcher")
CHUNK_RUNS = 1000  # runs per INSERT (about 100k spans: one part each)
PROJECT = "bench"
MODES = [m.code for m in T.MODES]


# --- data ------------------------------------------------------------------------------------

def _template(rng: random.Random) -> tuple[pa.Table, list[str], list[str]]:
    """One run's spans except the run span (ids relative to the trace, times from 0).

    Returns the table, its span ids and the agents it names (findings point at them).
    """
    batch = SpanBatch()
    res = {C.SERVICE_NAME: "agent-team", C.RESOURCE_PROJECT: PROJECT, C.RESOURCE_SYSTEM: "billing-bot"}
    counter = iter(range(2, 10**6))
    t = 0
    ids: list[str] = []

    def span(name: str, parent: str, attrs: dict[str, str], dur: int, **kw: object) -> str:
        nonlocal t
        sid = f"{next(counter):016x}"
        t += rng.randrange(10**6, 5 * 10**7)
        batch.append(trace_id="", span_id=sid, parent_span_id=parent, name=name, start_ns=t,
                     duration_ns=dur, service_name="agent-team", resource_attributes=res,
                     attributes=attrs, **kw)  # type: ignore[arg-type]
        ids.append(sid)
        return sid

    root = f"{1:016x}"
    sup = span("invoke_agent supervisor", root, {C.SPAN_TYPE: C.SpanType.AGENT.value,
                                                 C.GEN_AI_AGENT_NAME: "supervisor", C.STEP: "0"}, 10**10)
    step = 0
    for _ in range(rng.randrange(6, 15)):
        worker = rng.choice(WORKERS)
        step += 1
        action = rng.choices([a.value for a in C.DecisionAction], [70, 10, 12, 5, 3])[0]
        failed = rng.random() < 0.05
        deleg = span(C.delegation_span_name(worker), sup, {
            C.SPAN_TYPE: C.SpanType.DELEGATION.value, C.SOURCE_AGENT: "supervisor",
            C.TARGET_AGENT: worker, C.STEP: str(step), C.TASK: f"build the {worker} part",
            C.DELEGATION_STATUS: (C.DelegationStatus.FAILED if failed else C.DelegationStatus.COMPLETED).value,
            C.GEN_AI_USAGE_OUTPUT_TOKENS: str(rng.randrange(50, 3000))},
            rng.randrange(10**8, 10**10), status_code="Error" if failed else "Ok",
            events=[Event(t + 1, C.EVENT_OUTPUT, {C.OUTPUT_TOKENS: "120", C.OUTPUT_UNIT_COMPLETE: "true"}),
                    Event(t + 2, C.EVENT_DECISION, {C.DECISION_ACTION: action,
                                                    C.DECISION_AGENT: "supervisor"})])
        agent = span(f"invoke_agent {worker}", deleg, {C.SPAN_TYPE: C.SpanType.AGENT.value,
                                                       C.GEN_AI_AGENT_NAME: worker, C.STEP: str(step)},
                     rng.randrange(10**8, 10**10))
        for _ in range(rng.randrange(2, 5)):
            step += 1
            span("chat gpt-4o-mini", agent, {
                C.SPAN_TYPE: C.SpanType.LLM.value, C.GEN_AI_AGENT_NAME: worker, C.STEP: str(step),
                C.GEN_AI_USAGE_INPUT_TOKENS: str(rng.randrange(200, 8000)),
                C.GEN_AI_USAGE_OUTPUT_TOKENS: str(rng.randrange(20, 2000))}, rng.randrange(10**8, 10**10))
        for _ in range(rng.randrange(1, 3)):
            step += 1
            span("execute_tool run_tests", agent, {C.SPAN_TYPE: C.SpanType.TOOL.value,
                                                   C.GEN_AI_AGENT_NAME: worker, C.STEP: str(step)},
                 rng.randrange(10**6, 10**9), status_code="Error" if rng.random() < 0.03 else "Unset")
        step += 1
        span("handoffs.verify unit tests", sup, {
            C.SPAN_TYPE: C.SpanType.VERIFICATION.value, C.GEN_AI_AGENT_NAME: "supervisor",
            C.VERIFICATION_VERDICT: rng.choice(("pass", "pass", "fail")), C.STEP: str(step)},
            rng.randrange(10**7, 10**9))
    return batch.to_arrow(), ids, ["supervisor", *WORKERS]


class Generator:
    """Appends runs to a store: spans (templates replicated), run spans, findings, metrics, gates."""

    def __init__(self, store: Store, seed: int = 7) -> None:
        self.store = store
        self.rng = random.Random(seed)
        self.np_rng = np.random.default_rng(seed)
        self.templates = [_template(self.rng) for _ in range(TEMPLATES)]
        self.now = time.time_ns()
        self.runs = 0
        self.spans = 0

    def add_runs(self, n: int) -> None:
        for first in range(0, n, CHUNK_RUNS):
            self._chunk(min(CHUNK_RUNS, n - first))

    def _chunk(self, n: int) -> None:
        rng = self.rng
        picks = [rng.randrange(TEMPLATES) for _ in range(n)]
        numbers = range(self.runs, self.runs + n)
        traces = [f"{rng.getrandbits(128):032x}" for _ in numbers]
        starts = sorted(self.now - rng.randrange(SPREAD_DAYS * DAY_NS) for _ in numbers)
        run_ids = [f"run-{i:07d}" for i in numbers]
        commits = [f"{(i // RUNS_PER_COMMIT) * 2654435761 % 16**10:010x}" for i in numbers]
        branches = [BRANCHES[(i // RUNS_PER_COMMIT) % len(BRANCHES)] for i in numbers]

        body = pa.concat_tables([self.templates[p][0] for p in picks])
        lengths = np.array([self.templates[p][0].num_rows for p in picks])
        trace_col = pa.array(np.repeat(np.array(traces, dtype=object), lengths), pa.string())
        ts = body.column("Timestamp").cast(pa.int64()).to_numpy() + np.repeat(starts, lengths)
        body = body.set_column(body.schema.get_field_index("TraceId"), "TraceId", trace_col)
        body = body.set_column(body.schema.get_field_index("Timestamp"), "Timestamp",
                               pa.array(ts, pa.int64()).cast(pa.timestamp("ns")))

        run_spans = SpanBatch()
        res = {C.SERVICE_NAME: "agent-team", C.RESOURCE_PROJECT: PROJECT, C.RESOURCE_SYSTEM: "billing-bot"}
        for trace, start, run_id, commit, branch in zip(traces, starts, run_ids, commits, branches,
                                                        strict=True):
            run_spans.append(
                trace_id=trace, span_id=f"{1:016x}", name="handoffs.run nightly", start_ns=start,
                duration_ns=rng.randrange(10, 300) * 10**9, service_name="agent-team",
                resource_attributes=res, status_code="Ok",
                attributes={C.SPAN_TYPE: C.SpanType.RUN.value, C.RUN_ID: run_id, C.RUN_NAME: "nightly",
                            C.RUN_COMMIT: commit, C.RUN_BRANCH: branch, C.RUN_TOPOLOGY: "centralized",
                            C.RUN_TAGS: json.dumps(["nightly", branch.split("/")[0]])})
        self.store.insert_spans(pa.concat_tables([run_spans.to_arrow(), body]))
        self.spans += body.num_rows + n

        self._findings(picks, traces, run_ids)
        self._metrics(run_ids)
        self.store.insert(schema.DETECTED_TABLE, pa.table({
            "project": [PROJECT] * n, "trace_id": traces, "detector_version": ["bench"] * n,
            "span_count": pa.array(lengths + 1, pa.uint64())}))
        self._gates(run_ids, commits, branches)
        self.runs += n

    def _findings(self, picks: list[int], traces: list[str], run_ids: list[str]) -> None:
        rows: dict[str, list] = {k: [] for k in (
            "project", "run_id", "trace_id", "source_id", "code", "name", "category", "agent",
            "step", "span_id", "confidence", "evidence", "detector", "detector_version")}
        for pick, trace, run_id in zip(picks, traces, run_ids, strict=True):
            _, span_ids, agents = self.templates[pick]
            for _ in range(self.np_rng.poisson(1.5)):
                mode = T.BY_CODE[self.rng.choice(MODES)]
                step = self.rng.randrange(1, 30)
                for key, value in (("project", PROJECT), ("run_id", run_id), ("trace_id", trace),
                                   ("source_id", ""), ("code", mode.code), ("name", mode.name),
                                   ("category", mode.category), ("agent", self.rng.choice(agents)),
                                   ("step", step), ("span_id", self.rng.choice(span_ids)),
                                   ("confidence", self.rng.random()),
                                   ("evidence", f"{mode.name} around step {step}"),
                                   ("detector", "bench"), ("detector_version", "bench")):
                    rows[key].append(value)
        table = pa.table(rows)
        self.store.insert(schema.FINDINGS_TABLE, table.set_column(
            table.schema.get_field_index("step"), "step", table.column("step").cast(pa.int32())))

    def _metrics(self, run_ids: list[str]) -> None:
        rows: dict[str, list] = {k: [] for k in ("project", "run_id", "scope", "subject", "metric",
                                                 "value", "numerator", "denominator")}

        def add(run_id: str, scope: str, subject: str, metric: str, num: float, den: float) -> None:
            for key, value in (("project", PROJECT), ("run_id", run_id), ("scope", scope),
                               ("subject", subject), ("metric", metric),
                               ("value", num / den if den else num), ("numerator", num),
                               ("denominator", den)):
                rows[key].append(value)

        for run_id in run_ids:
            r = self.rng
            add(run_id, T.SCOPE_RUN, run_id, T.OVERWRITE_RATE, r.randrange(0, 5), 10)
            add(run_id, T.SCOPE_RUN, run_id, T.TOKENS_BEFORE_INTERRUPTION, r.randrange(20, 900), 1)
            add(run_id, T.SCOPE_RUN, run_id, T.AUTONOMOUS_COMPLETION_RATE, r.randrange(4, 11), 10)
            add(run_id, T.SCOPE_RUN, run_id, T.ERROR_AMPLIFICATION, r.random() * 5, 1)
            add(run_id, T.SCOPE_RUN, run_id, T.COORDINATION_OVERHEAD, r.random(), 1)
            for worker in WORKERS[:3]:
                add(run_id, T.SCOPE_PAIR, f"supervisor->{worker}", T.OVERWRITE_RATE, r.randrange(0, 3), 3)
                add(run_id, T.SCOPE_AGENT, worker, T.ERROR_AMPLIFICATION, r.random() * 4, 1)
            # Every mode's failure rate, zeros included, as compute_metrics stores them: most of
            # a run's metric rows (44 a run on a store judged by `handoffs detect --full`).
            for mode in T.MODES:
                add(run_id, T.SCOPE_RUN, run_id, T.failure_rate_metric(mode.code), float(r.random() < 0.07), 1)
        self.store.insert(schema.METRICS_TABLE, pa.table(rows))

    def _gates(self, run_ids: list[str], commits: list[str], branches: list[str]) -> None:
        by_commit: dict[str, list[str]] = {}
        for run_id, commit in zip(run_ids, commits, strict=True):
            by_commit.setdefault(commit, []).append(run_id)
        branch_of = dict(zip(commits, branches, strict=True))
        checks = ("overwrite_rate <= 0.3", "error-cascade runs", "autonomy >= 0.5")
        rows: dict[str, list] = {k: [] for k in ("project", "gate_id", "policy", "check_name", "severity",
                                                 "verdict", "run_ids", "commit", "branch", "message")}
        for commit, runs in by_commit.items():
            for check in checks:
                verdict = FAIL if self.rng.random() < 0.15 else PASS
                for key, value in (("project", PROJECT), ("gate_id", f"gate-{commit}"),
                                   ("policy", "handoffs.toml"), ("check_name", check),
                                   ("severity", FAIL), ("verdict", verdict), ("run_ids", runs),
                                   ("commit", commit), ("branch", branch_of[commit]),
                                   ("message", f"{check}: {verdict}")):
                    rows[key].append(value)
        self.store.insert(schema.GATE_TABLE, pa.table(rows))


def rejudge(store: Store) -> None:
    """Every finding and metric row written again, as a full pass of ``handoffs detect`` over a
    judged store writes them, before it merges versions: findings and detection marks in a
    newer version (same keys, same values), metrics deleted and inserted again (``MetricSums``
    deletes the old rows outright when it writes more than ``_FEW_RUNS`` runs)."""
    for table in (schema.FINDINGS_TABLE, schema.DETECTED_TABLE, schema.METRICS_TABLE):
        columns = ", ".join(r["name"] for r in store.query(
            "SELECT name FROM system.columns WHERE database = currentDatabase() AND table = {t:String} "
            "AND default_kind = '' ORDER BY position", {"t": table}))
        if table != schema.METRICS_TABLE:
            store.command(f"INSERT INTO {table} ({columns}) SELECT {columns} FROM {table} FINAL")
            continue
        copy = f"{table}_bench_copy"
        store.command(f"CREATE TABLE {copy} ENGINE = Memory AS SELECT {columns} FROM {table} FINAL")
        try:
            store.command(f"DELETE FROM {table} WHERE run_id IN (SELECT DISTINCT run_id FROM {copy})")
            store.command(f"INSERT INTO {table} ({columns}) SELECT {columns} FROM {copy}")
        finally:
            store.command(f"DROP TABLE {copy}")


def awaiting_merges(store: Store) -> str:
    """What reads still have to skip in the finding and metric tables: older versions (FINAL
    merges them away) and deleted rows (the delete's mask hides them), until the engine merges."""
    parts = []
    for table, label in ((schema.FINDINGS_TABLE, "finding"), (schema.METRICS_TABLE, "metric")):
        rows = int(store.scalar(f"SELECT count() FROM {table}"))
        kept = int(store.scalar(f"SELECT count() FROM {table} FINAL"))
        stored = int(store.scalar("SELECT sum(rows) FROM system.parts WHERE active AND database = currentDatabase() "
                                  "AND table = {t:String}", {"t": table}) or 0)
        parts.append(f"{label} rows: {kept:,} current, {rows - kept:,} older versions, "
                     f"{stored - rows:,} deleted")
    return "; ".join(parts)


# --- pages -----------------------------------------------------------------------------------

Query = tuple[str, Callable[[Store], object]]


def page_queries(store: Store, q: ModuleType = queries) -> dict[str, list[Query]]:
    """What each page runs on first load with the default filters (all time, all projects), with
    the query functions of ``q`` (this checkout's, or an earlier revision's: ``queries_at``)."""
    latest = queries.runs(store, limit=100)
    # The run detail of the most flagged of the latest runs; compare: the two latest commits.
    run = latest.sort_values("findings", ascending=False).iloc[0]
    commits = queries.commits(store, "", 0)["commit"].tolist()[:2]
    side_b, side_a = (queries.runs_of_commit(store, "", c) for c in commits)
    return {
        "runs": [
            ("store_state", q.store_state),
            ("filter_options", lambda s: q.filter_options(s, "")),
            ("runs (latest 100)", lambda s: q.runs(s)),
        ],
        "run detail": [
            ("run_list (picker)", lambda s: q.run_list(s, "", 200)),
            ("runs (the run)", lambda s: q.runs(s, run=run["run_id"], limit=1)),
            ("run_checks", lambda s: q.run_checks(s, run["run_id"])),
            ("run_findings", lambda s: q.run_findings(s, run["run_id"], run["trace_id"])),
            ("trace_spans", lambda s: q.trace_spans(s, run["trace_id"])),
            ("handoff_edges", lambda s: q.handoff_edges(s, [run["trace_id"]])),
        ],
        "agents": [
            ("supervisor_overwrites", lambda s: q.supervisor_overwrites(s, "", 0)),
            ("cascade_roots", lambda s: q.cascade_roots(s, "", 0)),
            ("agent_modes", lambda s: q.agent_modes(s, "", 0)),
            ("agent_metrics", lambda s: q.agent_metrics(s, "", 0, T.SCOPE_AGENT)),
        ],
        "failure modes": [
            ("mode_heatmap", lambda s: q.mode_heatmap(s, "", 0, "system")),
            ("mode_trend", lambda s: q.mode_trend(s, "", 0)),
        ],
        "compare (2 commits)": [
            ("commits", lambda s: q.commits(s, "", 0)),
            ("runs_of_commit x2", lambda s: [q.runs_of_commit(s, "", c) for c in commits]),
            ("compare_sides", lambda s: q.compare_sides(s, side_a, side_b)),
        ],
    }


def queries_at(rev: str) -> ModuleType:
    """``dashboards/queries.py`` as it was at ``rev``, loaded beside this checkout's (what it
    imports is this checkout's): the page queries of both, timed in the same run."""
    source = subprocess.run(["git", "-C", str(Path(__file__).parent), "show", f"{rev}:dashboards/queries.py"],
                            check=True, capture_output=True, text=True).stdout
    module = ModuleType(f"queries_at_{rev}")
    exec(compile(source, f"{rev}:dashboards/queries.py", "exec"), module.__dict__)
    return module


def versus(store: Store, now: dict[str, list[Query]], before: dict[str, list[Query]], repeat: int
           ) -> list[tuple[str, str, list[float], list[float]]]:
    """Per query: ``repeat`` wall times in ms of this checkout's and an earlier revision's, the
    two alternating (which goes first alternates too)."""
    out = []
    for page, qs in now.items():
        for (name, fn), (_, old) in zip(qs, before[page], strict=True):
            fn(store), old(store)  # warm-up
            times: dict[str, list[float]] = {"now": [], "before": []}
            for i in range(repeat):
                for label, run in sorted((("now", fn), ("before", old)), reverse=i % 2 == 1):
                    t0 = time.perf_counter()
                    run(store)
                    times[label].append((time.perf_counter() - t0) * 1000)
            out.append((page, name, times["before"], times["now"]))
    return out


def measure(store: Store, pages: dict[str, list[Query]], repeat: int
            ) -> list[tuple[str, str, list[float], list[float]]]:
    """Per query and per page (the sum of its queries): ``repeat`` wall and CPU times in ms.

    CPU time is this process's (chDB runs here, and so does the HTTP endpoint): on a shared
    machine it moves much less with other people's load than wall time does.
    """
    out = []
    for page, qs in pages.items():
        wall_total, cpu_total = np.zeros(repeat), np.zeros(repeat)
        for name, fn in qs:
            fn(store)  # warm-up: parsing, first reads of the parts' marks
            wall, cpu = [], []
            for _ in range(repeat):
                t0, c0 = time.perf_counter(), time.process_time()
                fn(store)
                wall.append((time.perf_counter() - t0) * 1000)
                cpu.append((time.process_time() - c0) * 1000)
            wall_total += wall
            cpu_total += cpu
            out.append((page, name, wall, cpu))
        out.append((page, "= page total", list(wall_total), list(cpu_total)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000000,2000000,4000000",
                        help="span counts to measure at, ascending (the store grows)")
    parser.add_argument("--repeat", type=int, default=9, help="timed repetitions per query")
    parser.add_argument("--engines", default="chdb,http", help="chdb and/or http")
    parser.add_argument("--dir", default=None, help="chDB directory (default: a temp dir, removed)")
    parser.add_argument("--no-write", action="store_true", help=f"do not write {RESULTS}")
    parser.add_argument("--before", metavar="REV", help="also time each query as it was at this git revision, "
                        "alternating with this checkout's")
    parser.add_argument("--rejudged", action="store_true", help="at each size, write every finding and metric "
                        "again first (a full `handoffs detect` pass over a judged store)")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    engines = args.engines.split(",")

    path = Path(args.dir or tempfile.mkdtemp(prefix="handoffs-bench-dashboard-"))
    open_embedded(StoreURL("chdb", path=path))  # own the directory and serve the endpoint
    database = "bench_dashboard"
    url = StoreURL("chdb", path=path, database=database)
    store = Store(ChdbEngine(path, database), url)
    store.migrate()
    stores = {"chdb": store}
    if "http" in engines:
        ep = owned_endpoint(path)
        assert ep is not None
        http_url = StoreURL("clickhouse", host=ep.host, port=ep.port, password=ep.password,
                            database=database, options={"compress": "0"})
        stores["http"] = Store(HttpEngine(http_url), http_url)

    gen = Generator(store)
    lines = [
        *record.header("dashboard.py", None, f"chdb {__import__('chdb').__version__}"),
        f"# wall p50 / p95 and CPU p50 in ms over {args.repeat} repetitions after one warm-up; "
        "queries run as each page runs them on first load (no Streamlit cache); "
        "target: every page < 1000 ms",
    ]
    print("\n".join(lines), flush=True)
    for size in sizes:
        t0 = time.perf_counter()
        while gen.spans < size:
            per_run = max(1, gen.spans // max(gen.runs, 1)) if gen.runs else 100
            gen.add_runs(max(1, min(CHUNK_RUNS * 5, (size - gen.spans) // per_run + 1)))
        store.command(f"OPTIMIZE TABLE {schema.RUNS_TABLE} FINAL")
        if args.rejudged:
            rejudge(store)
        header = (f"\n## {gen.spans:,} spans, {gen.runs:,} runs "
                  f"(generated and inserted in {time.perf_counter() - t0:.0f} s; "
                  f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
        if args.rejudged:
            header += f"\n# every finding and metric written again, as a full pass writes them: {awaiting_merges(store)}"
        print(header, flush=True)
        lines.append(header)
        pages = page_queries(store)
        states = ["as written", "merged"] if args.rejudged else [""]
        width = len("as written ") if args.rejudged else 0  # a column of its own before the page
        for state in states:
            if state == "merged":
                t1 = time.perf_counter()
                merged = store.merge_versions(schema.FINDINGS_TABLE, schema.DETECTED_TABLE, schema.METRICS_TABLE)
                lines.append(f"# versions merged as the pass now does ({', '.join(merged)}) in "
                             f"{time.perf_counter() - t1:.1f} s: {awaiting_merges(store)}")
                print(lines[-1], flush=True)
            for engine in engines:
                for page, name, wall, cpu in measure(stores[engine], pages, args.repeat):
                    p50, p95 = np.percentile(wall, [50, 95])
                    row = (f"{engine:5} {state:{width}}{page:20} {name:24} p50 {p50:8.1f}  p95 {p95:8.1f}"
                           f"   cpu p50 {np.percentile(cpu, 50):8.1f}")
                    print(row, flush=True)
                    lines.append(row)
            if state == "as written":
                lines.append(f"# after the measures above, {awaiting_merges(store)}")
                print(lines[-1], flush=True)
        if args.before:
            earlier = page_queries(store, queries_at(args.before))
            for engine in engines:
                for page, name, old, now in versus(stores[engine], pages, earlier, args.repeat):
                    ratio = np.median([b / n for b, n in zip(old, now, strict=True)])
                    row = (f"{engine:5} {page:20} {name:24} {args.before} p50 {np.median(old):8.1f}  now p50 "
                           f"{np.median(now):8.1f}  now faster by {ratio:.2f}x")
                    print(row, flush=True)
                    lines.append(row)
    if not args.no_write:
        record.append(RESULTS, lines)  # earlier runs stay in the file beside this one
        print(f"\nwrote {RESULTS}")
    if args.dir is None:
        shutil.rmtree(path, ignore_errors=True)


if __name__ == "__main__":
    main()
