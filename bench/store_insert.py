"""Inserts through ``Store.insert_spans`` against the engine's default insert of the same rows.

The SDK's store exporter, the importers and ``handoffs demo`` write spans through
``Store.insert_spans``, which collapses a span repeated within one insert in Arrow and turns the
ReplacingMergeTree's own in-block collapse off (the collector's writer does the same). This
measures what that gains at the SDK's batch size (512 spans) and at an importer's (10,000),
the two ways interleaved round by round in fresh databases of one chDB directory.

    python bench/store_insert.py [--runs 300] [--rounds 3] [--no-write]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa

from handoffs.demo import simulate
from handoffs.store import Store, open_store, schema

sys.path.insert(0, str(Path(__file__).resolve().parent))
from record import append, header  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "store_insert.txt"
BATCHES = (512, 10_000)


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=300, help="simulated demo runs to insert")
    parser.add_argument("--rounds", type=int, default=3)
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
    if not args.no_write:
        append(RESULTS, lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
