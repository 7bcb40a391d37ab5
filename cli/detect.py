"""``handoffs detect`` (findings per trace) and ``handoffs attribute`` (root cause per failed trace).

Both judge what the store holds, incrementally: traces already judged at their current size are
read back, not judged again. JSON Lines go to stdout, progress to stderr, so the output pipes.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from typing import TYPE_CHECKING, Any

import click

from handoffs.errors import UsageError
from handoffs.store import open_store

from .options import store_option

if TYPE_CHECKING:
    from handoffs.detectors.findings import TraceFindings

FORMATS = click.Choice(["table", "jsonl"])


@contextmanager
def _progress(label: str) -> Iterator[Callable[[int, int], None]]:
    """A rich progress bar on stderr (quiet when stderr is not a terminal)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True, disable=not console.is_terminal) as bar:
        task = bar.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def _check_found(asked: tuple[str, ...], found: set[str]) -> None:
    missing = [t for t in asked if t not in found]
    if missing:
        raise UsageError(f"no trace {missing[0]} in the store; list stored traces with "
                         "`handoffs detect --format jsonl` or check --store")


def _emit_jsonl(rows: Iterable[dict[str, Any]]) -> None:
    out = sys.stdout
    for row in rows:
        out.write(json.dumps(row, ensure_ascii=False) + "\n")
    out.flush()


def _table(title: str, columns: list[str], rows: list[list[str]], caption: str | None = None) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, caption=caption, show_lines=False)
    for col in columns:
        table.add_column(col, overflow="fold")
    for row in rows:
        table.add_row(*row)
    Console().print(table)


TABLE_ROWS = 1000  # findings a table shows; past it, people want a summary and programs jsonl


class _Report:
    """Judged traces as they come, a page at a time: JSON Lines are written at once; a table
    keeps its first ``TABLE_ROWS`` findings and counts the rest, so memory stays flat."""

    def __init__(self, fmt: str) -> None:
        self.fmt = fmt
        self.traces = self.failed = self.findings = 0
        self.rows: list[list[str]] = []

    def add(self, traces: Sequence[TraceFindings]) -> None:
        self.traces += len(traces)
        self.failed += sum(1 for tf in traces if tf.findings)
        if self.fmt == "jsonl":
            _emit_jsonl({k: v for k, v in tf.to_json().items() if k != "run_id"} for tf in traces)
            return
        for tf in traces:
            for f in sorted(tf.findings, key=lambda f: (f.step, f.code)):
                self.findings += 1
                if len(self.rows) < TABLE_ROWS:
                    self.rows.append([tf.source_id or tf.run_id or tf.trace_id[:16], f.code, f.agent,
                                      str(f.step), f"{f.confidence:.2f}", f.evidence])

    def close(self) -> None:
        if self.fmt == "jsonl":
            return
        more = self.findings - len(self.rows)
        caption = (f"the first {len(self.rows):,} of {self.findings:,} findings; "
                   "--format jsonl lists every one" if more else None)
        _table(f"{self.traces} trace(s), {self.failed} with findings",
               ["run", "code", "agent", "step", "conf", "evidence"], self.rows, caption)


@click.command()
@store_option
@click.option("--format", "fmt", type=FORMATS, default="table", show_default=True,
              help="table for people, jsonl for programs (one object per trace).")
@click.option("--trace", "trace_ids", multiple=True, metavar="ID", help="Only this trace (repeatable).")
@click.option("--full", is_flag=True, help="Judge every trace again, not only new or grown ones.")
@click.option("--new", "only_new", is_flag=True,
              help="Report only the traces judged now (new or grown), not every stored trace: "
                   "after each CI build, its cost stays the same however large the store.")
@click.option("--metrics/--no-metrics", default=True, show_default=True,
              help="Also compute and store the seed metrics of the runs judged.")
def detect(store_url: str | None, fmt: str, trace_ids: tuple[str, ...], full: bool, only_new: bool,
           metrics: bool) -> None:
    """Find failure modes in stored traces: one result per trace, with its findings."""
    from handoffs.detectors.findings import load_pages
    from handoffs.detectors.metrics import MetricSums, compute_metrics
    from handoffs.detectors.pipeline import judge_pending, with_stored

    if only_new and trace_ids:
        raise UsageError("--new reports the traces judged now and --trace names traces: use one of them")
    store = open_store(store_url, create=False)  # judging a mistyped path must not make an empty store
    asked = list(trace_ids) or None
    # A full pass judges every trace: it gathers the metrics from the shape it reads anyway,
    # instead of reading every trace again afterwards.
    judged_all = full and asked is None
    together = metrics and judged_all
    report = _Report(fmt)
    fresh: list[TraceFindings] = []  # judged now, kept only when traces were asked for
    runs: set[str] = set()  # of the traces judged now, or asked for: their metrics are due
    with ExitStack() as held:
        sums = held.enter_context(MetricSums(store)) if together else None
        with _progress("detecting") as progress:
            for chunk in judge_pending(store, asked, incremental=not full, progress=progress,
                                       on_shape=sums.add if sums else None):
                if only_new or judged_all:
                    report.add(chunk)  # every trace reported is judged now: report it once stored
                elif asked is not None:
                    fresh.extend(chunk)
                if metrics and not together and asked is None:
                    runs.update(tf.run_id or tf.trace_id for tf in chunk)
        if sums is not None:
            sums.write()
    if asked is not None:
        results = with_stored(store, fresh, asked)
        _check_found(trace_ids, {tf.trace_id for tf in results})
        runs = {tf.run_id or tf.trace_id for tf in results}
    if metrics and not together and runs:
        # The runs judged now (or asked for) whose metrics are older than that: no other run's
        # metrics can have changed, and recomputing every run made one new run cost as much as
        # the whole store.
        compute_metrics(store, sorted(runs), out_of_date=True)
    if asked is not None:
        report.add(results)
    elif not (only_new or judged_all):
        # Every judged trace, now or before, read back a page at a time: what grows with the
        # store is the time this takes, not the memory.
        for page in load_pages(store):
            report.add(page)
    report.close()


@click.command()
@store_option
@click.option("--format", "fmt", type=FORMATS, default="table", show_default=True,
              help="table for people, jsonl for programs (one object per failed trace).")
@click.option("--trace", "trace_ids", multiple=True, metavar="ID", help="Only this trace (repeatable).")
def attribute(store_url: str | None, fmt: str, trace_ids: tuple[str, ...]) -> None:
    """Name the root cause (agent, step) of each failed trace."""
    from handoffs.detectors.attribution import attribute as run_attribute
    from handoffs.detectors.attribution import stored_traces

    store = open_store(store_url, create=False)  # judging a mistyped path must not make an empty store
    with _progress("attributing") as progress:
        rows = run_attribute(store, list(trace_ids) or None, progress=progress)
    if trace_ids:
        _check_found(trace_ids, set(stored_traces(store, list(trace_ids))))
    if fmt == "jsonl":
        _emit_jsonl(rows)
        return
    _table(f"{len(rows)} failed trace(s)", ["trace", "source", "agent", "step", "conf"],
           [[r["trace_id"][:16], r["source_id"], r["agent"], str(r["step"]), f"{r['confidence']:.2f}"]
            for r in rows])
