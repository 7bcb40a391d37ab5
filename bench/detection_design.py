"""Two other designs for the detection pass, against the per-mode queries it runs, on one chunk.

Full detection judges about 200k spans/s here; the target is 1M. Earlier notes named the way
there as "one per-trace pass for all modes instead of a query per mode". This puts numbers on
that, and on a second design, for four modes (FM-1.3 step repetition's repeated tool calls,
duplicate side effect, FM-2.1 conversation reset, FM-1.5 termination unaware) over the same
materialised shape (the
``Scratch`` a chunk of a full pass builds, so the attribute maps are not part of any figure):

- per-mode: each mode's query as the pipeline runs it (``structural.DETECTORS``), summed;
- one per-trace pass: every span of a trace grouped into one array, each mode's condition as
  array functions over it (``arrayFilter``/``arrayCount`` lambdas), the findings' spans out;
- candidate flags: one GROUP BY trace computing, without lambdas, a necessary condition for
  each mode (a repeated key, a second root, work after the termination): which traces each
  mode's exact query would need to read. Not findings; a first stage.

Each figure at three chunk sizes (traces per chunk), best of 3, the designs interleaved; the
traces each design flags are compared with the per-mode queries' traces.

    python bench/detection_design.py                     # chunks of 5k, 20k, 40k traces of a 1.5M-span store
    python bench/detection_design.py --dir /path/store   # an existing store (built by bench/detection.py)
Results go to bench/results/detection_design.txt with the command and the date.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import record
from detection import bench_store, grown, seed

from handoffs import taxonomy as t
from handoffs.conventions import SpanType
from handoffs.detectors import structural
from handoffs.detectors.normalise import RANGE_FILTER, Scratch, shaped
from handoffs.store import Store, schema

RESULTS = Path(__file__).parent / "results" / "detection_design.txt"
MODES = (t.STEP_REPETITION, "duplicate-side-effect", "FM-2.1", "FM-1.5")
TOOL, RUN = f"'{SpanType.TOOL.value}'", f"'{SpanType.RUN.value}'"
WORK = ", ".join(f"'{k.value}'" for k in (SpanType.AGENT, SpanType.TOOL, SpanType.LLM, SpanType.DELEGATION))

# Per trace: its first termination, and whether a termination names a limit (FM-1.5's two branches).
_TERMS = f"""(SELECT trace_id, min(ts) AS term, countIf(match(reason, '{structural.LIMIT_REASON}')) AS limits
    FROM {{terminations}} GROUP BY trace_id)"""


def mode_sql(code: str) -> str:
    """A mode's query as the pipeline runs it; of FM-1.3 its first branch, repeated tool calls
    (the designs here do not cover its second, a task delegated again after acceptance)."""
    sql = structural.BY_CODE[code].sql
    if code == t.STEP_REPETITION:
        first, _ = sql.split("UNION ALL")
        return first + ")"
    return sql


# Tuple fields: 1 ts, 2 span_id, 3 type, 4 agent, 5 tool, 6 args_hash, 7 failed, 8 retry_of,
# 9 retry_attempt, 10 step, 11 side_effect, 12 tool_target, 13 idempotency_key, 14 parent_id.
_PER_TRACE = f"""
SELECT trace_id, arrayConcat(repeated, dup_se, resets, after_term) AS flagged FROM (
  SELECT trace_id,
    arrayFilter(x -> x.3 = {TOOL} AND x.6 != '' AND NOT x.7 AND x.8 = '' AND x.9 <= 1, spans) AS calls,
    arrayFilter(c -> arrayCount(d -> d.4 = c.4 AND d.5 = c.5 AND d.6 = c.6, calls) >= 2, calls) AS repeated,
    arrayFilter(x -> x.3 = {TOOL} AND x.11 AND NOT x.7 AND (x.12 != '' OR x.6 != ''), spans) AS se,
    arrayFilter(c -> arrayCount(d -> d.5 = c.5 AND if(d.12 != '', d.12, d.6) = if(c.12 != '', c.12, c.6), se) >= 2
                     AND arrayExists(d -> d.5 = c.5 AND if(d.12 != '', d.12, d.6) = if(c.12 != '', c.12, c.6)
                                           AND (d.13 = '' OR d.13 != c.13), se), se) AS dup_se,
    arrayMin(arrayMap(x -> x.1, arrayFilter(x -> x.14 = '', spans))) AS first_root,
    arrayFilter(x -> x.14 = '' AND x.1 > first_root AND x.3 != {RUN}, spans) AS resets,
    arrayFilter(x -> (term > 0 AND x.1 > term AND x.3 IN ({WORK})) OR limits > 0, spans) AS after_term
  FROM (
    SELECT s.trace_id AS trace_id, any(tm.term) AS term, any(tm.limits) AS limits,
      groupArray(tuple(s.ts, s.span_id, s.type, s.agent, s.tool, s.args_hash, s.failed, s.retry_of,
                       s.retry_attempt, s.step, s.side_effect, s.tool_target, s.idempotency_key, s.parent_id)) AS spans
    FROM {{s}} AS s LEFT JOIN {_TERMS} AS tm ON tm.trace_id = s.trace_id
    GROUP BY s.trace_id
  )
) WHERE length(flagged) > 0
"""

_FLAGS = f"""
SELECT trace_id FROM (
  SELECT s.trace_id AS trace_id, any(tm.term) AS term, any(tm.limits) AS limits,
    groupArrayIf(cityHash64(s.agent, s.tool, s.args_hash), s.type = {TOOL} AND s.args_hash != ''
                 AND NOT s.failed AND s.retry_of = '' AND s.retry_attempt <= 1) AS keys,
    groupArrayIf(cityHash64(s.tool, if(s.tool_target != '', s.tool_target, s.args_hash)),
                 s.type = {TOOL} AND s.side_effect AND NOT s.failed AND (s.tool_target != '' OR s.args_hash != '')) AS se_keys,
    countIf(s.parent_id = '' AND s.type != {RUN}) AS roots,
    maxIf(s.ts, s.type IN ({WORK})) AS last_work
  FROM {{s}} AS s LEFT JOIN {_TERMS} AS tm ON tm.trace_id = s.trace_id
  GROUP BY s.trace_id
)
WHERE length(arrayDistinct(keys)) < length(keys) OR length(arrayDistinct(se_keys)) < length(se_keys)
   OR roots > 1 OR (term > 0 AND last_work > term) OR limits > 0
