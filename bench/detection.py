"""Detection throughput: spans per second judged by ``detect``, full and incremental, at 3 sizes.

The spans come from the demo simulator (``handoffs.demo.simulate``, through the real SDK into
the store) for a seed of runs; simulating millions of spans that way would take hours here, so
the seed runs are then replicated inside ClickHouse (``INSERT ... SELECT`` with fresh trace and
run ids) up to each size. Replicas are whole demo traces, so detectors do the same work per
span as on simulated ones.

At each size:
- full: every trace judged from scratch (``detect_pending(incremental=False)``): spans / second,
  and where the time went (the pipeline's stages, summed over chunks);
- the command: ``handoffs detect --full --format jsonl`` as a user runs it, with the seed
  metrics it computes by default, in seconds and spans per second; then, one more run added,
  ``handoffs detect --format jsonl`` (incremental) as a CI job runs it after each build, and with
  ``--new`` (only the traces judged now reported); and the gate's detection step (``handoffs
  gate`` runs the detectors first by default), with one new run and with nothing new, and for a
  build of 20 runs against the previous build's 20, against computing every compared run's
  metrics again (as it did before 2026-12-03);
- incremental: one newly simulated run added on top, then ``detect_pending()``: seconds taken
  (the target is a cost that does not grow with the store);
- for scale, what the engine alone takes to read one attribute of every span and to group every
  span by trace, and to compute the normalised shape of every span (its span and event views,
  into a Null table: no detector runs, nothing is kept): the floor under any detector set that
  reads the attribute maps at detection time, against the CPU a pass at 1M spans/s may spend.

    python bench/detection.py                          # 1M, 3M, 10M spans
    python bench/detection.py --before 568bc79 --sizes 1000000 3000000 --rounds 2
                       # full detection and one trace judged again, then the command (a full
                       # pass, and with nothing new, which reads every stored trace back), then
                       # the gate's detection step on builds of 20 runs, of an earlier revision
                       # and of this one, alternating on the same store, in separate processes:
                       # the ratio per round and each command's peak memory
    python bench/detection.py --sizes 250000 1000000   # other sizes
    python bench/detection.py --sizes 1000000 --by-detector
                       # also: one chunk's cost by detector, and planning the structural statement
Results go to bench/results/detection.txt with the command and the date.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import record

from handoffs import conventions as c
from handoffs.detectors import detect, detect_pending
from handoffs.detectors.pipeline import STAGE_MESSAGE
from handoffs.store import Store, open_store, schema

RESULTS = Path(__file__).parent / "results" / "detection.txt"
SEED_TABLE = "bench_seed_spans"

_COLUMNS = ("Timestamp, TraceId, SpanId, ParentSpanId, TraceState, SpanName, SpanKind, ServiceName, "
            "ResourceAttributes, ScopeName, ScopeVersion, SpanAttributes, Duration, StatusCode, "
            "StatusMessage, `Events.Timestamp`, `Events.Name`, `Events.Attributes`, `Links.TraceId`, "
            "`Links.SpanId`, `Links.TraceState`, `Links.Attributes`")


def seed(store: Store, runs: int) -> int:
    """Simulate ``runs`` demo runs and keep a copy of their spans to replicate from."""
    from handoffs.demo import simulate

    simulate(runs, seed=1, store=store)
    store.command(f"CREATE TABLE IF NOT EXISTS {SEED_TABLE} AS {schema.SPAN_TABLE} "
                  "ENGINE = MergeTree ORDER BY TraceId")
    store.command(f"INSERT INTO {SEED_TABLE} SELECT * FROM {schema.SPAN_TABLE}")
    return int(store.scalar(f"SELECT count() FROM {SEED_TABLE}"))


def grow(store: Store, target: int, seed_spans: int, copy_base: int) -> int:
    """Add replicas of the seed runs until the span table holds about ``target`` spans."""
    have = int(store.scalar(f"SELECT count() FROM {schema.SPAN_TABLE}"))
    copies = max(0, round((target - have) / seed_spans))
    batch = max(1, 200_000 // seed_spans)  # about 200k rows per INSERT
    done = 0
    while done < copies:
        n = min(batch, copies - done)
        store.command(f"""
            INSERT INTO {schema.SPAN_TABLE} ({_COLUMNS})
            SELECT Timestamp, lower(hex(sipHash128(TraceId, k))), SpanId, ParentSpanId, TraceState,
                SpanName, SpanKind, ServiceName, ResourceAttributes, ScopeName, ScopeVersion,
                if(mapContains(SpanAttributes, '{c.RUN_ID}'),
                   mapUpdate(SpanAttributes, map('{c.RUN_ID}',
                       concat(SpanAttributes['{c.RUN_ID}'], '-r', toString(k)))),
                   SpanAttributes),
                Duration, StatusCode, StatusMessage, `Events.Timestamp`, `Events.Name`,
                `Events.Attributes`, `Links.TraceId`, `Links.SpanId`, `Links.TraceState`, `Links.Attributes`
            FROM {SEED_TABLE}, (SELECT number + {{base:UInt64}} AS k FROM numbers({{n:UInt64}})) AS copies
            """, {"base": copy_base + done, "n": n})
        done += n
    return copy_base + copies


@contextlib.contextmanager
def bench_store(directory: Path | None, prefix: str) -> Iterator[Store]:
    """The store a benchmark fills and measures: ``directory`` (kept), or a temporary one
    removed afterwards."""
    workdir = directory or Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield open_store(f"chdb://{workdir}")
    finally:
        if directory is None:
            shutil.rmtree(workdir, ignore_errors=True)


def grown(store: Store, seed_spans: int, sizes: list[int]) -> Iterator[str]:
    """Grow the store to each of ``sizes`` in turn (replicas of the seed), yielding its label."""
    base = 0
    for size in sorted(sizes):
        base = grow(store, size, seed_spans, base)
        yield f"{size / 1e6:g}M"


class StageTimes(logging.Handler):
    """Sums the seconds of the pipeline's ``stage`` debug lines, by stage."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.seconds: dict[str, float] = {}

    def emit(self, line: logging.LogRecord) -> None:
        if line.msg == STAGE_MESSAGE and isinstance(line.args, tuple):
            name, seconds = line.args
            self.seconds[name] = self.seconds.get(name, 0.0) + seconds


