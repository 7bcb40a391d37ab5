"""The gate's reports: a CI-style table, JUnit XML, GitHub's job summary (Markdown), and JSON.

Each report says the same things: per check the value, limit, baseline, effect and verdict,
and for every broken check the runs, agents, spans and traces that broke it.
"""

from __future__ import annotations

import functools
import json
import os
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, TextIO

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from handoffs.errors import UsageError

from .judge import CheckResult, GateResult
from .policy import FAIL, PASS, WARN

ENV_STEP_SUMMARY = "GITHUB_STEP_SUMMARY"
_STYLE = {PASS: "green", WARN: "yellow", FAIL: "bold red"}


def verdict_label(result: CheckResult) -> str:
    """PASS / WARN / FAIL, marked when the policy's no-runs or too-few-runs rule decided it, or
    when the check did not apply to the runs."""
    label = result.verdict.upper()
    if not result.applicable:
        return f"{label} (not applicable)"
    return label if result.decided else f"{label} ({result.undecided_because})"


def _change(result: CheckResult) -> str:
    cmp = result.comparison
    if cmp is None:
        return "-"
    p = f" p={cmp.p_value:.2g}" if cmp.p_value is not None else ""
    interval = f" [{cmp.low:+.3g}, {cmp.high:+.3g}]" if cmp.decides_by_interval else ""
    return f"{cmp.effect:+.3g}{interval}{p}"


# Characters agent text may carry that no report should: control characters (an ANSI colour code
# in an agent's name would restyle the terminal; XML 1.0 cannot hold them at all) and lone surrogates.
_UNPRINTABLE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\ud800-\udfff\ufffe\uffff]")


def _printable(text: str) -> str:
    """``text`` with what no report should carry replaced by U+FFFD."""
    return _UNPRINTABLE.sub("\ufffd", text)


def _shown(text: str) -> str:
    """Agent text for the terminal: printable, and its markup escaped."""
    return escape(_printable(text))


def stdout_closed() -> None:
    """The reader of stdout stopped early (``| head``): send the rest nowhere, so the gate can
    still write its reports and exit with its verdict (1 would say a check failed)."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


class _Console(Console):
    def on_broken_pipe(self) -> None:  # rich's own exits 1
        self.quiet = True
        stdout_closed()


def write_table(result: GateResult, out: TextIO | None = None, width: int = 140) -> None:
    """The table CI logs show: one row per check, then what broke each failing one."""
    console = _Console(file=out, width=width, highlight=False, soft_wrap=False,
                       force_terminal=None if out is None else False)
    # Lines of text are never broken (soft_wrap): a CI log keeps each one whole, for grep and
    # for copying a trace id; only the table is laid out to the width.
    line = functools.partial(console.print, soft_wrap=True)
    line(f"handoffs gate: policy {_shown(result.policy.name)} ({_shown(result.policy.source)})")
    line(f"  judged:   {_shown(result.runs_text)}")
    line(f"  baseline: {_shown(result.baseline_text)}")
    for note in result.notes:
        line(f"  note: {_shown(note)}")
    table = Table(show_lines=False, header_style="bold")
    for col in ("check", "value", "limit", "baseline", "change (worse +) [interval]", "verdict"):
        table.add_column(col, overflow="fold")
    for r in result.checks:
        table.add_row(*(_shown(x) for x in (r.check.name, r.value_text, r.limit_text or "-",
                                            r.baseline_text or "-", _change(r))),
                      f"[{_STYLE[r.verdict]}]{_shown(verdict_label(r))}[/]")
    console.print(table)
    for r in result.checks:
        if r.verdict == PASS:
            continue
        line(f"[{_STYLE[r.verdict]}]{r.verdict.upper()}[/] {_shown(r.check.name)}: {_shown(r.message)}")
        for ev in r.evidence:
            line(f"    - {_shown(ev.describe())}")
    style = _STYLE[result.verdict]
    n_fail = sum(r.verdict == FAIL for r in result.checks)
    n_warn = sum(r.verdict == WARN for r in result.checks)
    line(f"[{style}]gate {result.verdict.upper()}[/]: {len(result.checks)} checks, "
         f"{n_fail} failed, {n_warn} warned (gate id {result.gate_id})")


def _failure_text(r: CheckResult) -> str:
    lines = [r.message, f"value: {r.value_text}; limit: {r.limit_text}; baseline: {r.baseline_text or '-'}"]
    lines += [f"- {ev.describe()}" for ev in r.evidence]
    return "\n".join(lines)


def junit_tree(result: GateResult) -> ET.ElementTree:
    """JUnit XML: one testsuite for the gate, one testcase per check.

    fail -> <failure>, warn -> passes with the warning in <system-out>, undecided pass ->
    <skipped>; failure text carries the evidence, trace ids included, so a CI's test view
    shows where to look.
    """
    failures = sum(r.verdict == FAIL for r in result.checks)
    skipped = sum(r.verdict == PASS and not r.decided for r in result.checks)
    root = ET.Element("testsuites", name="handoffs gate", tests=str(len(result.checks)),
                      failures=str(failures), errors="0", skipped=str(skipped))
    suite = ET.SubElement(root, "testsuite", name=f"handoffs gate: {result.policy.name}",
                          tests=str(len(result.checks)), failures=str(failures), errors="0",
                          skipped=str(skipped))
    props = ET.SubElement(suite, "properties")
    for name, value in (("gate_id", result.gate_id), ("policy", result.policy.source),
                        ("commit", result.commit), ("branch", result.branch),
                        ("judged", result.runs_text), ("baseline", result.baseline_text)):
        ET.SubElement(props, "property", name=name, value=value)
    classname = f"handoffs.gate.{result.policy.name}"
    for r in result.checks:
        case = ET.SubElement(suite, "testcase", classname=classname, name=r.check.name)
        if r.verdict == FAIL:
            failure = ET.SubElement(case, "failure", message=r.message, type=r.check.target)
            failure.text = _failure_text(r)
        elif r.verdict == PASS and not r.decided:
            ET.SubElement(case, "skipped", message=r.message)
        out = ET.SubElement(case, "system-out")
        out.text = (f"WARN: {_failure_text(r)}" if r.verdict == WARN else
                    f"{r.message}\nvalue: {r.value_text}; limit: {r.limit_text}; "
                    f"baseline: {r.baseline_text or '-'}")
    for element in root.iter():  # names, messages and evidence are the agents' own text
        element.text = element.text and _printable(element.text)
        element.attrib = {k: _printable(v) for k, v in element.attrib.items()}
    ET.indent(root)
    return ET.ElementTree(root)


def check_junit_path(path: str | Path) -> Path:
    """``path`` made ready for the JUnit report (its folder made), or the UsageError writing it
    would raise: checked before the gate judges and records, so a bad path costs no gate result.
    Opened for appending, not asked about (permission bits say yes to root, even under /proc)."""
    path = Path(path)
    existed = path.exists()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8"):
            pass
    except OSError as exc:
        raise _junit_error(path, exc) from exc
    if not existed:
        path.unlink(missing_ok=True)  # an empty file would read as a broken report if the gate fails
    return path


def write_junit(result: GateResult, path: str | Path) -> None:
    """The JUnit report at ``path`` (callers try it first with ``check_junit_path``)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        junit_tree(result).write(path, encoding="utf-8", xml_declaration=True)
    except OSError as exc:
        raise _junit_error(path, exc) from exc


