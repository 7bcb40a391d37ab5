"""Inserts through ``Store.insert_spans`` against the engine's default insert of the same rows.

The SDK's store exporter, the importers and ``handoffs demo`` write spans through
``Store.insert_spans``, which collapses a span repeated within one insert in Arrow and turns the
ReplacingMergeTree's own in-block collapse off (the collector's writer does the same). This
measures what that gains at the SDK's batch size (512 spans) and at an importer's (10,000),
the two ways interleaved round by round in fresh databases of one chDB directory.

Then the curve the collector's batching rests on: CPU per INSERT through ``Store.insert_spans``
(chDB's threads included) at sizes from 1,000 to 100,000 rows, replicas of the demo runs under
fresh ids, and what each row past the smallest INSERT's costs: the rest is the INSERT's fixed
cost. The collector's writer inserts 50,000 rows or half a second's worth at a time because of it.

Last, what each feature of the span table as migrated costs an INSERT of the collector's kind
(with a deduplication token): the span table without the runs view, without its skip indexes,
without its deduplication window, at 10,000 and 50,000 rows, in the same rounds.

    python bench/store_insert.py [--runs 300] [--rounds 3] [--curve-rows 200000] [--no-write]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from handoffs.demo import simulate
from handoffs.store import Store, open_store, schema

sys.path.insert(0, str(Path(__file__).resolve().parent))
from record import append, header  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "store_insert.txt"
BATCHES = (512, 10_000)
CURVE_SIZES = (1_000, 5_000, 20_000, 50_000, 100_000)


def _insert_all(store: Store, table: pa.Table, batch: int, through_store: bool) -> float:
    """Seconds to insert ``table`` in ``batch``-row statements."""
    started = time.perf_counter()
    for i in range(0, table.num_rows, batch):
        part = table.slice(i, batch)
        if through_store:
            store.insert_spans(part)
        else:
            store.engine.insert_arrow(schema.SPAN_TABLE, part)
    return time.perf_counter() - started


def _quiet_store(directory: str, database: str) -> Store:
    """A fresh database with background merges stopped: what an INSERT costs is its own CPU,
    not the merges of an earlier database's parts (``SYSTEM START MERGES`` when done)."""
    store = open_store(f"chdb://{directory}?database={database}")
    store.command("SYSTEM STOP MERGES")
    return store