def peak_mib() -> float:
    """This process's peak resident memory (VmHWM) in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


class PeakRss:
    """This process's resident memory as the block starts and its peak while it runs: VmHWM,
    reset on entry through ``/proc/self/clear_refs`` so that building the store does not count."""

    def __enter__(self) -> PeakRss:
        Path("/proc/self/clear_refs").write_text("5")  # 5: reset the peak to the current RSS
        self.before = peak_mib()
        return self

    def __exit__(self, *exc: object) -> None:
        self.peak = peak_mib()


def seconds(work: Callable[[], object]) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def timed(store: Store, sql: str) -> float:
    return seconds(lambda: store.query(sql))


class LineCount(io.TextIOBase):
    """A stdout that counts the lines written and keeps none of them (a pipe to ``wc -l``), so
    that a command's memory is its own, not its captured output's."""

    def __init__(self) -> None:
        self.lines = 0

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self.lines += text.count("\n")
        return len(text)


def detect_command(url: str, *args: str) -> tuple[float, int, PeakRss]:
    """``handoffs detect ARGS --format jsonl`` as a user runs it, in this process (the store's
    owner): seconds taken, JSON lines printed, and resident memory before and at its peak."""
    from handoffs.cli import main

    sink = LineCount()
    started = time.perf_counter()
    with PeakRss() as memory, contextlib.redirect_stdout(sink):
        try:
            main(["detect", *args, "--format", "jsonl", "--store", url])
        except SystemExit as exc:
            if exc.code:
                raise RuntimeError(f"handoffs detect {' '.join(args)} exited with {exc.code}") from exc
    return time.perf_counter() - started, sink.lines, memory


def measure(store: Store, size_label: str, out: list[str], detectors: bool = False) -> None:
    from handoffs.demo import simulate

    spans = int(store.scalar(f"SELECT count() FROM {schema.SPAN_TABLE}"))
    traces = int(store.scalar(f"SELECT uniqExact(TraceId) FROM {schema.SPAN_TABLE}"))
    stages = StageTimes()
    logger = logging.getLogger("handoffs.detectors")
    logger.addHandler(stages)
    logger.setLevel(logging.DEBUG)
    cpu = cpu_seconds()
    started = time.perf_counter()
    try:
        with PeakRss() as memory:
            judged = detect_pending(store, incremental=False)
    finally:
        logger.removeHandler(stages)
        logger.setLevel(logging.NOTSET)  # the commands below log as a user's would
    full = time.perf_counter() - started
    cpu_s = cpu_seconds() - cpu
    findings = sum(len(tf.findings) for tf in judged)
    simulate(1, seed=99, store=store)
    started = time.perf_counter()
    fresh = detect_pending(store)
    incremental = time.perf_counter() - started
    line = (f"{size_label:>10}  spans {spans:>10,}  traces {traces:>8,}  full {full:8.1f} s "
            f"= {spans / full:>10,.0f} spans/s  ({findings:,} findings)  "
            f"incremental (1 new run, {len(fresh)} trace judged) {incremental:6.2f} s")
    print(line, flush=True)
    out.append(line)
    shares = ", ".join(f"{name} {sec:.1f} s ({sec / full:.0%})"
                       for name, sec in sorted(stages.seconds.items(), key=lambda kv: -kv[1]))
    out.append(f"{'':>12}where the full pass went: {shares}; process CPU {cpu_s:.1f} s "
               f"({cpu_s / full:.2f} cores); resident memory {memory.before:,.0f} MiB before the pass, "
               f"peak {memory.peak:,.0f} MiB during it")
    print(out[-1], flush=True)
    if detectors:
        by_detector(store, out)
    one_key = min(timed(store, f"SELECT count() FROM {schema.SPAN_TABLE} "
                               f"WHERE SpanAttributes['{c.SPAN_TYPE}'] = '{c.SpanType.DELEGATION.value}'")
                  for _ in range(3))
    by_trace = min(timed(store, f"SELECT count() FROM (SELECT TraceId, count() FROM {schema.SPAN_TABLE} "
                                "GROUP BY TraceId)") for _ in range(3))
    floor = shape_floor(store, spans, full, cpu_s)
    # The command a user runs: detection of every trace, the seed metrics of every run (its
    # default) and one JSON line per trace.
    url = f"chdb://{store.url.path}?database={store.url.database}"
    command, lines, memory = detect_command(url, "--full")
    out.append(f"{'':>12}the command, `handoffs detect --full --format jsonl` (with the seed metrics, its "
               f"default): {command:.1f} s = {spans / command:,.0f} spans/s, {lines:,} JSON lines; "
               f"resident memory {memory.before:,.0f} MiB before it, peak {memory.peak:,.0f} MiB")
    print(out[-1], flush=True)
    # And as a CI job runs it after each build: incremental, one new run on top.
    simulate(1, seed=98, store=store)
    # (No memory figure: this process keeps what the full command reached; `--before` measures
    # the read-back's memory in processes of their own.)
    command, lines, _ = detect_command(url)
    out.append(f"{'':>12}the command incremental, one new run on top (`handoffs detect --format jsonl`, its "
               f"metrics included): {command:.2f} s, {lines:,} JSON lines (every trace's findings, judged "
               "now or before)")
    print(out[-1], flush=True)
    # As a CI job that wants only what its build added: `--new`.
    simulate(1, seed=97, store=store)
    command, lines, _ = detect_command(url, "--new")
    out.append(f"{'':>12}the same with `--new` (only the traces judged now), one more run on top: "
               f"{command:.2f} s, {lines:,} JSON line(s)")
    print(out[-1], flush=True)
    # The gate runs the detectors first (its default): with one new run, and with nothing new.
    from handoffs.gate.judge import refresh_detection
    [run] = simulate(1, seed=96, store=store)
    one_new = seconds(lambda: refresh_detection(store, [run.run_id]))
    nothing_new = seconds(lambda: refresh_detection(store, [run.run_id]))
    read_back = seconds(lambda: detect(store))
    out.append(f"{'':>12}the gate's detection step (`handoffs gate` with detect on): one new run {one_new:.2f} s, "
               f"nothing new {nothing_new:.2f} s; for scale, `detect()` with nothing new, which also reads "
               f"every stored finding back (the gate called it before 2026-12-02): {read_back:.2f} s")
    print(out[-1], flush=True)
    out.append(f"{'':>12}{upgraded_gate(store)}")
    print(out[-1], flush=True)
    out.append(f"{'':>12}{gate_builds(store)}")
    print(out[-1], flush=True)
    out.append(f"{'':>12}engine alone, best of 3: one attribute of every span {one_key:.2f} s "
               f"(= {spans / one_key:,.0f} spans/s), every span grouped by trace {by_trace:.2f} s "
               f"(= {spans / by_trace:,.0f} spans/s)")
    print(out[-1], flush=True)
    out.append(f"{'':>12}{floor}")
    print(out[-1], flush=True)


def cpu_seconds() -> float:
    """CPU used by this process so far, chDB's threads included (the engine runs in it)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def shape_floor(store: Store, spans: int, full: float, full_cpu: float) -> str:
    """What the engine alone takes to compute the normalised shape of every stored span, as a
    full pass's chunks read it (``RANGE_FILTER``, ``FINAL``), into a Null table: the attribute
    lookups every detector set reading the maps pays, with no detector run and nothing kept.
    Best of 3 in wall time, with its CPU, against the full pass measured just before."""
    from handoffs.detectors.normalise import RANGE_FILTER, TRACE_FILTER, prelude

    params = {"lo": "", "hi": "~"}  # every hex trace id
    cores = os.cpu_count() or 1
    parts = []
    for view in ("s", "ev"):
        query = prelude(f"SELECT * FROM {view}").replace(TRACE_FILTER, RANGE_FILTER) + f"SELECT * FROM {view}"
        sink = f"bench_shape_sink_{view}"
        store.command(f"DROP TABLE IF EXISTS {sink}")
        store.command(f"CREATE TABLE {sink} ENGINE = Null AS {query} LIMIT 0", params)
        try:
            runs = []
            for _ in range(3):
                before = cpu_seconds()
                took = seconds(lambda q=f"INSERT INTO {sink} {query}": store.command(q, params))
                runs.append((took, cpu_seconds() - before))
        finally:
            store.command(f"DROP TABLE IF EXISTS {sink}")
        parts.append(min(runs))
    (s_wall, s_cpu), (e_wall, e_cpu) = parts
    keys = float(store.scalar(f"SELECT avg(length(SpanAttributes)) FROM {schema.SPAN_TABLE}") or 0)
    wall, cpu = s_wall + e_wall, s_cpu + e_cpu
    return (f"the normalised shape alone, best of 3 (every span's views computed from the attribute "
            f"maps, {keys:.1f} attributes a span on average, FINAL, into a Null table; no detector, nothing "
            f"kept): spans {s_wall:.2f} s, events "
            f"{e_wall:.2f} s = {spans / wall:,.0f} spans/s, CPU {cpu:.2f} s = {cpu / spans * 1e6:.2f} us a "
            f"span; 1M spans/s on {cores} cores allows {cores:.1f} us a span, the full pass used "
            f"{full_cpu / spans * 1e6:.2f} ({full / wall:.1f}x the shape's time)")


