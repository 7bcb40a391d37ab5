"""Storage: bytes per span on disk, and what codecs and sort keys do to size and to queries.

Spans are generated with ``SpanBatch`` in the shape our SDK writes: runs of about 50 spans (a
run, a supervisor, six delegations each with a worker, model calls, tools and a verification;
outputs and decisions as events) with the conventions' attributes, spread over 30 days. The
same rows go into one table per variant, in the same process, so every ratio is measured pair
by pair:

- ``ours``: the span table as ``handoffs migrate`` creates it (ORDER BY (TraceId, SpanId),
  ZSTD(1), Delta on Timestamp, LowCardinality, skipping indexes);
- ``exporter-key``: the same columns under the OpenTelemetry Collector exporter's own sort key
  (ServiceName, SpanName, toDateTime(Timestamp)), daily partitions and its TraceId bloom filter;
- ``zstd3``: ZSTD(3) on every column; ``lz4``: no codec clauses (ClickHouse's default, LZ4);
- ``no-delta``: Timestamp without Delta; ``no-lowcard``: plain String where we use LowCardinality;
- ``no-value-idx``: ours without the bloom filters over attribute values.

At each size (after OPTIMIZE FINAL, i.e. after merges) it prints bytes per span from
system.parts, the biggest columns from system.parts_columns, and the median time and granules read
of the main query shapes: one trace, one run (by run id), per-run aggregation over everything,
and a one-hour time window.

    python bench/storage.py                       # 100k, 1M, 3M spans; writes bench/results/storage.txt
    python bench/storage.py --sizes 100000,1000000,3000000 --variants ours,exporter-key,no-value-idx \
        --results bench/results/storage-keys.txt      # the sort keys and the index at 3M
    python bench/storage.py --sizes 20000 --variants ours,exporter-key --no-write
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import random
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import chdb

from handoffs import conventions as c
from handoffs.store import SpanBatch, Store, open_store, schema
from handoffs.store.spans import Event

RESULTS = Path(__file__).parent / "results" / "storage.txt"
DAY_NS = 86_400 * 10**9
SPREAD_DAYS = 30
CHUNK = 100_000  # spans per generated batch (and per INSERT: one part each)

_LOWCARD = re.compile(r"LowCardinality\((String)\)")
_CODEC = re.compile(r"\s*CODEC\((?:Delta, )?ZSTD\(1\)\)")


def _columns(transform: Callable[[str], str] = lambda s: s) -> str:
    return transform(schema.SPAN_COLUMNS)


def _variant_ddl(name: str, table: str) -> str:
    """CREATE TABLE for one variant; ``ours`` is exactly the migrated span table."""
    ours = schema.spans_table(None).create()[0].replace(
        f"IF NOT EXISTS {schema.SPAN_TABLE}\n", f"IF NOT EXISTS {table}\n", 1)
    if name == "ours":
        return ours
    if name == "no-value-idx":
        for index in schema.SPAN_VALUE_INDEXES:
            ours = ours.replace(f",\n    INDEX {index}", "")
        return ours
    indexes = schema.SPAN_INDEXES
    order, partition, extra_index = "(TraceId, SpanId)", "toYYYYMM(Timestamp)", ""
    engine = "ReplacingMergeTree"
    cols = schema.SPAN_COLUMNS
    if name == "exporter-key":
        order = "(ServiceName, SpanName, toDateTime(Timestamp))"
        partition = "toDate(Timestamp)"
        # The exporter's engine: replacing on this key would merge distinct spans away.
        engine = "MergeTree"
        extra_index = ",\n    INDEX idx_trace_id TraceId TYPE bloom_filter(0.001) GRANULARITY 1"
    elif name == "zstd3":
        cols = cols.replace("ZSTD(1)", "ZSTD(3)")
    elif name == "lz4":
        cols = _CODEC.sub("", cols)
    elif name == "no-delta":
        cols = cols.replace("CODEC(Delta, ZSTD(1))", "CODEC(ZSTD(1))")
    elif name == "no-lowcard":
        cols = _LOWCARD.sub(r"\1", cols)
    else:
        raise SystemExit(f"unknown variant {name!r}")
    return (f"CREATE TABLE IF NOT EXISTS {table}\n(\n    {cols.strip()},\n    {indexes.strip()}"
            f"{extra_index}\n)\nENGINE = {engine}\nPARTITION BY {partition}\n"
            f"ORDER BY {order}\nSETTINGS index_granularity = 8192")


VARIANTS = ("ours", "exporter-key", "no-value-idx", "zstd3", "lz4", "no-delta", "no-lowcard")

AGENTS = ("planner", "researcher", "coder", "reviewer", "tester", "writer", "analyst", "critic")
MODELS = ("gpt-4o", "claude-3-5-sonnet", "gpt-4o-mini", "llama-3.1-70b")
TOOLS = ("read_file", "write_file", "search", "run_tests", "http_get", "sql_query")
TASKS = ("write the schema for {x}", "implement the {x} endpoint", "review the {x} module",
         "summarise findings on {x}", "test the {x} migration", "draft the {x} section")
TOPICS = ("billing", "auth", "search", "invoices", "reports", "onboarding", "exports", "alerts")
ACTIONS = ("accepted", "accepted", "accepted", "modified", "overwrote", "rejected")


class Generator:
    """Runs of about 50 spans in our conventions, with random ids, hashes, tokens and timings."""

    def __init__(self, seed: int = 7) -> None:
        self.rng = random.Random(seed)
        self.now = time.time_ns()
        self.runs = 0

    def _hex(self, n: int) -> str:
        return f"{self.rng.getrandbits(n * 4):0{n}x}"

    def run(self, batch: SpanBatch) -> tuple[str, str]:
        """Append one run; return its trace id and run id."""
        rng = self.rng
        self.runs += 1
        trace = self._hex(32)
        run_id = self._hex(32)
        start = self.now - rng.randrange(SPREAD_DAYS * DAY_NS)
        project = f"team-{self.runs % 5}"
        resource = {c.SERVICE_NAME: "agent-team", c.RESOURCE_PROJECT: project,
                    c.RESOURCE_SYSTEM: "billing-bot", "telemetry.sdk.language": "python",
                    "telemetry.sdk.version": "1.45.0"}
        scope = ("handoffs", "0.1.0")
        t = start
        root = self._hex(16)

        def span(name: str, parent: str, dur: int, attrs: dict[str, str], **kw: object) -> str:
            nonlocal t
            sid = self._hex(16)
            t += rng.randrange(1_000_000, 50_000_000)
            batch.append(trace_id=trace, span_id=sid, parent_span_id=parent, name=name,
                         start_ns=t, duration_ns=dur, service_name="agent-team",
                         resource_attributes=resource, attributes=attrs,
                         scope_name=scope[0], scope_version=scope[1], **kw)  # type: ignore[arg-type]
            return sid

        batch.append(trace_id=trace, span_id=root, name="handoffs.run nightly", start_ns=start,
                     duration_ns=rng.randrange(10, 120) * 10**9, service_name="agent-team",
                     resource_attributes=resource, scope_name=scope[0], scope_version=scope[1],
                     status_code="Ok",
                     attributes={c.SPAN_TYPE: c.SpanType.RUN.value, c.RUN_ID: run_id,
                                 c.RUN_NAME: "nightly", c.RUN_BRANCH: "main",
                                 c.RUN_COMMIT: self._hex(40), c.RUN_TOPOLOGY: "centralized",
                                 c.RUN_TAGS: '["nightly"]'})
        sup = span("invoke_agent supervisor", root, rng.randrange(10**9, 10**11), {
            c.SPAN_TYPE: c.SpanType.AGENT.value, c.GEN_AI_OPERATION_NAME: "invoke_agent",
            c.GEN_AI_AGENT_NAME: "supervisor", c.AGENT_ROLE: "supervisor", c.RUN_ID: run_id,
            c.GEN_AI_REQUEST_MODEL: MODELS[0]})
        step = 0
        for _ in range(6):
            worker = rng.choice(AGENTS)
            step += 1
            task = rng.choice(TASKS).format(x=rng.choice(TOPICS))
            out_id, tokens = self._hex(16), rng.randrange(50, 3000)
            dt_ns = rng.randrange(10**8, 10**10)
            events = [Event(t + dt_ns // 2, c.EVENT_OUTPUT, {
                c.OUTPUT_ID: out_id, c.OUTPUT_HASH: self._hex(16), c.OUTPUT_TOKENS: str(tokens),
                c.OUTPUT_UNIT_COMPLETE: "true", c.STEP: str(step)}),
                Event(t + dt_ns, c.EVENT_DECISION, {
                    c.DECISION_ACTION: rng.choice(ACTIONS), c.DECISION_AGENT: "supervisor",
                    c.OUTPUT_ID: out_id, c.STEP: str(step + 1)})]
            deleg = span(f"execute_tool transfer_to_{worker}", sup, dt_ns, {
                c.SPAN_TYPE: c.SpanType.DELEGATION.value, c.GEN_AI_OPERATION_NAME: "execute_tool",
                c.GEN_AI_TOOL_NAME: f"transfer_to_{worker}", c.DELEGATION_ID: self._hex(16),
                c.SOURCE_AGENT: "supervisor", c.TARGET_AGENT: worker, c.TASK: task,
                c.TASK_HASH: self._hex(16), c.MODE: "delegate", c.DELEGATION_STATUS: "completed",
                c.GEN_AI_HANDOFF_SOURCE_NAME: "supervisor", c.GEN_AI_HANDOFF_TARGET_NAME: worker,
                c.STEP: str(step), c.RUN_ID: run_id}, events=events)
            agent = span(f"invoke_agent {worker}", deleg, dt_ns - 1000, {
                c.SPAN_TYPE: c.SpanType.AGENT.value, c.GEN_AI_OPERATION_NAME: "invoke_agent",
                c.GEN_AI_AGENT_NAME: worker, c.AGENT_ROLE: "worker", c.STEP: str(step),
                c.RUN_ID: run_id})
            model = rng.choice(MODELS)
            for _ in range(2):
                step += 1
                span(f"chat {model}", agent, rng.randrange(10**8, 10**10), {
                    c.SPAN_TYPE: c.SpanType.LLM.value, c.GEN_AI_OPERATION_NAME: "chat",
                    c.GEN_AI_AGENT_NAME: worker, c.GEN_AI_REQUEST_MODEL: model,
                    c.GEN_AI_PROVIDER_NAME: "openai",
                    c.GEN_AI_USAGE_INPUT_TOKENS: str(rng.randrange(200, 8000)),
                    c.GEN_AI_USAGE_OUTPUT_TOKENS: str(rng.randrange(20, 2000)),
                    c.STEP: str(step), c.RUN_ID: run_id})
            for _ in range(2):
                step += 1
                tool = rng.choice(TOOLS)
                failed = rng.random() < 0.03
                span(f"execute_tool {tool}", agent, rng.randrange(10**6, 10**9), {
                    c.SPAN_TYPE: c.SpanType.TOOL.value, c.GEN_AI_OPERATION_NAME: "execute_tool",
                    c.GEN_AI_TOOL_NAME: tool, c.GEN_AI_AGENT_NAME: worker,
                    c.TOOL_ARGS_HASH: self._hex(16), c.TOOL_SIDE_EFFECT: str(tool == "write_file").lower(),
                    c.GEN_AI_TOOL_CALL_ID: "call_" + self._hex(24), c.STEP: str(step),
                    c.RUN_ID: run_id},
                     status_code="Error" if failed else "Unset",
                     status_message="tool raised TimeoutError" if failed else "")
            step += 1
            span("verify unit tests", sup, rng.randrange(10**7, 10**9), {
                c.SPAN_TYPE: c.SpanType.VERIFICATION.value, c.VERIFICATION_CHECK: "unit tests",
                c.VERIFICATION_TARGET: out_id, c.VERIFICATION_VERDICT: rng.choice(("pass", "pass", "fail")),
                c.VERIFICATION_COVERAGE: "1.0", c.GEN_AI_AGENT_NAME: "supervisor", c.STEP: str(step),
                c.RUN_ID: run_id})
        return trace, run_id


def _interleaved_ms(store: Store, sqls: list[str], rounds: list[dict]) -> list[tuple[float, float]]:
    """Median ms of each query, and the median of its per-round ratio to the first one.

    Rounds interleave the variants (in a rotating order), so a ratio compares runs made at
    the same moment on a noisy machine. Each round asks for another trace, run or window (the
    same one for every variant): repeating one value would measure ClickHouse's query
    condition cache, not the table.
    """
    for sql in sqls:
        store.query_arrow(sql, rounds[0])  # warm-up: marks, first-use costs
    times: list[list[float]] = [[] for _ in sqls]
    for r, params in enumerate(rounds[1:]):
        order = list(range(len(sqls)))
        order = order[r % len(order):] + order[:r % len(order)]
        for i in order:
            t0 = time.perf_counter()
            store.query_arrow(sqls[i], params)
            times[i].append((time.perf_counter() - t0) * 1000)
    return [(statistics.median(ts), statistics.median(t / b for t, b in zip(ts, times[0], strict=True)))
            for ts in times]


def _granules(store: Store, sql: str, params: dict) -> str:
    """Granules the primary key and skipping indexes leave to read, from EXPLAIN indexes = 1."""
    plan = "\n".join(r["explain"] for r in store.query("EXPLAIN indexes = 1 " + sql, params))
    read = re.findall(r"\| Granules: (\d+)", plan)  # what is left after every index
    total = re.findall(r"Granules: \d+/(\d+)", plan)
    return f"{read[0]}/{total[0]}" if read and total else "-"


# __T__ is the variant's table; {name:Type} are ClickHouse parameters.
QUERIES = {
    "one trace": "SELECT * FROM __T__ WHERE TraceId = {trace:String}",
    "one run": ("SELECT count(), sum(Duration) FROM __T__ WHERE SpanAttributes['" + c.RUN_ID
                + "'] = {run:String}"),
    "per-run agg": ("SELECT SpanAttributes['" + c.RUN_ID + "'] AS r, count(), sum(Duration), "
                    "countIf(StatusCode = 'Error') FROM __T__ GROUP BY r"),
    "1h window": ("SELECT count(), quantile(0.95)(Duration) FROM __T__ "
                  "WHERE Timestamp >= fromUnixTimestamp64Nano({lo:Int64}) "
                  "AND Timestamp < fromUnixTimestamp64Nano({hi:Int64})"),
}


def _size_report(store: Store, table: str) -> dict[str, float]:
    row = store.query("SELECT sum(rows) AS rows, sum(bytes_on_disk) AS disk, "
                      "sum(data_compressed_bytes) AS comp, sum(data_uncompressed_bytes) AS raw, "
                      "count() AS parts FROM system.parts WHERE active AND database = currentDatabase() "
                      "AND table = {t:String}", {"t": table})[0]
    return {k: float(v) for k, v in row.items()}


def _top_columns(store: Store, table: str, n: int = 6) -> list[tuple[str, float]]:
    rows = store.query("SELECT column AS name, sum(column_data_compressed_bytes) AS b "
                       "FROM system.parts_columns WHERE active AND database = currentDatabase() "
                       "AND table = {t:String} GROUP BY name ORDER BY b DESC LIMIT {n:UInt32}",
                       {"t": table, "n": n})
    return [(r["name"], float(r["b"])) for r in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,1000000,3000000",
                        help="comma-separated span counts, ascending (default: 100k, 1M, 3M)")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--repeat", type=int, default=9,
                        help="rounds per query, each on another trace/run/window; medians are printed")
    parser.add_argument("--dir", default=None, help="chDB directory (default: a fresh temporary one)")
    parser.add_argument("--results", default=str(RESULTS), help=f"results file (default: {RESULTS})")
    parser.add_argument("--no-write", action="store_true", help="print only; do not write the results file")
    args = parser.parse_args()
    results = Path(args.results)
    sizes = [int(s) for s in args.sizes.split(",")]
    variants = [v for v in args.variants.split(",") if v]
    lines: list[str] = []
    earlier = results.read_text().rstrip("\n") + "\n\n" if results.exists() else ""  # earlier runs stay

    def say(text: str = "") -> None:
        print(text, flush=True)
        lines.append(text)

    workdir = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="handoffs-bench-storage-"))
    store = open_store(f"chdb://{workdir}?database=bench_storage", migrate=False)
    tables = {v: "spans_" + v.replace("-", "_") for v in variants}
    for v, table in tables.items():
        store.command(f"DROP TABLE IF EXISTS {table}")
        store.command(_variant_ddl(v, table))

    say(f"# bench/storage.py  {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC")
    say(f"# command: python bench/storage.py {' '.join(sys.argv[1:])}".rstrip())
    say(f"# machine: {os.cpu_count()} cores, {platform.python_implementation()} {platform.python_version()}, "
        f"chdb {chdb.__version__}, engine {store.scalar('SELECT version()')}")
    say(f"# spans: runs of ~50 spans over {SPREAD_DAYS} days, {CHUNK} spans per INSERT; "
        f"times are medians of {args.repeat} rounds; sizes after OPTIMIZE FINAL")
    gen = Generator()
    samples: list[tuple[str, str]] = []
    have = 0
    gen_s = insert_s = 0.0
    for size in sizes:
        while have < size:
            t0 = time.perf_counter()
            batch = SpanBatch()
            while len(batch) < min(CHUNK, size - have):
                samples.append(gen.run(batch))
            data = batch.to_arrow()
            gen_s += time.perf_counter() - t0
            t0 = time.perf_counter()
            for table in tables.values():
                store.insert(table, data)
            insert_s += time.perf_counter() - t0
            have += data.num_rows
        for table in tables.values():
            store.command(f"OPTIMIZE TABLE {table} FINAL")
        say()
        say(f"## {have:,} spans ({gen.runs:,} runs); generating {have / gen_s:,.0f} spans/s, "
            f"inserting {have * len(tables) / insert_s:,.0f} rows/s over {len(tables)} tables")
        base = _size_report(store, tables[variants[0]])
        say(f"{'variant':<14}{'B/span':>8}{'x ' + variants[0]:>12}{'raw B/span':>12}{'ratio':>7}{'parts':>7}")
        for v, table in tables.items():
            rep = _size_report(store, table)
            say(f"{v:<14}{rep['disk'] / rep['rows']:>8.1f}{rep['disk'] / base['disk']:>12.2f}"
                f"{rep['raw'] / rep['rows']:>12.1f}{rep['raw'] / rep['comp']:>7.1f}{rep['parts']:>7.0f}")
        top = _top_columns(store, tables[variants[0]])
        if any(b for _, b in top):  # compact (small) parts do not account bytes per column
            say(f"biggest columns ({variants[0]}, B/span): "
                + ", ".join(f"{name} {b / have:.1f}" for name, b in top))
        indexes = store.query("SELECT name, data_compressed_bytes AS b FROM system.data_skipping_indices "
                              "WHERE database = currentDatabase() AND table = {t:String} ORDER BY b DESC",
                              {"t": tables[variants[0]]})
        say(f"skipping indexes ({variants[0]}, B/span): "
            + ", ".join(f"{r['name']} {float(r['b']) / have:.2f}" for r in indexes))
        rng = random.Random(size)
        rounds = []
        for _ in range(args.repeat + 1):
            trace, run = rng.choice(samples)
            lo = gen.now - rng.randrange(DAY_NS, (SPREAD_DAYS - 1) * DAY_NS)
            rounds.append({"trace": trace, "run": run, "lo": lo, "hi": lo + 3600 * 10**9})
        say(f"{'query':<13}" + "".join(f"{v:>22}" for v in variants))
        for qname, sql in QUERIES.items():
            sqls = [sql.replace("__T__", table) for table in tables.values()]
            timed = _interleaved_ms(store, sqls, rounds)
            cells = [f"{ms:7.1f}ms {ratio:4.1f}x {_granules(store, q, rounds[0]):>7}"
                     for q, (ms, ratio) in zip(sqls, timed, strict=True)]
            say(f"{qname:<13}" + "".join(f"{cell:>22}" for cell in cells))
        if not args.no_write:  # after each size, so a long run that is stopped keeps its figures
            results.parent.mkdir(parents=True, exist_ok=True)
            results.write_text(earlier + "\n".join(lines) + "\n\n")
    say()
    say("# B/span: bytes on disk per span (active parts); x: against the first variant; raw: "
        "uncompressed; ratio: raw/compressed; cells: median ms, ratio to the first variant, "
        "granules read/total (8192 rows each); x for a query is the median of per-round ratios")
    if not args.no_write:
        results.write_text(earlier + "\n".join(lines) + "\n\n")
        print(f"wrote {results}")
    if not args.dir:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
