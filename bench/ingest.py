"""Ingest, end to end: OTLP/HTTP protobuf from the OpenTelemetry SDK's exporter over loopback,
until the spans are queryable in the store; against the engine's own Arrow-insert limit and
against Arize Phoenix, with the same spans in the same run.

- ``engine``: the same rows inserted straight into chDB from Python, every combination of
  table (``ours``: otel_traces as migrated, with its skip indexes, TTL and the materialised view
  to handoffs_runs, default insert settings; ``ours, optimize_on_insert=0``: the same table with
  the settings the collector inserts with; ``plain``: a MergeTree with the same columns, codecs
  and sort key and no skip index, TTL, view or deduplication), INSERT size (10k, 100k rows) and
  input (prebuilt Arrow tables: the engine alone; Python rows -> Arrow -> INSERT via SpanBatch,
  conversion included: what a Python receiver can approach). Rounds interleaved, median.
- ``handoffs``: ``handoffs collect`` in its own process on an embedded store; ``--clients``
  threads each export their share with the SDK's ``OTLPSpanExporter`` (512 spans a request,
  the BatchSpanProcessor's default). Timed until ``count()`` in the store reaches the total
  (read through the collector's shared-store endpoint). Peak memory is the collector's VmHWM.
- ``phoenix``: ``phoenix serve`` (its default SQLite store) from ``--phoenix-venv``, the first
  ``--phoenix-spans`` of the same spans, timed until its database holds them all.

Then where the collector's time goes: its CPU per thread during the pre-encoded run (chDB's
insert pipeline, chDB's background merges, the Python threads: HTTP, decode, spool, writer),
and the compiled decoder and the spool's append+fsync measured alone on the same requests.

    python bench/ingest.py                                  # 100k spans; appends to bench/results/ingest.txt
    python bench/ingest.py --spans 50000 --no-phoenix --no-write
    python bench/ingest.py --before 19c1a6a --spans 300000 --rounds 5
                  # the collector of an earlier revision (its decoder compiled here) and this one,
                  # alternating on the same pre-encoded requests: the ratio per round
    python bench/ingest.py --curve 100000 300000 1000000
                  # the scaling curve: at each size, the collector (pre-encoded requests) and
                  # the engine baselines on the same rows, in one run: how spans/s, CPU per
                  # span and peak memory move as a burst grows
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import os
import platform
import re
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import record
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, TraceFlags

from handoffs import conventions as conv
from handoffs.collector import otlp, spool
from handoffs.store import SpanBatch, Store, open_store, schema

RESULTS = Path(__file__).parent / "results"
BATCH = 512  # the BatchSpanProcessor's default export batch
INSERT_SIZES = (10_000, 100_000)
ENGINE_ROUNDS = 3
PLAIN_TABLE = "bench_plain_traces"


# --- the spans ----------------------------------------------------------------------------------

def make_spans(n: int) -> list[ReadableSpan]:
    """Spans as our SDK emits them: runs of 20 (a run, delegations, tools), GenAI + handoff.*."""
    resource = Resource.create({conv.SERVICE_NAME: "bench-team", conv.RESOURCE_PROJECT: "bench"})
    scope = InstrumentationScope("handoffs.bench", "1.0")
    now = time.time_ns() - 3600 * 10**9
    spans = []
    for i in range(n):
        trace, k = i // 20 + 1, i % 20
        ctx = SpanContext(trace_id=trace << 32 | 0xABCDEF, span_id=i + 1, is_remote=False,
                          trace_flags=TraceFlags(1))
        parent = None if k == 0 else SpanContext(trace << 32 | 0xABCDEF, i - k + 1, False, TraceFlags(1))
        start = now + i * 1000
        kind = conv.SpanType.RUN if k == 0 else conv.SpanType.DELEGATION if k % 3 == 1 else conv.SpanType.TOOL
        attributes = {
            conv.SPAN_TYPE: kind.value, conv.STEP: k, conv.RUN_ID: f"run-{trace}",
            conv.GEN_AI_OPERATION_NAME: "execute_tool", conv.GEN_AI_AGENT_NAME: "supervisor",
            conv.TARGET_AGENT: f"worker-{k % 4}", conv.TASK: "write the route handlers for /users",
            conv.GEN_AI_USAGE_INPUT_TOKENS: 1200 + k, conv.GEN_AI_USAGE_OUTPUT_TOKENS: 300 + k,
        }
        events = [Event(conv.EVENT_OUTPUT, {conv.OUTPUT_ID: f"o{i}", conv.OUTPUT_TOKENS: 55,
                                            conv.OUTPUT_UNIT_COMPLETE: True}, timestamp=start + 500)]
        spans.append(ReadableSpan(
            name=conv.delegation_span_name(f"worker-{k % 4}") if kind is conv.SpanType.DELEGATION else kind.value,
            context=ctx, parent=parent, resource=resource, attributes=attributes, events=events,
            kind=SpanKind.INTERNAL, instrumentation_scope=scope, start_time=start, end_time=start + 900))
    return spans


def chunks(items: list, size: int) -> list[list]:
    return [items[i:i + size] for i in range(0, len(items), size)]


# --- processes ----------------------------------------------------------------------------------

def peak_rss_mb(pid: int) -> float:
    """VmHWM: the peak resident memory of a live process, in MiB."""
    text = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+)", text).group(1)) / 1024  # type: ignore[union-attr]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds per thread name of a live process; ``(all)`` includes threads that exited.

    chDB names its threads (QueryPipelineEx, MergeMutate, ...); Python threads keep the
    process's name, ``python``.
    """
    out: dict[str, float] = {"(all)": cpu_seconds(pid)}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except OSError:
            continue  # exited meanwhile
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat.rsplit(")", 1)[1].split()
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return out