def upgraded_gate(store: Store) -> str:
    """The gate's detection step on a store no full pass of the installed detector set has judged
    (after an upgrade, or a store never judged), one new run on top: as it is (the runs' traces,
    the rest left to ``handoffs detect``), and as it was before 2026-12-03 (every stored trace,
    ``detect_pending(store)``, then the run's metrics), each under a detector version of its own."""
    from handoffs.demo import simulate
    from handoffs.detectors import pipeline
    from handoffs.detectors.metrics import compute_metrics
    from handoffs.gate.judge import refresh_detection

    [run] = simulate(1, seed=95, store=store)
    installed = pipeline.version
    try:
        pipeline.version = lambda: "bench-upgrade-now"
        now = seconds(lambda: refresh_detection(store, [run.run_id]))
        pipeline.version = lambda: "bench-upgrade-before"
        before = seconds(lambda: (detect_pending(store), compute_metrics(store, [run.run_id])))
    finally:
        pipeline.version = installed
    return (f"the gate's detection step after a detector upgrade, one new run: {now:.2f} s (the runs' "
            f"traces; the rest left to `handoffs detect`), against {before:.1f} s judging every stored "
            f"trace as it did before: {before / now:.0f}x")


def gate_builds(store: Store, runs: int = 20, rounds: int = 3) -> str:
    """The gate's detection step as CI meets it: a build's ``runs`` new runs compared with the
    previous build's (the baseline, judged by the previous gate), build after build; as it is
    (only runs whose metrics are out of date computed) and as it was before 2026-12-03 (every
    compared run's metrics computed again), alternating which goes first, each with builds of
    its own; and the same gate run again with nothing new (a CI job retried)."""
    from handoffs.demo import simulate
    from handoffs.detectors import detect_current
    from handoffs.detectors.metrics import compute_metrics
    from handoffs.gate.judge import refresh_detection

    def now(compared: list) -> None:
        refresh_detection(store, [r.run_id for r in compared])

    def before(compared: list) -> None:
        detect_current(store, [r.trace_id for r in compared])
        compute_metrics(store, [r.run_id for r in compared])

    ways = {"now": now, "before": before}
    times: dict[str, dict[str, list[float]]] = {k: {w: [] for w in ways} for k in ("new", "again")}
    previous = simulate(runs, seed=700, store=store)
    now(previous)
    for rnd in range(rounds):
        for i, way in enumerate(sorted(ways, reverse=rnd % 2 == 1)):
            compared = simulate(runs, seed=701 + 2 * rnd + i, store=store) + previous
            for case in ("new", "again"):
                started = time.perf_counter()
                ways[way](compared)
                times[case][way].append(time.perf_counter() - started)
            previous = compared[:runs]
    med = {k: {w: statistics.median(v) for w, v in by.items()} for k, by in times.items()}
    return (f"the gate's detection step, a build of {runs} new runs against the previous build's {runs} "
            f"(median of {rounds} builds each way, alternating): {med['new']['now']:.2f} s, against "
            f"{med['new']['before']:.2f} s computing every compared run's metrics again "
            f"({med['new']['before'] / med['new']['now']:.2f}x); the same gate again, nothing new: "
            f"{med['again']['now']:.2f} s against {med['again']['before']:.2f} s "
            f"({med['again']['before'] / med['again']['now']:.2f}x)")


