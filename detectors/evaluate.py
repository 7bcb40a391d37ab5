"""Measured detector quality on the demo's injected ground truth, written as a Markdown report.

    python -m handoffs.detectors.evaluate --runs 200 --seed 1 --out reports/demo_quality.md

Simulates seeded demo runs into a fresh embedded store, runs ``detect`` on them, and compares
the codes found per run with the codes the demo injected (``handoff.demo.injected`` on the run
span, read only here, never by a detector). Scores are per run and per mode: a run counts as a
true positive for a mode when the mode was injected and found. For true positives the report
also says how often the finding names the injected agent and step. Clean runs (nothing
injected) give the false-positive rate: clean runs with any finding / clean runs.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from handoffs import conventions as c
from handoffs import taxonomy as t
from handoffs.store import Store, open_store, schema

from .pipeline import detect, version


@dataclass
class ModeScore:
    """Confusion counts for one mode over runs, and agent/step agreement on hits."""

    tp: int = 0
    fp: int = 0
    fn: int = 0
    agent_ok: int = 0
    step_ok: int = 0

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0


@dataclass
class Report:
    runs: int
    seed: int
    scores: dict[str, ModeScore] = field(default_factory=dict)
    clean_runs: int = 0
    clean_with_findings: int = 0
    clean_fp_codes: Counter[str] = field(default_factory=Counter)
    injected: Counter[str] = field(default_factory=Counter)
    spans: int = 0
    seconds: float = 0.0

    @property
    def clean_fp_rate(self) -> float:
        return self.clean_with_findings / self.clean_runs if self.clean_runs else 0.0


def score(store: Store) -> Report:
    """Compare stored findings with the demo's ground truth, run by run."""
    truth_rows = store.query(f"""
        SELECT TraceId AS trace_id, SpanAttributes['{c.DEMO_INJECTED}'] AS injected
        FROM {schema.SPAN_TABLE} FINAL
        WHERE SpanAttributes['{c.SPAN_TYPE}'] = '{c.SpanType.RUN.value}'
            AND mapContains(SpanAttributes, '{c.DEMO_INJECTED}')""")
    truth = {r["trace_id"]: json.loads(r["injected"] or "[]") for r in truth_rows}
    found = {tf.trace_id: tf for tf in detect(store, list(truth))}
    report = Report(runs=len(truth), seed=0)
    for tid, injected in truth.items():
        tf = found.get(tid)
        got = tf.codes() if tf else set()
        want = {i["code"] for i in injected}
        report.injected.update(want)
        if not want:
            report.clean_runs += 1
            if got:
                report.clean_with_findings += 1
                report.clean_fp_codes.update(got)
        for code in want | got:
            s = report.scores.setdefault(code, ModeScore())
            if code in want and code in got:
                s.tp += 1
                wanted = [i for i in injected if i["code"] == code]
                hits = [f for f in tf.findings if f.code == code] if tf else []
                s.agent_ok += any(f.agent == w["agent"] for f in hits for w in wanted)
                s.step_ok += any(f.step == w["step"] for f in hits for w in wanted)
            elif code in want:
                s.fn += 1
            else:
                s.fp += 1
    return report


def render_section(report: Report, title: str, about: str) -> list[str]:
    """One suite's table and its clean-run false-positive line."""
    lines = [
        f"## {title}", "",
        f"{about} {report.runs} runs ({report.spans:,} spans); detection took {report.seconds:.1f} s.", "",
        "| mode | injected runs | TP | FP | FN | precision | recall | F1 | agent ok | step ok |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for code in sorted(report.scores, key=lambda k: (k not in report.injected, k)):
        s = report.scores[code]
        name = t.BY_CODE[code].name if code in t.BY_CODE else code
        lines.append(
            f"| {code} {name} | {report.injected.get(code, 0)} | {s.tp} | {s.fp} | {s.fn} | "
            f"{s.precision:.3f} | {s.recall:.3f} | {s.f1:.3f} | "
            f"{s.agent_ok / s.tp if s.tp else 0:.2f} | {s.step_ok / s.tp if s.tp else 0:.2f} |")
    lines += [
        "",
        f"**False positives on clean runs:** {report.clean_with_findings} of {report.clean_runs} clean "
        f"runs had any finding ({report.clean_fp_rate:.1%}; target at most 1%)"
        + (": " + ", ".join(f"{k} x{v}" for k, v in report.clean_fp_codes.most_common())
           if report.clean_fp_codes else "."),
        "",
    ]
    return lines


def render(sections: list[tuple[Report, str, str]], command: str) -> str:
    """The report as Markdown, with the command that regenerates it."""
    lines = [
        "# Detector quality on injected failures",
        "",
        f"Generated {datetime.now(timezone.utc):%Y-%m-%d %H:%M UTC} at commit {git_revision() or '?'} "
        f"with detector set `{version()}` by:",
        "",
        "```",
        command,
        "```",
        "",
        "Scores are per run: a run is a true positive for a mode when the mode was injected into "
        "it and a finding of that mode was reported for it; a false positive when it was reported "
        "but not injected. Agent/step: share of true positives where a finding names the injected "
        "agent / step. Ground truth is read from the run span by this evaluation only.",
        "",
    ]
    for report, title, about in sections:
        lines += render_section(report, title, about)
    lines += [
        "Modes listed without injected runs were reported where nothing was injected: each such "
        "row is a false positive against the ground truth.",
        "",
    ]
    return "\n".join(lines)


def _count_spans(store: Store) -> int:
    return int(store.scalar(f"SELECT count() FROM {schema.SPAN_TABLE}") or 0)


def _suite(store: Store, simulate_runs: Callable[[], object]) -> Report:
    simulate_runs()
    started = time.perf_counter()
    report = score(store)
    report.seconds = time.perf_counter() - started
    report.spans = _count_spans(store)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m handoffs.detectors.evaluate", description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=200, help="runs per suite")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None, help="write the Markdown report here")
    args = parser.parse_args(argv)
    from handoffs import sdk
    from handoffs.demo import simulate

    from . import scenarios

    sections = []
    with tempfile.TemporaryDirectory(prefix="handoffs-eval-") as tmp:
        demo_store = open_store(f"chdb://{tmp}/store?database=demo")
        sections.append((
            _suite(demo_store, lambda: simulate(args.runs, seed=args.seed, store=demo_store)),
            "The demo's injected failures (the independent ground truth)",
            "`handoffs.demo.simulate` (written by the SDK engineer), every kind it injects, seed "
            f"{args.seed}:"))
        scen_store = open_store(f"chdb://{tmp}/store?database=scenarios")

        def play_scenarios() -> None:
            sdk.configure("scenarios", store=scen_store, project="scenarios")
            try:
                scenarios.simulate(args.runs, seed=args.seed)
            finally:
                sdk.shutdown()

        sections.append((
            _suite(scen_store, play_scenarios),
            "The other structural modes (`handoffs.detectors.scenarios`)",
            "Seeded SDK runs by the detectors' author injecting the structural modes the demo does "
            "not, over a team with healthy noise: a self-check through the real SDK, not an "
            f"independent benchmark. Seed {args.seed}:"))
    command = "python -m handoffs.detectors.evaluate " + " ".join(sys.argv[1:] if argv is None else argv)
    text = render(sections, command.strip())
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    sys.stdout.write(text)
    return 0


def git_revision() -> str:
    """The commit the report was made at, if in a git checkout."""
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


if __name__ == "__main__":
    raise SystemExit(main())