# chDB's own counters (system.events of the collector's process, read through its endpoint):
# what its worker pool's CPU went to, inserts or background merges.
ENGINE_EVENTS = ("InsertQuery", "InsertedRows", "InsertQueryTimeMicroseconds",
                 "MergeTreeDataWriterSkipIndicesCalculationMicroseconds", "Merge", "MergedRows",
                 "MergeTotalMilliseconds")


def engine_events(reader: Store) -> dict[str, int]:
    rows = reader.query("SELECT event, value FROM system.events WHERE event IN {names:Array(String)}",
                        {"names": list(ENGINE_EVENTS)})
    return {name: 0 for name in ENGINE_EVENTS} | {r["event"]: int(r["value"]) for r in rows}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_collector(work: Path, checkout: Path | None = None) -> tuple[subprocess.Popen, int, str]:
    """``handoffs collect`` in a process of its own, from ``checkout`` (default: this one)."""
    store_url = f"chdb://{work / 'store'}"
    cmd = [sys.executable, "-c", "import sys; from handoffs.cli import main; main(sys.argv[1:])",
           "collect", "--port", "0", "--store", store_url, "--spool", str(work / "spool")]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, cwd=checkout)
    assert proc.stderr is not None
    for line in proc.stderr:
        found = re.search(r"http://127\.0\.0\.1:(\d+)/v1/traces", line)
        if found:
            threading.Thread(target=proc.stderr.read, daemon=True).start()
            return proc, int(found.group(1)), store_url
    raise SystemExit(f"the collector did not start (exit {proc.wait()})")