"""


def best(store: Store, sql: str, rounds: int = 3) -> tuple[float, set[str]]:
    """Fastest of ``rounds`` runs, and the trace ids the query returned."""
    fastest, traces = float("inf"), set()
    for _ in range(rounds):
        started = time.perf_counter()
        rows = store.query_arrow(sql)
        fastest = min(fastest, time.perf_counter() - started)
        traces = set(rows.column("trace_id").to_pylist())
    return fastest, traces


def chunk(store: Store, traces: int, out: list[str]) -> None:
    ids = [r["t"] for r in store.query(f"SELECT DISTINCT TraceId AS t FROM {schema.SPAN_TABLE} "
                                       f"ORDER BY t LIMIT {traces}")]
    with Scratch(store, RANGE_FILTER, {"lo": ids[0], "hi": ids[-1]}) as scratch:
        spans = int(store.scalar(f"SELECT count() FROM {scratch.spans}"))
        tables = {"s": scratch.spans, "terminations": scratch.name("terminations")}
        per_mode, found = 0.0, set()
        for code in MODES:
            sql = mode_sql(code)
            took, traces_of = best(store, shaped(sql, scratch) + structural.JOIN_SETTINGS)
            per_mode += took
            found |= traces_of
        one_pass, passed = best(store, _PER_TRACE.format(**tables))
        flags, flagged = best(store, _FLAGS.format(**tables))
        grouped, _ = best(store, f"SELECT trace_id FROM {scratch.spans} GROUP BY trace_id "
                                 "HAVING NOT ignore(groupArray(tuple(ts, span_id, type, agent, tool, args_hash, "
                                 "failed, retry_of, retry_attempt, step, side_effect, tool_target, "
                                 "idempotency_key, parent_id)))")
    out.append(f"  {len(ids):>6,} traces {spans:>9,} spans: per-mode queries {per_mode:.3f} s "
               f"({spans / per_mode:>10,.0f} spans/s; {len(found):,} traces with findings); "
               f"one per-trace pass {one_pass:.3f} s ({spans / one_pass:>10,.0f} spans/s, "
               f"{per_mode / one_pass:.2f}x; same traces: {passed == found}), of which grouping "
               f"each trace's spans into one array {grouped:.3f} s; candidate flags {flags:.3f} s "
               f"({spans / flags:>11,.0f} spans/s, {per_mode / flags:.2f}x; {len(flagged):,} traces "
               f"flagged, every trace with findings among them: {found <= flagged})")
    print(out[-1], flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--chunks", type=int, nargs="+", default=[5000, 20000, 40000],
                        help="traces per chunk")
    parser.add_argument("--size", type=int, default=1_500_000, help="spans in the store built")
    parser.add_argument("--dir", type=Path, default=None, help="an existing store (default: build one)")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    out = record.header("detection_design.py", argv)
    print("\n".join(out), flush=True)
    with bench_store(args.dir, "handoffs-bench-design-") as store:
        if args.dir is None:
            for _ in grown(store, seed(store, 300), [args.size]):
                pass
        for traces in args.chunks:
            chunk(store, traces, out)
    if not args.no_write:
        record.append(RESULTS, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
