"""``handoffs demo``: a simulated team with injected failures, end to end, then the report.

The spans take the path a user's would: the SDK's OTLP/HTTP exporter, a loopback socket, the
collector (started in this process on a free port), the store; then detection and the seed
metrics, read back from the store, beside what was injected.
"""

from __future__ import annotations

import json
import math
import statistics
from collections import Counter, defaultdict
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from handoffs import conventions as c
from handoffs import taxonomy as t
from handoffs.cli.options import store_option
from handoffs.demo import KINDS, DemoRun, parse_kinds, simulate
from handoffs.store import Store, open_store, schema

_SEED_METRICS = (
    (t.OVERWRITE_RATE, "overwrite rate", "{:.0%}"),
    (t.TOKENS_BEFORE_INTERRUPTION, "tokens before\ninterruption", "{:.0f}"),
    (t.AUTONOMOUS_COMPLETION_RATE, "autonomous\ncompletion", "{:.0%}"),
    (t.ERROR_AMPLIFICATION, "error\namplification", "{:.1f}x"),
)


def _finite(ctx: click.Context, param: click.Parameter, value: float) -> float:
    if not math.isfinite(value):  # nan passes FloatRange: every comparison with it is false
        raise click.BadParameter(f"{value} is not a number between 0 and 1")
    return value


@click.command(help="Run a simulated agent team with injected failures through SDK -> OTLP -> collector "
                    "-> store, detect, and print the report per run.")
@click.option("--runs", "n_runs", type=click.IntRange(1, 100_000), default=20, show_default=True,
              help="How many team runs to simulate.")
@click.option("--seed", type=int, default=1, show_default=True, help="Same seed, same runs.")
@click.option("--inject", default="all", show_default=True, metavar="KINDS",
              help=f"Failures to inject: 'all', 'none', or a comma list of {', '.join(KINDS)} "
                   "(or their codes).")
@click.option("--failure-rate", type=click.FloatRange(0, 1), default=0.6, show_default=True, callback=_finite,
              help="Share of runs with an injected failure; the rest are clean.")
@store_option
def demo(n_runs: int, seed: int, inject: str, failure_rate: float, store_url: str | None) -> None:
    kinds = parse_kinds(inject)
    console = Console()
    if not console.is_terminal and console.width < 120:
        console = Console(width=120)  # piped output: room for the report's columns
    store = open_store(store_url)
    console.print(f"store: [bold]{store.url.redacted()}[/]")
    runs = _emit(console, store, n_runs, seed, kinds, failure_rate)
    trace_ids = [r.trace_id for r in runs]
    landed = store.scalar(f"SELECT uniqExact(TraceId) FROM {schema.SPAN_TABLE} "
                          "WHERE TraceId IN {t:Array(String)}", {"t": trace_ids})
    console.print(f"{landed} of {len(runs)} run traces are in the store")
    findings, metrics = _judge(console, store, runs)
    _report(console, runs, findings, metrics)


def _emit(console: Console, store: Store, n_runs: int, seed: int, kinds: list[str],
          failure_rate: float) -> list[DemoRun]:
    """Simulate through the SDK's OTLP exporter into a collector on a loopback port."""
    from handoffs.collector import Collector

    collector = Collector(store, host="127.0.0.1", port=0).start()
    endpoint = f"http://127.0.0.1:{collector.port}"
    console.print(f"collector: [bold]{endpoint}/v1/traces[/] (OTLP/HTTP, in this process)")
    columns = (TextColumn("simulating"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    try:
        with Progress(*columns, console=console, transient=True) as progress:
            task = progress.add_task("runs", total=n_runs)
            runs = simulate(n_runs, seed, kinds, failure_rate, endpoint=endpoint,
                            progress=lambda _run: progress.advance(task))
    finally:
        drained = collector.stop()
    if not drained:
        console.print("[yellow]the collector could not insert everything; the rest stays in its spool[/]")
    return runs


def _judge(console: Console, store: Store,
           runs: list[DemoRun]) -> tuple[dict[str, list[Any]], dict[str, dict[str, float]]]:
    """Findings per trace and run-scope metrics per run, from the detectors."""
    from handoffs.detectors import detect
    from handoffs.detectors import metrics as seed_metrics

    with console.status("detecting"):
        judged = detect(store, [r.trace_id for r in runs])
        seed_metrics.compute_metrics(store, [r.run_id for r in runs])
        rows = seed_metrics.load(store, [r.run_id for r in runs])
    findings = {tf.trace_id: tf.findings for tf in judged}
    metrics: dict[str, dict[str, float]] = defaultdict(dict)
    for row in rows:
        if row["scope"] == t.SCOPE_RUN:
            metrics[row["run_id"]][row["metric"]] = row["value"]
    return findings, metrics


def _report(console: Console, runs: list[DemoRun], findings: dict[str, list[Any]],
            metrics: dict[str, dict[str, float]]) -> None:
    table = Table(title="Runs", show_lines=False, header_style="bold")
    table.add_column("#", justify="right")
    table.add_column("topology")
    table.add_column("team", justify="right")
    for _, title, _ in _SEED_METRICS:
        table.add_column(title, justify="right")
    table.add_column("injected")
    table.add_column("found")
    hits: Counter[str] = Counter()
    exact: Counter[str] = Counter()
    planted: Counter[str] = Counter()
    extra: Counter[str] = Counter()
    for run in runs:
        found = findings.get(run.trace_id, [])
        found_codes = {f.code for f in found}
        injected_codes = {i["code"] for i in run.injected}
        for inj in run.injected:
            planted[inj["code"]] += 1
            hits[inj["code"]] += inj["code"] in found_codes
            exact[inj["code"]] += any(f.code == inj["code"] and f.agent == inj["agent"] and f.step == inj["step"]
                                      for f in found)
        extra.update(found_codes - injected_codes)
        m = metrics.get(run.run_id, {})
        cells = [fmt.format(m[key]) if key in m else "-" for key, _, fmt in _SEED_METRICS]
        table.add_row(str(run.index), run.topology, str(len(run.workers) + 1), *cells,
                      _codes(sorted(injected_codes), found_codes, "green"),
                      _codes(sorted(found_codes), injected_codes, "green", miss="yellow"))
    console.print(table)

    summary = Table(title="Findings vs injected (ground truth: handoff.demo.injected)", header_style="bold")
    for col in ("mode", "injected", "found in the run", "same agent and step", "found, not injected"):
        summary.add_column(col, justify="left" if col == "mode" else "right")
    for code in sorted(set(planted) | set(extra)):
        summary.add_row(f"{code} {t.BY_CODE[code].name}" if code in t.BY_CODE else code,
                        str(planted[code]), str(hits[code]), str(exact[code]), str(extra[code]))
    console.print(summary)

    amp = defaultdict(list)
    for run in runs:
        value = metrics.get(run.run_id, {}).get(t.ERROR_AMPLIFICATION)
        if value is not None and any(i["code"] == t.ERROR_CASCADE for i in run.injected):
            amp[run.topology].append(value)
    if amp:
        parts = [f"{topo} {statistics.mean(v):.1f}x over {len(v)} cascade(s)" for topo, v in sorted(amp.items())]
        console.print("error amplification by topology: " + "; ".join(parts))
    console.print(f"ground truth per run: {c.DEMO_INJECTED} on the run span; "
                  f"e.g. {json.dumps(next((r.injected for r in runs if r.injected), []))}")


def _codes(codes: list[str], other: set[str], match_style: str, miss: str = "red") -> str:
    if not codes:
        return "[dim]none[/]"
    return " ".join(f"[{match_style if code in other else miss}]{code}[/]" for code in codes)