def _junit_error(path: Path, exc: OSError) -> UsageError:
    return UsageError(f"cannot write the JUnit report to {path}: {exc.strerror or exc}; "
                      "give --junit a file path you can write")


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown(result: GateResult) -> str:
    """The job summary GitHub renders on the run's page."""
    icon = {PASS: "✅", WARN: "⚠️", FAIL: "❌"}
    lines = [f"## {icon[result.verdict]} handoffs gate: {result.verdict.upper()} ({result.policy.name})", "",
             f"Judged: {result.runs_text}. Baseline: {result.baseline_text}.", "",
             "| check | value | limit | baseline | change (worse +) | verdict |",
             "|---|---|---|---|---|---|"]
    for r in result.checks:
        lines.append("| " + " | ".join(_md_cell(x) for x in (
            r.check.name, r.value_text, r.limit_text or "-", r.baseline_text or "-", _change(r),
            f"{icon[r.verdict]} {verdict_label(r)}")) + " |")
    for r in result.checks:
        if r.verdict == PASS:
            continue
        lines += ["", f"**{icon[r.verdict]} {_md_cell(r.check.name)}**: {_md_cell(r.message)}"]
        lines += [f"- {_md_cell(ev.describe())}" for ev in r.evidence]
    return "\n".join(lines) + "\n"


def append_step_summary(result: GateResult, env: dict[str, str] | None = None) -> Path | None:
    """Append the Markdown summary to ``$GITHUB_STEP_SUMMARY`` when the job provides one."""
    target = (env if env is not None else os.environ).get(ENV_STEP_SUMMARY)
    if not target:
        return None
    try:
        with open(target, "a", encoding="utf-8") as fh:
            fh.write(markdown(result) + "\n")
    except OSError as exc:
        raise UsageError(f"cannot append the job summary to ${ENV_STEP_SUMMARY} ({target}): "
                         f"{exc.strerror or exc}") from exc
    return Path(target)


def to_json(result: GateResult) -> dict[str, Any]:
    """Everything the table says, for machines."""
    def check(r: CheckResult) -> dict[str, Any]:
        cmp = r.comparison
        return {
            "name": r.check.name, "target": r.check.target, "severity": r.check.severity,
            "verdict": r.verdict, "decided": r.decided, "applicable": r.applicable, "value": r.value,
            "value_text": r.value_text,
            "limit": r.limit, "limit_text": r.limit_text, "baseline": r.baseline,
            "message": r.message, "line": r.check.line,
            "comparison": None if cmp is None else {
                "test": cmp.test, "current": cmp.current, "baseline": cmp.baseline,
                "effect": cmp.effect, "margin": cmp.margin,
                # only the figure that decides: Fisher's test has its p-value, no interval
                "interval": [cmp.low, cmp.high] if cmp.decides_by_interval else None,
                "p_value": cmp.p_value, "significant": cmp.significant,
                "n_current": cmp.n_current, "n_baseline": cmp.n_baseline},
            "evidence": [{"run_id": e.run_id, "trace_id": e.trace_id, "agent": e.agent,
                          "span_id": e.span_id, "step": e.step, "detail": e.detail,
                          "test_id": e.test_id} for e in r.evidence],
        }
    return {
        "gate_id": result.gate_id, "policy": result.policy.name, "source": result.policy.source,
        "verdict": result.verdict, "exit_code": result.exit_code, "commit": result.commit,
        "branch": result.branch, "judged": result.runs_text, "baseline": result.baseline_text,
        "runs": [r.run_id for r in result.runs], "baseline_runs": [r.run_id for r in result.baseline],
        "notes": result.notes, "checks": [check(r) for r in result.checks],
    }


def write_json(result: GateResult, out: TextIO) -> None:
    json.dump(to_json(result), out, indent=2)
    out.write("\n")