def by_detector(store: Store, out: list[str]) -> None:
    """Where one chunk's time goes (the first range chunk of a full pass): building its scratch,
    planning the structural statement, the statement, and each detector's query alone, best of 2."""
    from handoffs.detectors import structural
    from handoffs.detectors.normalise import RANGE_FILTER, Scratch, shaped
    from handoffs.detectors.pipeline import RANGE_TRACES

    ids = [r["t"] for r in store.query(f"SELECT DISTINCT TraceId AS t FROM {schema.SPAN_TABLE} "
                                       f"ORDER BY t LIMIT {RANGE_TRACES}")]
    started = time.perf_counter()
    with Scratch(store, RANGE_FILTER, {"lo": ids[0], "hi": ids[-1]}) as scratch:
        built = time.perf_counter() - started
        spans = int(store.scalar(f"SELECT count() FROM {scratch.spans}"))
        statement = structural.statement(scratch)
        plan = min(timed(store, "EXPLAIN PLAN " + statement) for _ in range(2))
        whole = min(timed(store, statement) for _ in range(2))
        alone = []
        for detector in structural.DETECTORS:
            if detector.sql:
                sql = shaped(detector.sql, scratch) + structural.JOIN_SETTINGS
                alone.append((min(timed(store, sql) for _ in range(2)), detector.code))
    out.append(f"{'':>12}one chunk ({len(ids):,} traces, {spans:,} spans), best of 2: scratch built {built:.2f} s; "
               f"the structural statement {whole:.2f} s, of which planning it (EXPLAIN PLAN) {plan:.2f} s; "
               f"each detector's query alone (sum {sum(t for t, _ in alone):.2f} s): "
               + ", ".join(f"{code} {t:.3f}" for t, code in sorted(alone, reverse=True)))
    print(out[-1], flush=True)