def export_all(endpoint: str, batches: list[list[ReadableSpan]], clients: int) -> float:
    """Export every batch with ``clients`` SDK exporters in parallel; seconds until all acked."""
    failures: list[str] = []

    def run(mine: list[list[ReadableSpan]]) -> None:
        exporter = OTLPSpanExporter(endpoint=endpoint, timeout=120)
        for batch in mine:
            if exporter.export(batch) is not SpanExportResult.SUCCESS:
                failures.append("export failed")
        exporter.shutdown()

    threads = [threading.Thread(target=run, args=(batches[i::clients],)) for i in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failures:
        raise SystemExit(f"{len(failures)} exports failed")
    return time.perf_counter() - start


def wait_until(count, target: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while count() < target:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


# --- the three contenders -----------------------------------------------------------------------

ENGINE_TABLES = {  # label: (table, insert settings)
    "ours": (schema.SPAN_TABLE, {}),
    "ours, optimize_on_insert=0": (schema.SPAN_TABLE, {"optimize_on_insert": 0}),
    "plain MergeTree": (PLAIN_TABLE, {}),
}


def bench_engine(whole: pa.Table, work: Path, configs: dict[str, tuple[str, dict]] = ENGINE_TABLES,
                 sizes: tuple[int, ...] = INSERT_SIZES) -> dict[tuple[str, int, str], dict[str, float]]:
    """rows/s and CPU us/row for each (table, INSERT size, input), median of interleaved rounds."""
    store = open_store(f"chdb://{work / 'engine-store'}")
    # IF NOT EXISTS: the curve calls this once per size, on the one chDB session of the process.
    store.command(f"CREATE TABLE IF NOT EXISTS {PLAIN_TABLE} AS {schema.SPAN_TABLE} "
                  "ENGINE = MergeTree ORDER BY (TraceId, SpanId)")
    for index in ("idx_run_id", "idx_source_id", "idx_project", "idx_ts", "idx_attr_values", "idx_resource_values"):
        store.command(f"ALTER TABLE {PLAIN_TABLE} DROP INDEX IF EXISTS {index}")
    left = store.scalar("SELECT count() FROM system.data_skipping_indices WHERE table = {t:String}", {"t": PLAIN_TABLE})
    assert left == 0, f"{PLAIN_TABLE} still has {left} skip indexes"
    rows = whole.num_rows
    inputs: dict[int, tuple[list[pa.Table], list[SpanBatch]]] = {}
    for size in sizes:
        tables = [whole.slice(i, size) for i in range(0, rows, size)]
        batches = []
        for table in tables:  # Python rows, built ahead (not timed): what a receiver holds
            batch = SpanBatch()
            for name in batch.columns:
                batch.columns[name] = table.column(name).to_pylist()
            batches.append(batch)
        inputs[size] = (tables, batches)
    samples: dict[tuple[str, int, str], list[tuple[float, float]]] = {}
    for round_ in range(ENGINE_ROUNDS):
        for which, (label, (table_name, settings)) in enumerate(configs.items()):
            for size in sizes:
                for source in ("arrow", "python"):
                    store.command(f"TRUNCATE TABLE {table_name}")
                    tables, batches = inputs[size]
                    wall, cpu = time.perf_counter(), time.process_time()
                    for k in range(len(tables)):
                        data = tables[k] if source == "arrow" else batches[k].to_arrow()
                        # A fresh token per INSERT: the same rows again must not be deduplicated away.
                        token = {"insert_deduplication_token": f"bench-{round_}-{which}-{size}-{source}-{k}"}
                        store.engine.insert_arrow(table_name, data, settings={**settings, **token}
                                                  if table_name == schema.SPAN_TABLE else settings)
                    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                    stored = store.scalar(f"SELECT count() FROM {table_name}")
                    assert stored == rows, f"{label}: {stored} rows stored of {rows}"
                    samples.setdefault((label, size, source), []).append((rows / wall, cpu / rows * 1e6))
    return {key: {"rows_s": statistics.median(r for r, _ in values),
                  "cpu_us": statistics.median(c for _, c in values)} for key, values in samples.items()}


def post_all(port: int, bodies: list[bytes], clients: int) -> float:
    """POST pre-encoded request bodies on keep-alive connections; seconds until all acked."""
    def run(mine: list[bytes]) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        for body in mine:
            while True:
                conn.request("POST", "/v1/traces", body=body, headers={"Content-Type": otlp.PROTOBUF})
                resp = conn.getresponse()
                resp.read()
                if resp.status == 200:
                    break
                time.sleep(float(resp.getheader("Retry-After") or 1))  # backpressure: retry
        conn.close()

    threads = [threading.Thread(target=run, args=(bodies[i::clients],)) for i in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - start


def bench_handoffs(spans: list[ReadableSpan], clients: int, work: Path,
                   bodies: list[bytes] | None = None, checkout: Path | None = None) -> dict[str, float]:
    """With ``bodies``, post those pre-encoded requests (the collector alone); else run the SDK."""
    run = Path(tempfile.mkdtemp(prefix="raw-" if bodies else "sdk-", dir=work))
    proc, port, store_url = start_collector(run, checkout)
    try:
        reader = open_store(store_url)  # the collector owns the directory: this goes through its endpoint
        cpu0, threads0, events0 = cpu_seconds(proc.pid), thread_cpu(proc.pid), engine_events(reader)
        start = time.perf_counter()
        if bodies:
            acked_s = post_all(port, bodies, clients)
        else:
            acked_s = export_all(f"http://127.0.0.1:{port}/v1/traces", chunks(spans, BATCH), clients)
        ok = wait_until(lambda: reader.scalar(f"SELECT count() FROM {schema.SPAN_TABLE}"), len(spans), 300)
        stored_s = time.perf_counter() - start
        cpu = cpu_seconds(proc.pid) - cpu0
        threads1 = thread_cpu(proc.pid)
        peak = peak_rss_mb(proc.pid)
        rows = reader.scalar(f"SELECT count() FROM {schema.SPAN_TABLE}")
        events1 = engine_events(reader)
        reader.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=120)
    if not ok:
        raise SystemExit(f"handoffs stored {rows} of {len(spans)} spans in 300 s")
    return {"spans": len(spans), "acked_s": acked_s, "stored_s": stored_s, "spans_s": len(spans) / stored_s,
            "peak_mb": peak, "cpu_us_span": cpu / len(spans) * 1e6, "exit": code,
            "events": {name: events1[name] - events0[name] for name in ENGINE_EVENTS},
            "threads_us_span": {name: (threads1[name] - threads0.get(name, 0.0)) / len(spans) * 1e6
                                for name in threads1}}


def bench_phoenix(spans: list[ReadableSpan], venv: Path, work: Path, timeout: float) -> dict[str, float] | None:
    phoenix = venv / "bin" / "phoenix"
    if not phoenix.exists():
        print(f"phoenix: not installed in {venv} (python -m venv {venv} && {venv}/bin/pip install arize-phoenix)")
        return None
    home = work / "phoenix"
    home.mkdir()
    port = free_port()
    env = {**os.environ, "PHOENIX_WORKING_DIR": str(home), "PHOENIX_PORT": str(port),
           "PHOENIX_GRPC_PORT": str(free_port()), "PHOENIX_HOST": "127.0.0.1",
           "PHOENIX_TELEMETRY_ENABLED": "false"}
    proc = subprocess.Popen([str(phoenix), "serve"], env=env, stdout=subprocess.DEVNULL,
                            stderr=open(work / "phoenix.log", "w"))
    try:
        if not wait_until(lambda: _http_ok(port), 1, 180):
            raise SystemExit(f"phoenix did not start; see {work / 'phoenix.log'}")
        db = home / "phoenix.db"
        cpu0 = cpu_seconds(proc.pid)
        start = time.perf_counter()
        acked_s = export_all(f"http://127.0.0.1:{port}/v1/traces", chunks(spans, BATCH), 1)
        ok = wait_until(lambda: _sqlite_count(db), len(spans), timeout)
        stored_s = time.perf_counter() - start
        stored = _sqlite_count(db)
        cpu = cpu_seconds(proc.pid) - cpu0
        peak = peak_rss_mb(proc.pid)
        size = sum(p.stat().st_size for p in home.glob("phoenix.db*"))
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
    return {"spans": len(spans), "stored": stored, "complete": ok, "acked_s": acked_s, "stored_s": stored_s,
            "spans_s": stored / stored_s, "acked_spans_s": len(spans) / acked_s, "peak_mb": peak,
            "cpu_us_span": cpu / max(stored, 1) * 1e6, "bytes_span": size / max(stored, 1)}


def _http_ok(port: int) -> int:
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        conn.request("GET", "/")
        ok = conn.getresponse().status < 500
        conn.close()
        return int(ok)
    except OSError:
        return 0


def _sqlite_count(db: Path) -> int:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            return conn.execute("SELECT count(*) FROM spans").fetchone()[0]
    except sqlite3.Error:
        return 0


# --- where the collector's time goes ------------------------------------------------------------

def breakdown(bodies: list[bytes], n: int, work: Path) -> dict[str, float]:
    t0 = time.process_time()
    for body in bodies:
        otlp.decode_protobuf(body)
    decode = (time.process_time() - t0) / n * 1e6
    sp = spool.Spool(work / "bench-spool", max_bytes=1 << 40)
    t0 = time.perf_counter()
    for body in bodies:
        sp.append(spool.pack(body, None))
    append = (time.perf_counter() - t0) / n * 1e6
    sp.close()
    t0 = time.process_time()
    decoded = [otlp.decode_protobuf(body, reference=True) for body in bodies[:20]]
    reference = (time.process_time() - t0) / sum(d.accepted for d in decoded) * 1e6
    return {"decode_us": decode, "reference_decode_us": reference, "spool_append_fsync_us": append}


def compile_decoder(checkout: Path) -> None:
    """Build ``checkout``'s OTLP decoder in place (the build flags of this Python, as ``pip
    install`` uses), so an earlier revision's collector runs compiled too."""
    source = checkout / "collector" / "_otlp.c"
    target = source.with_name("_otlp" + sysconfig.get_config_var("EXT_SUFFIX"))
    subprocess.run(["gcc", *sysconfig.get_config_var("CFLAGS").split(), "-fPIC", "-shared",
                    f"-I{sysconfig.get_paths()['include']}", str(source), "-o", str(target)],
                   check=True, capture_output=True)


def versus(rev: str, spans: list[ReadableSpan], bodies: list[bytes], clients: int, rounds: int,
           work: Path, say: Callable[..., None]) -> None:
    """The pre-encoded run, ``rev``'s collector and this one alternating, ``rounds`` times."""
    with record.checkout(rev, work / "before") as before:
        compile_decoder(before)
        runs: dict[str, list[dict[str, float]]] = {"before": [], "now": []}
        for _ in range(rounds):
            for label, checkout in (("before", before), ("now", record.REPO)):
                runs[label].append(bench_handoffs(spans, clients, work, bodies, checkout))
    for label, name in (("before", rev), ("now", "now")):
        rates = ", ".join(f"{r['spans_s']:,.0f}" for r in runs[label])
        cpu = ", ".join(f"{r['cpu_us_span']:.1f}" for r in runs[label])
        say(f"  {name:>8s}: spans/s until queryable {rates}; collector CPU us/span {cpu}")
    ratios = [n["spans_s"] / b["spans_s"] for b, n in zip(runs["before"], runs["now"], strict=True)]
    say(f"  now / {rev}: {statistics.median(ratios):.2f}x spans/s, median of {rounds} rounds "
        f"(per round: {', '.join(f'{r:.2f}' for r in ratios)})")


# The curve's engine baselines: the fastest configuration of the standard run (plain MergeTree,
# 100k-row INSERTs), from prebuilt Arrow and from Python rows (the "about 130k rows/s").
CURVE_TABLES = {"plain MergeTree": ENGINE_TABLES["plain MergeTree"]}
CURVE_INSERT = 100_000


def curve(sizes: list[int], spans: list[ReadableSpan], bodies: list[bytes], clients: int, work: Path,
          say: Callable[..., None]) -> None:
    """At each size (the first spans of the same set): the collector on pre-encoded requests and
    the engine baselines on the same rows, one after the other in this run."""
    say(f"scaling curve: the collector ({clients} keep-alive clients, pre-encoded requests, a fresh "
        f"store each) and the engine on the same rows (plain MergeTree, {CURVE_INSERT // 1000}k-row "
        f"INSERTs, median of {ENGINE_ROUNDS} rounds), size by size")
    say(f"  {'spans':>9s} {'collector/s':>12s} {'CPU us/span':>12s} {'peak MiB':>9s} {'acked s':>8s} "
        f"{'stored s':>9s} {'Arrow rows/s':>13s} {'ratio':>6s} {'Py->Arrow/s':>12s} {'ratio':>6s}")
    for n in sorted(sizes):
        requests = bodies[:-(-n // BATCH)]
        ours = bench_handoffs(spans[:n], clients, work, requests)
        whole = pa.concat_tables([otlp.decode_protobuf(b).table for b in requests]).combine_chunks()
        engine = bench_engine(whole, work, CURVE_TABLES, (CURVE_INSERT,))
        del whole
        arrow = engine[("plain MergeTree", CURVE_INSERT, "arrow")]["rows_s"]
        python = engine[("plain MergeTree", CURVE_INSERT, "python")]["rows_s"]
        say(f"  {n:>9,} {ours['spans_s']:>12,.0f} {ours['cpu_us_span']:>12.1f} {ours['peak_mb']:>9.0f} "
            f"{ours['acked_s']:>8.2f} {ours['stored_s']:>9.2f} {arrow:>13,.0f} {ours['spans_s'] / arrow:>6.2f} "
            f"{python:>12,.0f} {ours['spans_s'] / python:>6.2f}")
    say("  ratio: the collector's spans/s over the baseline's rows/s, same rows, same run; peak MiB: "
        "the collector's VmHWM")
    say(f"load average at end: {os.getloadavg()[0]:.1f}")


def standard(args: argparse.Namespace, spans: list[ReadableSpan], bodies: list[bytes], encode_us: float,
             work: Path, say: Callable[..., None]) -> None:
    """The engine's limit, our collector (SDK exporter and pre-encoded), Phoenix, the ratios and
    where the collector's time goes."""
    whole = pa.concat_tables([otlp.decode_protobuf(b).table for b in bodies]).combine_chunks()

    say()
    engine = bench_engine(whole, work)
    say(f"engine limit: the same {whole.num_rows:,} rows straight into chDB from Python, rows/s "
        f"(CPU us/row, chDB's threads included), median of {ENGINE_ROUNDS} interleaved rounds:")
    say(f"  {'table':28s}" + "".join(f"{f'{size // 1000}k, Arrow':>22s}{f'{size // 1000}k, Python->Arrow':>24s}"
                                      for size in INSERT_SIZES))
    for label in ENGINE_TABLES:
        cells = ""
        for size in INSERT_SIZES:
            for source, width in (("arrow", 22), ("python", 24)):
                cell = engine[(label, size, source)]
                cells += f"{cell['rows_s']:>{width - 7},.0f} ({cell['cpu_us']:4.1f})"
        say(f"  {label:28s}{cells}")
    say("  ours = otel_traces as migrated: 6 skip indexes, TTL, dedup window, view to handoffs_runs; "
        "plain = MergeTree, same columns/codecs/sort key, none of those")
    ours = bench_handoffs(spans[:args.sdk_spans], args.clients, work)
    say(f"handoffs collect ({args.clients} SDK exporters): {ours['spans_s']:,.0f} spans/s until queryable "
        f"({ours['spans']} spans acked in {ours['acked_s']:.2f} s, stored in {ours['stored_s']:.2f} s); "
        f"peak memory {ours['peak_mb']:.0f} MiB; collector CPU {ours['cpu_us_span']:.1f} us/span; "
        f"SIGTERM exit {ours['exit']}")
    raw = bench_handoffs(spans, args.clients, work, bodies)
    say(f"handoffs collect, the same requests pre-encoded by the SDK's encoder ({args.clients} keep-alive "
        f"clients on loopback, no encoding during the run): {raw['spans_s']:,.0f} spans/s until queryable "
        f"(acked in {raw['acked_s']:.2f} s, stored in {raw['stored_s']:.2f} s); peak memory "
        f"{raw['peak_mb']:.0f} MiB; collector CPU {raw['cpu_us_span']:.1f} us/span; SIGTERM exit {raw['exit']}")
    phoenix = None
    if not args.no_phoenix:
        phoenix = bench_phoenix(spans[:args.phoenix_spans], args.phoenix_venv, work, args.phoenix_timeout)
    if phoenix:
        done = "all" if phoenix["complete"] else f"only {phoenix['stored']}"
        say(f"phoenix serve (SQLite): {phoenix['spans_s']:,.0f} spans/s until queryable ({done} of "
            f"{phoenix['spans']} stored in {phoenix['stored_s']:.1f} s; acknowledged at "
            f"{phoenix['acked_spans_s']:,.0f} spans/s); peak memory {phoenix['peak_mb']:.0f} MiB; "
            f"CPU {phoenix['cpu_us_span']:.0f} us/span; {phoenix['bytes_span']:,.0f} B/span on disk")

    say()
    ranked = sorted(engine.items(), key=lambda kv: -kv[1]["rows_s"])
    (top_label, top_size, top_source), top = ranked[0]
    say(f"ratios, handoffs collect / engine (same rows, same run); the most demanding baseline is the fastest: "
        f"{top_label}, {top_size // 1000}k-row INSERTs, {'prebuilt Arrow' if top_source == 'arrow' else 'Python->Arrow'} "
        f"({top['rows_s']:,.0f} rows/s)")
    say(f"  {'baseline':58s} {'pre-encoded':>12s} {'SDK exporter':>13s}")
    for (label, size, source), cell in ranked:
        name = f"{label}, {size // 1000}k, {'prebuilt Arrow' if source == 'arrow' else 'Python->Arrow'}"
        say(f"  {name:58s} {raw['spans_s'] / cell['rows_s']:12.2f} {ours['spans_s'] / cell['rows_s']:13.2f}")
    if phoenix:
        say(f"  handoffs / phoenix (stored spans/s, SDK exporter both): "
            f"{ours['spans_s'] / max(phoenix['spans_s'], 1e-9):.0f}x")

    parts = breakdown(bodies, len(spans), work)
    threads = raw["threads_us_span"]
    named = {k: v for k, v in threads.items() if k not in ("(all)", "python") and v > 0.05}
    python_us = threads["(all)"] - sum(v for k, v in threads.items() if k not in ("(all)", "python"))
    say()
    say("where the collector's time goes: its CPU us per span in the pre-encoded run, by thread")
    for name, value in sorted(named.items(), key=lambda kv: -kv[1]):
        what = {"QueryCompPipeEx": "chDB: the INSERT's pipeline", "MergeMutate": "chDB: background merges",
                "ThreadPool": "chDB: worker pool"}.get(name, "chDB")
        say(f"  {name:20s} {value:6.2f}  {what}")
    say(f"  {'Python threads':20s} {python_us:6.2f}  HTTP, decode, spool, writer (request threads that exited included)")
    say(f"  {'total':20s} {threads['(all)']:6.2f}")
    ev, n = raw["events"], len(spans)
    say(f"  chDB's own counters in that run: {ev['InsertQuery']} INSERT(s) of {ev['InsertedRows']:,} rows "
        f"(both tables), {ev['InsertQueryTimeMicroseconds'] / n:.2f} us/span inside them (skip indexes "
        f"{ev['MergeTreeDataWriterSkipIndicesCalculationMicroseconds'] / n:.2f}); {ev['Merge']} background "
        f"merge(s) rewrote {ev['MergedRows']:,} rows ({ev['MergedRows'] / n:.1f}x the spans) in "
        f"{ev['MergeTotalMilliseconds'] * 1e3 / n:.2f} us/span (wall time of those threads, not CPU)")
    say("and measured alone on the same requests (CPU us per span):")
    say(f"  decode + validate, compiled (request path only: the writer takes the rows in memory): {parts['decode_us']:.2f}")
    say(f"  decode, Python reference (not used when compiled; for scale):                         {parts['reference_decode_us']:.1f}")
    say(f"  spool append + fsync ({BATCH}-span requests, one at a time; wall):                     {parts['spool_append_fsync_us']:.2f}")
    say(f"  the SDK's exporter encoding on the client side:                                       {encode_us:.1f}")
    say(f"load average at end: {os.getloadavg()[0]:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spans", type=int, default=100_000)
    parser.add_argument("--sdk-spans", type=int, default=20_000,
                        help="how many of the spans go through the SDK's exporter (client-bound: slow)")
    parser.add_argument("--clients", type=int, default=2, help="parallel SDK exporters")
    parser.add_argument("--phoenix-spans", type=int, default=3000)
    parser.add_argument("--phoenix-venv", type=Path, default=Path("/work/venv-phoenix"))
    parser.add_argument("--phoenix-timeout", type=float, default=600)
    parser.add_argument("--no-phoenix", action="store_true")
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--before", metavar="REV",
                        help="only compare the pre-encoded run with this git revision's collector")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds with --before")
    parser.add_argument("--curve", type=int, nargs="+", metavar="SPANS",
                        help="only the scaling curve, at these sizes (the largest is made and encoded)")
    args = parser.parse_args()
    if args.curve:
        args.spans = max(args.curve)

    out: list[str] = []

    def say(line: str = "") -> None:
        print(line, flush=True)
        out.append(line)

    say(f"# ingest, {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC")
    say(f"command: python bench/ingest.py {' '.join(sys.argv[1:])}".rstrip())
    say(f"machine: {os.cpu_count()} cores, {platform.platform()}, python {platform.python_version()}, "
        f"decoder: {'compiled' if otlp.accelerated() else 'python'}")
    say(f"load average at start: {os.getloadavg()[0]:.1f}")
    work = Path(tempfile.mkdtemp(prefix="handoffs-bench-ingest-"))
    try:
        t0 = time.perf_counter()
        spans = make_spans(args.spans)
        say(f"spans: {len(spans)} made with the OTel SDK in {time.perf_counter() - t0:.1f} s "
            f"(runs of 20, 10 attributes and an event each)")
        t0 = time.process_time()
        bodies = [encode_spans(batch).SerializeToString() for batch in chunks(spans, BATCH)]
        encode_us = (time.process_time() - t0) / len(spans) * 1e6
        say(f"request bodies: {len(bodies)} x {BATCH} spans, {sum(map(len, bodies)) / len(spans):.0f} B/span "
            f"in protobuf; the SDK's encoder costs the client {encode_us:.1f} us/span")
        if args.before:
            say(f"handoffs collect, pre-encoded requests ({args.clients} keep-alive clients), {args.before} "
                f"against now, alternating in separate processes:")
            versus(args.before, spans, bodies, args.clients, args.rounds, work, say)
            say(f"load average at end: {os.getloadavg()[0]:.1f}")
        elif args.curve:
            curve(args.curve, spans, bodies, args.clients, work, say)
        else:
            standard(args, spans, bodies, encode_us, work, say)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if not args.no_write:
        RESULTS.mkdir(exist_ok=True)
        with open(RESULTS / "ingest.txt", "a") as fh:  # earlier runs stay, for before/after
            fh.write("\n" + "\n".join(out) + "\n")
        print(f"appended to {RESULTS / 'ingest.txt'}")


if __name__ == "__main__":
    main()