def _cpu_per_insert(store: Store, table: pa.Table, size: int, token: str | None = None) -> float:
    """CPU seconds of this process (chDB's threads included) per ``size``-row ``Store.insert_spans``
    of ``table``, each with the dedup token ``{token}-{offset}`` when ``token`` is given."""
    started = time.process_time()
    for i in range(0, table.num_rows, size):
        store.insert_spans(table.slice(i, size), dedup_token=f"{token}-{i}" if token else None)
    return (time.process_time() - started) / -(-table.num_rows // size)


def replicas(table: pa.Table, rows: int) -> pa.Table:
    """``rows`` rows of copies of ``table``, each copy under fresh trace and span ids (a 4-hex-digit
    copy number in place of each id's first four; empty parent ids stay empty), so no span repeats
    within an INSERT, as in the collector's batches."""
    copies = []
    for k in range(-(-rows // table.num_rows)):
        copy = table
        for name in ("TraceId", "SpanId", "ParentSpanId"):
            ids = table.column(name)
            fresh = pc.binary_join_element_wise(pa.scalar(f"{k:04x}"), pc.utf8_slice_codeunits(ids, 4), "")
            copy = copy.set_column(table.schema.get_field_index(name), name,
                                   pc.if_else(pc.equal(ids, ""), ids, fresh))
        copies.append(copy)
    return pa.concat_tables(copies).slice(0, rows).combine_chunks()


def insert_curve(directory: str, table: pa.Table, rounds: int) -> list[str]:
    """CPU per INSERT at each of ``CURVE_SIZES`` (median of ``rounds``, sizes interleaved, each
    into a fresh database), and the cost of each row past the smallest INSERT's. Background
    merges are stopped meanwhile: the CPU is the INSERTs' own, not the merges of an earlier
    database's parts."""
    sizes = [n for n in CURVE_SIZES if n <= table.num_rows]
    samples: dict[int, list[float]] = {n: [] for n in sizes}
    for r in range(rounds):
        for size in sizes:
            store = _quiet_store(directory, f"curve_{size}_{r}")
            samples[size].append(_cpu_per_insert(store, table, size))
    store.command("SYSTEM START MERGES")
    per_insert = {n: statistics.median(cpu) for n, cpu in samples.items()}
    smallest = min(per_insert)
    lines = [f"  INSERT size curve, Store.insert_spans, {table.num_rows:,} rows at each size, CPU of "
             f"this process (chDB's threads included; merges stopped), median of {rounds} rounds:"]
    for size, cpu in per_insert.items():
        extra = (f"; each row past the first {smallest:,}: {(cpu - per_insert[smallest]) / (size - smallest) * 1e6:5.2f} us"
                 if size > smallest else "")
        lines.append(f"    {size:>7,} rows: {cpu * 1e3:7.1f} ms per INSERT = {cpu / size * 1e6:6.2f} us per row{extra}")
    return lines


def _drop_runs_view(store: Store) -> None:
    store.command(f"DROP VIEW IF EXISTS {schema.RUNS_VIEW}")


def _drop_skip_indexes(store: Store) -> None:
    for row in store.query("SELECT name FROM system.data_skipping_indices WHERE database = currentDatabase() "
                           "AND table = {t:String}", {"t": schema.SPAN_TABLE}):
        store.command(f"ALTER TABLE {schema.SPAN_TABLE} DROP INDEX `{row['name']}`")


def _no_dedup_window(store: Store) -> None:
    store.command(f"ALTER TABLE {schema.SPAN_TABLE} MODIFY SETTING non_replicated_deduplication_window = 0")


FEATURES: dict[str, Callable[[Store], None] | None] = {
    "as migrated": None, "without the runs view": _drop_runs_view,
    "without skip indexes": _drop_skip_indexes, "without the dedup window": _no_dedup_window}
FEATURE_SIZES = (10_000, 50_000)


def table_features(directory: str, table: pa.Table, rounds: int) -> list[str]:
    """CPU per INSERT (``Store.insert_spans`` with a dedup token, merges stopped) into the span
    table as migrated and without each of its features, median of ``rounds`` rounds, each
    starting with a different variant."""
    samples: dict[tuple[str, int], list[float]] = {}
    variants = list(enumerate(FEATURES.items()))
    for r in range(rounds):
        for size in FEATURE_SIZES:
            # A different variant goes first each round: the first INSERTs into a fresh database pay more.
            for which, (label, change) in variants[r % len(variants):] + variants[:r % len(variants)]:
                store = _quiet_store(directory, f"feature_{which}_{size}_{r}")
                if change is not None:
                    change(store)
                samples.setdefault((label, size), []).append(
                    _cpu_per_insert(store, table, size, token=f"bench-{which}-{size}-{r}"))
    store.command("SYSTEM START MERGES")
    lines = [f"  what the span table's features cost an INSERT (CPU ms per INSERT with a dedup token, merges "
             f"stopped, median of {rounds} rounds; the change against as migrated):"]
    for size in FEATURE_SIZES:
        base = statistics.median(samples[("as migrated", size)])
        cells = []
        for label in FEATURES:
            cpu = statistics.median(samples[(label, size)])
            cells.append(f"{label} {cpu * 1e3:.1f}" + ("" if label == "as migrated" else f" ({(cpu - base) * 1e3:+.1f})"))
        lines.append(f"    {size:>6,} rows: " + "; ".join(cells))
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=300, help="simulated demo runs to insert")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--curve-rows", type=int, default=200_000, help="rows inserted at each size of the curve")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)

    directory = tempfile.mkdtemp(prefix="handoffs-bench-insert-")
    source = open_store(f"chdb://{directory}")
    simulate(args.runs, seed=1, store=source)
    table = source.query_arrow(f"SELECT * FROM {schema.SPAN_TABLE} ORDER BY TraceId, Timestamp")
    lines = header("store_insert.py", argv, f"{table.num_rows:,} spans of {args.runs} demo runs")
    for line in lines:
        print(line)
    for batch in BATCHES:
        ratios, plain, ours = [], [], []
        for r in range(args.rounds):
            before = _insert_all(open_store(f"chdb://{directory}?database=plain_{batch}_{r}"), table, batch, False)
            after = _insert_all(open_store(f"chdb://{directory}?database=store_{batch}_{r}"), table, batch, True)
            plain.append(table.num_rows / before)
            ours.append(table.num_rows / after)
            ratios.append(before / after)
        line = (f"  {batch:>6,}-span inserts: engine default {statistics.median(plain):>9,.0f} spans/s, "
                f"Store.insert_spans {statistics.median(ours):>9,.0f} spans/s: "
                f"{statistics.median(ratios):.2f}x (per round: {', '.join(f'{x:.2f}' for x in ratios)})")
        print(line)
        lines.append(line)
    rows = replicas(table, args.curve_rows)
    for line in [*insert_curve(directory, rows, args.rounds), *table_features(directory, rows, args.rounds)]:
        print(line)
        lines.append(line)
    if not args.no_write:
        append(RESULTS, lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