# Full detection in a process of its own, run from a checkout (this one or an earlier revision's).
_TIMED = """
import sys, time
from handoffs.store import open_store
from handoffs.detectors import detect_pending
store = open_store("chdb://" + sys.argv[1])
spans = store.scalar("SELECT count() FROM otel_traces")
started = time.perf_counter()
judged = detect_pending(store, incremental=False)
took = time.perf_counter() - started
# Then one trace at a time, judged again: what a pass costs when one new run arrived.
one = []
for tf in judged[:: max(1, len(judged) // 7)][:7]:
    started = time.perf_counter()
    detect_pending(store, [tf.trace_id], incremental=False)
    one.append(time.perf_counter() - started)
print(spans, took, sum(len(tf.findings) for tf in judged), sorted(one)[len(one) // 2])
"""

# The command as a user runs it (with its default seed metrics), in a process of its own, from a
# checkout, its output counted, not kept: JSON lines written, seconds taken (imports excluded, as
# above) and the process's peak resident memory in MiB. Extra arguments go to the command.
_COMMAND = """
import contextlib, io, pathlib, sys, time
from handoffs.cli import main
class Lines(io.TextIOBase):
    n = 0
    def writable(self): return True
    def write(self, text):
        self.n += text.count(chr(10))
        return len(text)
lines = Lines()
started = time.perf_counter()
with contextlib.redirect_stdout(lines):
    try:
        main(["detect", *sys.argv[2:], "--format", "jsonl", "--store", "chdb://" + sys.argv[1]])
    except SystemExit as exc:
        if exc.code:
            raise
took = time.perf_counter() - started
peak = [l for l in pathlib.Path("/proc/self/status").read_text().splitlines() if l.startswith("VmHWM:")]
print(lines.n, took, int(peak[0].split()[1]) / 1024)
"""
# The gate's detection step on a CI build: 20 new runs (simulated with the seed given) compared
# with the 20 runs stored before them, which the previous build's gate judged: seconds taken.
# From b7b4b19 to 527438f the step also took the runs' trace ids.
_GATE_BUILD = """
import inspect, sys, time
from handoffs.store import open_store
from handoffs.demo import simulate
from handoffs.gate.judge import refresh_detection
store = open_store("chdb://" + sys.argv[1])
previous = [(r["run_id"], r["trace_id"]) for r in store.query(
    "SELECT run_id, trace_id FROM handoffs_runs FINAL ORDER BY updated_at DESC, run_id LIMIT 20")]
compared = [(r.run_id, r.trace_id) for r in simulate(20, seed=int(sys.argv[2]), store=store)] + previous
args = [[r for r, _ in compared], [t for _, t in compared]]
started = time.perf_counter()
refresh_detection(store, *args[:len(inspect.signature(refresh_detection).parameters) - 1])
print(time.perf_counter() - started)
"""
GATE_BUILDS = 3  # per revision and round, alternating

