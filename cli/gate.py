"""``handoffs gate``: apply a policy to the runs in the store; exit 0 pass, 1 fail, 2 bad input."""

from __future__ import annotations

import sys

import click

from handoffs.gate import load_policy, report, run_gate
from handoffs.store import open_store

from .options import store_option


@click.command()
@click.option("--policy", "policy_path", required=True, metavar="FILE",
              help="Policy TOML (see handoffs.example.toml).")
@store_option
@click.option("--baseline", default=None, metavar="RUN",
              help="Compare against these runs: run ids or commits, comma-separated "
                   "(default: the policy's [baseline], the last green commit on main).")
@click.option("--junit", "junit_path", default=None, metavar="FILE",
              help="Also write JUnit XML: one test case per check.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table",
              show_default=True, help="What to print on stdout.")
@click.option("--detect/--no-detect", default=None,
              help="Run the detectors and metrics first (default: the policy's [gate] detect, true).")
@click.option("--record/--no-record", default=True, show_default=True,
              help="Store the result in handoffs_gate_results (what 'last green commit' reads).")
def gate(policy_path: str, store_url: str | None, baseline: str | None, junit_path: str | None,
         fmt: str, detect: bool | None, record: bool) -> None:
    """Judge delegation quality in CI: exit 0 on pass, 1 on a failing check, 2 on bad input.

    Prints a table (check, value, limit, baseline, verdict) with the runs, agents and spans
    behind each failing check; appends Markdown to $GITHUB_STEP_SUMMARY when it is set.
    """
    policy = load_policy(policy_path)  # before the store: a bad policy costs nothing to report
    if junit_path:
        report.check_junit_path(junit_path)  # before judging: a bad path records no gate result
    store = open_store(store_url, create=False)  # judging a mistyped path must not make an empty store
    result = run_gate(store, policy, baseline=baseline, detect=detect, record=record)
    try:
        if fmt == "json":
            report.write_json(result, sys.stdout)
        else:
            report.write_table(result)
        sys.stdout.flush()
    except BrokenPipeError:
        report.stdout_closed()
    if junit_path:
        report.write_junit(result, junit_path)
    report.append_step_summary(result)
    # SystemExit, not click's Exit: in non-standalone mode click returns Exit's code instead of exiting.
    sys.exit(result.exit_code)
