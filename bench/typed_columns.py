"""Typed hand-off columns at ingest: what detection would gain and what ingest and disk would pay.

Detection's first step reads the attribute maps of every span into the normalised shape
(``handoffs.detectors.normalise``: about 40 map lookups a span); reading maps is what keeps
full detection far from the engine's speed. The alternative is to compute that shape once, at
insert time, as a MATERIALIZED tuple column of the span table (whoever writes the rows, the
OpenTelemetry Collector's exporter included). This measures both sides on the same rows, in the
same run, at 3 sizes:

- insert: the same rows copied into the span table as it is and into one with the typed column
  (INSERT ... SELECT, interleaved rounds, median of per-round ratios);
- disk: bytes per span of each after merges (OPTIMIZE FINAL);
- the shape: building detection's normalised spans from the maps (as ``Scratch`` does) against
  reading the typed column.

Message text (content, role) stays out of the tuple: only imported logs carry it and the text
models read it straight from the maps.

    python bench/typed_columns.py                      # 250k, 1M, 2M spans
    python bench/typed_columns.py --sizes 100000 --no-write
Results go to bench/results/typed_columns.txt with the command and the date.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import record
from detection import bench_store, grown, seed

from handoffs.detectors.normalise import SPANS
from handoffs.store import Store, schema

RESULTS = Path(__file__).parent / "results" / "typed_columns.txt"
KEYS = {"trace_id", "span_id", "parent_id", "ts", "end_ts", "name"}  # plain columns already
LEFT_OUT = {"content", "message_role"}


def shape() -> list[tuple[str, str]]:
    """(name, expression) of every column of detection's normalised spans, from its SQL."""
    body = SPANS.split("SELECT", 1)[1].split(f"FROM {schema.SPAN_TABLE} FINAL")[0]
    items, depth, current = [], 0, ""
    for ch in body:
        depth += ch == "("
        depth -= ch == ")"
        if ch == "," and depth == 0:
            items.append(current)
            current = ""
        else:
            current += ch
    items.append(current)
    out = []
    for item in items:
        expr, name = " ".join(item.split()).rsplit(" AS ", 1)
        out.append((name.strip(), expr.strip()))
    return out


def typed_column(store: Store) -> tuple[str, str]:
    """The tuple's type and expression (element types as the engine infers them)."""
    fields = [(n, e) for n, e in shape() if n not in KEYS | LEFT_OUT]
    types = [store.scalar(f"SELECT toTypeName({e}) FROM {schema.SPAN_TABLE} LIMIT 1") for _, e in fields]
    kind = "Tuple(" + ", ".join(f"{n} {t}" for (n, _), t in zip(fields, types, strict=True)) + ")"
    return kind, "tuple(" + ", ".join(e for _, e in fields) + ")"


def timed(store: Store, sql: str) -> float:
    started = time.perf_counter()
    store.command(sql)
    return time.perf_counter() - started


def table_bytes(store: Store, table: str) -> int:
    return int(store.scalar("SELECT sum(bytes_on_disk) FROM system.parts WHERE active AND table = {t:String} "
                            "AND database = currentDatabase()", {"t": table}))


def measure(store: Store, label: str, rounds: int, out: list[str]) -> None:
    spans = int(store.scalar(f"SELECT count() FROM {schema.SPAN_TABLE}"))
    kind, expr = typed_column(store)
    columns = ", ".join(f"`{r['name']}`" for r in store.query(
        "SELECT name FROM system.columns WHERE table = {t:String} AND database = currentDatabase() "
        "AND default_kind = '' ORDER BY position", {"t": schema.SPAN_TABLE}))
    for table in ("bench_plain", "bench_typed"):
        store.command(f"DROP TABLE IF EXISTS {table}")
        store.command(f"CREATE TABLE {table} AS {schema.SPAN_TABLE}")
    store.command(f"ALTER TABLE bench_typed ADD COLUMN Handoff {kind} MATERIALIZED {expr}")
    plain, typed = [], []
    for _ in range(rounds):
        for table, times in (("bench_plain", plain), ("bench_typed", typed)):
            store.command(f"TRUNCATE TABLE {table}")
            times.append(timed(store, f"INSERT INTO {table} ({columns}) SELECT {columns} FROM {schema.SPAN_TABLE}"))
    insert_ratio = statistics.median(t / p for p, t in zip(plain, typed, strict=True))
    for table in ("bench_plain", "bench_typed"):
        store.command(f"OPTIMIZE TABLE {table} FINAL")
    b_plain, b_typed = table_bytes(store, "bench_plain") / spans, table_bytes(store, "bench_typed") / spans
    names = [n for n, _ in shape() if n not in LEFT_OUT]
    from_maps = (f"SELECT {', '.join(f'{e} AS {n}' for n, e in shape() if n in names)} "
                 "FROM bench_plain FINAL")
    from_typed = (f"SELECT {', '.join(e if n in KEYS else f'Handoff.{n}' for n, e in shape() if n in names)} "
                  "FROM bench_typed FINAL")
    maps_s, typed_s = [], []
    for _ in range(rounds):
        for sql, times in ((from_maps, maps_s), (from_typed, typed_s)):
            store.command("DROP TABLE IF EXISTS bench_shape")
            times.append(timed(store, f"CREATE TABLE bench_shape ENGINE = Memory AS {sql}"))
    shape_ratio = statistics.median(m / t for m, t in zip(maps_s, typed_s, strict=True))
    line = (f"{label:>6}  spans {spans:>10,}  insert plain {statistics.median(plain):6.2f} s, typed "
            f"{statistics.median(typed):6.2f} s (typed/plain {insert_ratio:.2f}x = "
            f"{(statistics.median(typed) - statistics.median(plain)) / spans * 1e6:+.1f} us/span)  "
            f"disk {b_plain:.1f} -> {b_typed:.1f} B/span ({b_typed / b_plain:.2f}x)  "
            f"shape from maps {statistics.median(maps_s):5.2f} s, from typed {statistics.median(typed_s):5.2f} s "
            f"({shape_ratio:.1f}x faster)")
    print(line, flush=True)
    out.append(line)
    for table in ("bench_plain", "bench_typed", "bench_shape"):
        store.command(f"DROP TABLE IF EXISTS {table}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[250_000, 1_000_000, 2_000_000])
    parser.add_argument("--seed-runs", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    out = record.header("typed_columns.py", argv, f"median of {args.rounds} interleaved rounds")
    print("\n".join(out), flush=True)
    with bench_store(None, "handoffs-bench-typed-") as store:
        seed_spans = seed(store, args.seed_runs)
        for label in grown(store, seed_spans, args.sizes):
            measure(store, label, args.rounds, out)
    if not args.no_write:
        record.append(RESULTS, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