# The two commands compared: a full pass, then (nothing new) every stored trace read back.
_COMMANDS = {"detect --full --format jsonl": ["--full"], "detect --format jsonl, nothing new": []}


def _ratio_line(what: str, rev: str, spans: int, times: dict[str, list[float]], extra: str) -> str:
    """One comparison: each side's median, and the median of the per-round ratios."""
    ratios = [b / n for b, n in zip(times["before"], times["now"], strict=True)]
    before, now = statistics.median(times["before"]), statistics.median(times["now"])
    return (f"{what}: {rev} {before:7.1f} s = {spans / before:>8,.0f} spans/s; now {now:7.1f} s = "
            f"{spans / now:>8,.0f} spans/s; now faster by {statistics.median(ratios):.2f}x "
            f"(per round: {', '.join(f'{r:.2f}' for r in ratios)}); {extra}")


def versus(rev: str, sizes: list[int], seed_runs: int, rounds: int, out: list[str]) -> None:
    """Full detection, then the detect command, by revision ``rev`` and by this checkout,
    alternating on the same stores."""
    repo = record.REPO
    with (tempfile.TemporaryDirectory(prefix="handoffs-bench-before-") as tmp,
          record.checkout(rev, Path(tmp) / "checkout") as before):
        work = Path(tmp)
        for size in sorted(sizes):
            store_dir = work / f"store-{size}"
            subprocess.run([sys.executable, __file__, "--build-only", "--sizes", str(size), "--seed-runs",
                            str(seed_runs), "--dir", str(store_dir), "--no-write"], check=True)
            times: dict[str, list[float]] = {"before": [], "now": []}
            single: dict[str, list[float]] = {"before": [], "now": []}
            found: dict[str, set[int]] = {"before": set(), "now": set()}
            commands = {name: {"before": [], "now": []} for name in _COMMANDS}
            peaks = {name: {"before": [], "now": []} for name in _COMMANDS}
            lines = {name: {"before": set(), "now": set()} for name in _COMMANDS}
            gate: dict[str, list[float]] = {"before": [], "now": []}
            spans = builds = 0
            for _ in range(rounds):
                for label, checkout in (("before", before), ("now", repo)):
                    done = subprocess.run([sys.executable, "-c", _TIMED, str(store_dir)], cwd=checkout,
                                          check=True, capture_output=True, text=True)
                    count, seconds, findings, one_trace = done.stdout.split()[-4:]
                    spans = int(count)
                    times[label].append(float(seconds))
                    single[label].append(float(one_trace))
                    found[label].add(int(findings))
                for name, args in _COMMANDS.items():
                    for label, checkout in (("before", before), ("now", repo)):
                        done = subprocess.run([sys.executable, "-c", _COMMAND, str(store_dir), *args],
                                              cwd=checkout, check=True, capture_output=True, text=True)
                        written, seconds, peak = done.stdout.split()[-3:]
                        commands[name][label].append(float(seconds))
                        peaks[name][label].append(float(peak))
                        lines[name][label].add(int(written))
                for _ in range(GATE_BUILDS):
                    for label, checkout in (("before", before), ("now", repo)):
                        builds += 1
                        done = subprocess.run([sys.executable, "-c", _GATE_BUILD, str(store_dir), str(900 + builds)],
                                              cwd=checkout, check=True, capture_output=True, text=True)
                        gate[label].append(float(done.stdout.split()[-1]))
            report = [f"{size / 1e6:>9g}M  spans {spans:>10,}",
                      "  " + _ratio_line("full pass", rev, spans, times,
                                         f"findings {sorted(found['before'])} vs {sorted(found['now'])}")]
            ratios = [b / n for b, n in zip(single["before"], single["now"], strict=True)]
            report.append(f"  one trace judged again (what a pass costs for one new run; median of 7 traces): "
                          f"{rev} {statistics.median(single['before']):.2f} s; now "
                          f"{statistics.median(single['now']):.2f} s; now faster by {statistics.median(ratios):.2f}x "
                          f"(per round: {', '.join(f'{r:.2f}' for r in ratios)})")
            for name in _COMMANDS:
                report.append("  " + _ratio_line(
                    f"the command ({name})", rev, spans, commands[name],
                    f"JSON lines {sorted(lines[name]['before'])} vs {sorted(lines[name]['now'])}; "
                    f"peak memory {statistics.median(peaks[name]['before']):,.0f} MiB vs "
                    f"{statistics.median(peaks[name]['now']):,.0f} MiB"))
            ratios = [b / n for b, n in zip(gate["before"], gate["now"], strict=True)]
            report.append(f"  the gate's detection step, a build of 20 new runs against the 20 before them "
                          f"({GATE_BUILDS} builds per revision and round): {rev} "
                          f"{statistics.median(gate['before']):.2f} s; now {statistics.median(gate['now']):.2f} s; "
                          f"now faster by {statistics.median(ratios):.2f}x "
                          f"(per build: {', '.join(f'{r:.2f}' for r in ratios)})")
            for line in report:
                print(line, flush=True)
                out.append(line)
            shutil.rmtree(store_dir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 3_000_000, 10_000_000])
    parser.add_argument("--seed-runs", type=int, default=300)
    parser.add_argument("--dir", type=Path, default=None, help="chDB directory (default: a temporary one)")
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--before", metavar="REV", help="compare full detection with this git revision's")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds with --before")
    parser.add_argument("--by-detector", action="store_true",
                        help="also time one chunk by detector, and planning the structural statement")
    parser.add_argument("--build-only", action="store_true", help="build the store in --dir, measure nothing")
    args = parser.parse_args(argv)
    if args.before:
        out = record.header("detection.py", argv, "each full pass in its own process")
        print("\n".join(out), flush=True)
        versus(args.before, args.sizes, args.seed_runs, args.rounds, out)
        if not args.no_write:
            record.append(RESULTS, out)
        return 0
    out = record.header("detection.py", argv)
    with bench_store(args.dir, "handoffs-bench-detect-") as store:
        seed_spans = seed(store, args.seed_runs)
        out.append(f"# seed: {args.seed_runs} simulated demo runs = {seed_spans:,} spans, replicated in SQL")
        print(out[-1], flush=True)
        for label in grown(store, seed_spans, args.sizes):
            if not args.build_only:
                measure(store, label, out, args.by_detector)
    if not args.no_write:
        record.append(RESULTS, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
