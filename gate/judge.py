"""The gate's decision: select the runs to judge and the baseline, read their metrics and
findings, apply each check, and record the outcome in ``handoffs_gate_results``.

The SQL here is the gate's own reading of the runs, metrics, findings and gate-results
tables; the heavy lifting (metrics, findings) was done by the detectors beforehand.
"""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from handoffs import conventions as c
from handoffs import taxonomy as tx
from handoffs.errors import UsageError
from handoffs.sdk.ci import ci_metadata, git_metadata, in_git_checkout
from handoffs.store import Store
from handoffs.store.schema import (
    DETECTED_TABLE,
    FINDINGS_TABLE,
    GATE_TABLE,
    METRICS_TABLE,
    RUNS_BY_BRANCH,
    RUNS_BY_COMMIT,
    RUNS_TABLE,
    SPAN_TABLE,
)

from . import stats
from .policy import FAIL, LOWER, METRIC_NEEDS, PASS, RATE, WARN, Check, Policy, RunFilter, parse_time

log = logging.getLogger(__name__)

_ORDER = {PASS: 0, WARN: 1, FAIL: 2}
MAX_EVIDENCE = 10
DEFAULT_BASELINE_BRANCH = "main"
# Which failure mode shows *where* a metric went wrong, so a failing metric check can point
# at span ids and not only at runs.
_METRIC_FINDINGS = {
    tx.OVERWRITE_RATE: tx.OVERWRITE,
    tx.AUTONOMOUS_COMPLETION_RATE: tx.OVERWRITE,
    tx.TOKENS_BEFORE_INTERRUPTION: tx.OVERWRITE,
    tx.REWRITE_BUG_RATE: tx.OVERWRITE,
    tx.ERROR_AMPLIFICATION: tx.ERROR_CASCADE,
}

# Runs newest first, one page at a time (keyset: strictly after the previous page's last run).
# Each filter is a plain condition present only when set (the engine reads in order only
# under a bare ``branch = ...`` or ``commit = ...``, not one wrapped in ``'' = '' OR``), so it
# reads the runs table's projection by commit or by branch (store/schema.py, migration 7) in
# reverse and stops after the page: a gate reads what it judges, not every run ever stored.
# No FINAL: a run row delivered twice is dropped by run id in ``_pages``, newest version first.
_RUN_FILTERS = {
    "project": "project = {project:String}",
    "run_ids": "has({run_ids:Array(String)}, run_id)",
    "commit": "commit = {commit:String}",
    "commit_prefix": "startsWith(commit, {commit_prefix:String})",
    "commits": "has({commits:Array(String)}, commit)",
    "not_commit": "commit != {not_commit:String}",
    "branch": "branch = {branch:String}",
    "tag": "has(tags, {tag:String})",
    "test_id": "startsWith(test_id, {test_id:String})",
    "since": "started_at >= fromUnixTimestamp64Nano({since:Int64})",
    "before": "started_at < fromUnixTimestamp64Nano({before:Int64})",
    "after": "(started_at < fromUnixTimestamp64Nano({before_ns:Int64})"
             " OR (started_at = fromUnixTimestamp64Nano({before_ns:Int64}) AND run_id > {after:String}))",
    "exclude": "NOT has({exclude:Array(String)}, run_id)",
}
_RUNS_SQL = """
SELECT run_id, trace_id, commit, branch, test_id, build_url, started_at,
       toUnixTimestamp64Nano(started_at) AS started_ns
FROM """ + RUNS_TABLE + """
WHERE {where}
ORDER BY started_at DESC, run_id, updated_at DESC
LIMIT {rows:UInt64}
"""


def _runs_sql(params: dict[str, Any]) -> str:
    """``_RUNS_SQL`` with the conditions of the filters set in ``params`` (fixed SQL only),
    naming the projection that serves them so a project filter does not tempt the engine into
    sorting all of that project's runs."""
    where = " AND ".join(_RUN_FILTERS[k] for k in params if k in _RUN_FILTERS) or "1"
    sql = _RUNS_SQL.replace("{where}", where)
    if {"commit", "commit_prefix", "commits"} & params.keys():
        return sql + f"SETTINGS preferred_optimize_projection_name = '{RUNS_BY_COMMIT}'\n"
    if "branch" in params:
        return sql + f"SETTINGS preferred_optimize_projection_name = '{RUNS_BY_BRANCH}'\n"
    return sql


# Every metric the policy checks, for the runs of both sides, in one read by run id (the
# table's key). The latest computation of each wins (what FINAL would keep), over these rows
# only; a value that is no longer finite hides older ones, as it did under FINAL.
_METRICS_SQL = """
SELECT run_id, scope, subject, metric, value
FROM (
    SELECT run_id, scope, subject, metric, value
    FROM """ + METRICS_TABLE + """
    WHERE has({runs:Array(String)}, run_id) AND has({metrics:Array(String)}, metric)
      AND ({project:String} = '' OR project = {project:String})
    ORDER BY computed_at DESC
    LIMIT 1 BY project, run_id, scope, subject, metric
)
WHERE isFinite(value)
"""

# Runs whose metrics were computed: detection writes every run a failure rate per mode, zeros
# included, so a measured run has rows even when a metric has no value in it.
_MEASURED_RUNS_SQL = """
SELECT DISTINCT run_id FROM """ + METRICS_TABLE + """
WHERE has({runs:Array(String)}, run_id) AND ({project:String} = '' OR project = {project:String})
"""

# Findings belong to a run by run id, or by trace id when the detector did not know the run.
# Two reads, each pruned (trace id: the table's key; run id: a bloom filter), disjoint so no
# finding counts twice; the latest detection of each finding wins (what FINAL would keep).
# Which of some traces the detectors have judged (any version): a run never judged has no
# findings because nobody looked, not because it is clean.
_JUDGED_TRACES_SQL = f"""
SELECT DISTINCT trace_id FROM {DETECTED_TABLE} WHERE has({{traces:Array(String)}}, trace_id)
"""

_FINDINGS_SQL = """
SELECT code, run_id, trace_id, agent, span_id, step, confidence, evidence
FROM (
    SELECT project, run_id, trace_id, code, agent, span_id, step, confidence, evidence, detected_at
    FROM """ + FINDINGS_TABLE + """
    WHERE has({codes:Array(String)}, code) AND has({traces:Array(String)}, trace_id)
      AND ({project:String} = '' OR project = {project:String})
    UNION ALL
    SELECT project, run_id, trace_id, code, agent, span_id, step, confidence, evidence, detected_at
    FROM """ + FINDINGS_TABLE + """
    WHERE has({codes:Array(String)}, code) AND has({runs:Array(String)}, run_id)
      AND NOT has({traces:Array(String)}, trace_id)
      AND ({project:String} = '' OR project = {project:String})
)
ORDER BY detected_at DESC
LIMIT 1 BY project, trace_id, code, span_id, agent, step
"""

# Which of the given commits are green: the latest gate this policy recorded for the commit
# failed no check. Only those commits' gate rows are read (bloom filter on commit); a gate
# row recorded twice changes none of these aggregates, so no FINAL.
_GREEN_SQL = """
SELECT gate_commit AS commit
FROM (
    SELECT gate_id, any(commit) AS gate_commit, max(evaluated_at) AS at,
           countIf(verdict = 'fail') = 0 AS green
    FROM """ + GATE_TABLE + """
    WHERE ({project:String} = '' OR project = {project:String}) AND policy = {policy:String}
      AND has({commits:Array(String)}, commit)
    GROUP BY gate_id
)
WHERE gate_commit != ''
GROUP BY gate_commit
HAVING argMax(green, at)
"""

# Policy names other gates were recorded under: green commits count per name, so a renamed
# policy starts with none.
_OTHER_POLICIES_SQL = """
SELECT DISTINCT policy FROM """ + GATE_TABLE + """
WHERE ({project:String} = '' OR project = {project:String}) AND policy != {policy:String}
ORDER BY policy LIMIT 5
"""

# Spans of each run in the given traces: a test's run with only its own span did no agent work.
_SPANS_PER_RUN_SQL = """
SELECT SpanAttributes['""" + c.RUN_ID + """'] AS run_id, count() AS spans
FROM """ + SPAN_TABLE + """
WHERE TraceId IN {traces:Array(String)}
GROUP BY run_id
"""

# Pages of runs grow from the first (sized to what is wanted) up to this many rows.
_MAX_PAGE = 20_000
# Baseline commits are looked for among this many newest runs first, then more.
_COMMIT_PAGE = 100

@dataclass(frozen=True)
class Run:
    """A run as the gate sees it (one row of handoffs_runs)."""

    run_id: str
    trace_id: str
    commit: str = ""
    branch: str = ""
    test_id: str = ""
    build_url: str = ""
    started_at: datetime | None = None


@dataclass(frozen=True)
class Evidence:
    """Where a check broke: a run, its trace, and when known the agent, span and step."""

    run_id: str
    trace_id: str
    agent: str = ""
    span_id: str = ""
    step: int | None = None
    detail: str = ""
    test_id: str = ""  # the pytest node id the run was traced under, if any

    def describe(self) -> str:
        parts = [f"test {self.test_id}"] if self.test_id else []
        parts += [f"run {self.run_id}", f"trace {self.trace_id}"]
        if self.agent:
            parts.append(f"agent {self.agent}")
        if self.span_id:
            parts.append(f"span {self.span_id}")
        if self.step is not None:
            parts.append(f"step {self.step}")
        return ", ".join(parts) + (f": {self.detail}" if self.detail else "")


@dataclass
class CheckResult:
    """One check's outcome: what was measured, against what, and the verdict with its reasons."""

    check: Check
    verdict: str
    value: float | None
    value_text: str
    limit_text: str
    limit: float | None = None
    baseline: float | None = None
    baseline_text: str = ""
    comparison: stats.Comparison | None = None
    decided: bool = True  # False when there were too few runs and the policy's rule applied
    undecided_because: str = ""  # "no runs" or "too few runs", for labels
    breached: bool = False  # a limit was broken (as opposed to a too-few-runs rule)
    applicable: bool = True  # False: no judged run had what the metric is a ratio of (it passes)
    reasons: list[str] = field(default_factory=list)
    evidence: list[Evidence] = field(default_factory=list)

    @property
    def message(self) -> str:
        return "; ".join(self.reasons)


@dataclass
class GateResult:
    """The whole gate: the runs judged, the baseline, and each check's result."""

    gate_id: str
    policy: Policy
    runs: list[Run]
    baseline: list[Run]
    runs_text: str
    baseline_text: str
    checks: list[CheckResult]
    commit: str = ""
    branch: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        return max((r.verdict for r in self.checks), key=_ORDER.__getitem__, default=PASS)

    @property
    def exit_code(self) -> int:
        return 1 if self.verdict == FAIL else 0


def refresh_detection(store: Store, run_ids: Sequence[str]) -> str | None:
    """Bring the findings of the traces of ``run_ids`` and their metrics up to date, and the
    store's other findings when that is cheap (both incremental where they can be); return a
    note when the detectors are not installed, or when the store's other traces were left to
    ``handoffs detect``."""
    try:
        from handoffs.detectors import detect_current, version
        from handoffs.detectors.metrics import compute_metrics
    except ImportError as exc:
        return f"detection skipped: the detectors are not available ({exc})"
    # Judges and stores what is new; reading every stored finding back, as detect() does for
    # its callers, would cost the gate more the larger the store (1.2 s at 3M spans, nothing new).
    # The runs' own traces are judged by compute_metrics, which judges what it reads first.
    left = detect_current(store, [])
    if run_ids:
        compute_metrics(store, list(run_ids), out_of_date=True)
    if left:
        return (f"detection: judged the traces of the runs compared only; the rest of the store "
                f"({left:,} spans stored) is left to `handoffs detect`: no full pass of detector set "
                f"{version()} is recorded in it, so finding what is new there means reading all of it")
    return None


def run_gate(store: Store, policy: Policy, baseline: str | None = None,
             run_ids: Sequence[str] | None = None, detect: bool | None = None,
             record: bool = True, env: dict[str, str] | None = None) -> GateResult:
    """Judge the policy's runs (or ``run_ids``) against its baseline (or ``baseline``).

    ``baseline`` is a comma-separated list of run ids or commits. ``detect`` overrides the
    policy's choice to run the detectors first.
    """
    notes: list[str] = []
    ci = ci_metadata(env)
    judged, runs_text, current_commit = _select_judged(store, policy, run_ids, ci)
    if run_ids is not None and not policy.runs.empty:
        notes.append("[runs] is not applied: the runs judged are this session's")
    if any(ch.is_regression for ch in policy.checks):
        base, base_text = _select_baseline(store, policy, judged, baseline, current_commit, ci)
    else:
        if baseline is not None:  # unused, but a mistyped one is still a mistake
            _given_baseline(store, policy, baseline, [r.run_id for r in judged])
        base, base_text = [], "none (no regression checks)"
    if policy.detect if detect is None else detect:
        note = refresh_detection(store, [r.run_id for r in judged + base])
        if note:
            notes.append(note)
            log.warning(note)
    ctx = _Context(store, policy, judged, base, base_text)
    results = [ctx.evaluate(ch) for ch in policy.checks]
    commit = ci.get(c.RUN_COMMIT) or _most_common(r.commit for r in judged)
    branch = ci.get(c.RUN_BRANCH) or _most_common(r.branch for r in judged)
    result = GateResult(uuid.uuid4().hex, policy, judged, base, runs_text, base_text, results,
                        commit, branch, notes)
    if record:
        record_result(store, result)
    return result


def record_result(store: Store, result: GateResult) -> None:
    """One row per check in handoffs_gate_results: the history "last green commit" reads."""
    rows = result.checks
    run_ids = [r.run_id for r in result.runs]
    store.insert(GATE_TABLE, pa.table({
        "project": [result.policy.project] * len(rows),
        "gate_id": [result.gate_id] * len(rows),
        "policy": [result.policy.name] * len(rows),
        "check_name": [r.check.name for r in rows],
        "severity": [r.check.severity for r in rows],
        "verdict": [r.verdict for r in rows],
        "value": pa.array([r.value for r in rows], pa.float64()),
        "limit_value": pa.array([r.limit for r in rows], pa.float64()),
        "baseline": pa.array([r.baseline for r in rows], pa.float64()),
        "run_ids": pa.array([run_ids] * len(rows), pa.list_(pa.string())),
        "commit": [result.commit] * len(rows),
        "branch": [result.branch] * len(rows),
        "message": [r.message for r in rows],
    }))


# --- run selection ------------------------------------------------------------------------
def _params(flt: RunFilter, project: str, exclude: Iterable[str] = (), commits: Sequence[str] = (),
            not_commit: str = "") -> dict[str, Any]:
    """The parameters of ``_RUNS_SQL`` for ``flt`` (commit/branch already resolved), only the
    filters that are set; a commit of 7+ characters matches as a prefix."""
    commit_key = "commit_prefix" if len(flt.commit) >= 7 else "commit"
    params: dict[str, Any] = {
        "project": project, "run_ids": list(flt.run_ids), commit_key: flt.commit,
        "commits": list(commits), "not_commit": not_commit, "branch": flt.branch,
        "tag": flt.tag, "test_id": flt.test_id, "since": _ns(flt.since, 0),
        "before": _ns(flt.until, 0), "exclude": list(exclude),
    }
    return {k: v for k, v in params.items() if v}


def _pages(store: Store, params: dict[str, Any], page: int) -> Iterator[list[Run]]:
    """Runs matching ``params``, newest first, each run once, a page at a time.

    Each page starts strictly after the previous one's last run (keyset pagination), so no row
    is read twice and a run inserted meanwhile does not shift the pages; pages grow fourfold
    up to ``_MAX_PAGE`` rows, so a caller that needs few runs reads few.
    """
    params = dict(params)
    seen: set[str] = set()
    while True:
        rows = store.query(_runs_sql(params), {**params, "rows": page})
        runs = []
        for r in rows:
            if r["run_id"] in seen:  # the same run delivered twice: keep its newest version
                continue
            seen.add(r["run_id"])
            runs.append(Run(r["run_id"], r["trace_id"], r["commit"], r["branch"], r["test_id"],
                            r["build_url"], r["started_at"]))
        yield runs
        if len(rows) < page:
            return
        params["before_ns"], params["after"] = rows[-1]["started_ns"], rows[-1]["run_id"]
        page = min(page * 4, _MAX_PAGE)


def query_runs(store: Store, flt: RunFilter, project: str = "", exclude: Iterable[str] = (),
               limit: int | None = None, commits: Sequence[str] = (),
               not_commit: str = "") -> list[Run]:
    """Runs matching ``flt`` (commit/branch already resolved), newest first, at most ``limit``
    (else the filter's ``max_runs``); ``commits`` keeps only those commits, ``not_commit`` drops one."""
    limit = limit or flt.max_runs
    out: list[Run] = []
    for page in _pages(store, _params(flt, project, exclude, commits, not_commit),
                       min(limit, _MAX_PAGE)):
        out += _without_idle_test_runs(store, page)
        if len(out) >= limit:
            break
    return out[:limit]


def _without_idle_test_runs(store: Store, runs: list[Run]) -> list[Run]:
    """Drop the pytest plugin's runs in which no agent worked: a test without agents, or one
    that opened its own run (that inner run is the one to judge). Their zeros would only
    dilute the rates."""
    traces = sorted({r.trace_id for r in runs if r.test_id})
    if not traces:
        return runs
    spans = {r["run_id"]: r["spans"] for r in store.query(_SPANS_PER_RUN_SQL, {"traces": traces})}
    return [r for r in runs if not r.test_id or spans.get(r.run_id, 0) > 1]


def green_commits(store: Store, project: str, policy: str, commits: Sequence[str]) -> set[str]:
    """Those of ``commits`` whose latest gate under ``policy`` failed no check."""
    if not commits:
        return set()
    return {r["commit"] for r in store.query(_GREEN_SQL, {"project": project, "policy": policy,
                                                          "commits": list(commits)})}


def last_commits(store: Store, flt: RunFilter, project: str, exclude: Sequence[str],
                 not_commit: str, count: int, green_under: str | None = None) -> list[str]:
    """The ``count`` newest commits among the runs matching ``flt``, newest first (by their
    newest run); only green ones under the policy named ``green_under`` when given.

    Reads the newest runs a page at a time and stops once it has them, so the cost follows how
    far back those commits are, not how many runs the store holds.
    """
    chosen: list[str] = []
    seen: set[str] = set()
    for page in _pages(store, _params(flt, project, exclude, not_commit=not_commit), _COMMIT_PAGE):
        new = [x for x in dict.fromkeys(r.commit for r in _without_idle_test_runs(store, page))
               if x not in seen]
        seen.update(new)
        if green_under is not None:
            green = green_commits(store, project, green_under, new)
            new = [x for x in new if x in green]
        chosen += new[: count - len(chosen)]
        if len(chosen) == count:
            break
    return chosen


def _ns(value: str, default: int) -> int:
    if not value:
        return default
    return int(parse_time(value).timestamp() * 1_000_000_000)


def _resolve(flt: RunFilter, ci: dict[str, str], policy: Policy) -> RunFilter:
    """Replace "current" commit/branch with what the CI environment says, or outside CI with
    the git checkout's (asked for by name, so reading git surprises no one; the pytest plugin
    records runs with it outside CI): the checkout that holds the policy file, wherever the
    gate runs from, else the working directory's."""
    updates: dict[str, str] = {}
    git: dict[str, str] | None = None
    for key, attr in (("commit", c.RUN_COMMIT), ("branch", c.RUN_BRANCH)):
        if getattr(flt, key) == "current":
            value = ci.get(attr)
            source = Path(policy.source)
            where = str(source.parent) if source.is_file() else None
            if not value:
                git = git_metadata(where) if git is None else git
                value = git.get(attr)
            if not value:
                var = "HANDOFFS_COMMIT" if key == "commit" else "HANDOFFS_BRANCH"
                place = where or str(Path.cwd())
                if not in_git_checkout(where):
                    why = f"not under CI, and {place} is not in a git checkout"
                elif not git.get(c.RUN_COMMIT):
                    why = f"the git checkout at {place} has no commit yet"
                else:
                    why = f"the git checkout at {place} has no branch checked out (a detached HEAD)"
                raise UsageError(f"the policy asks for the current {key}, but none is known here: {why}; "
                                 f"set {var}, or run under CI")
            updates[key] = value
    return replace(flt, **updates) if updates else flt


def _select_judged(store: Store, policy: Policy, run_ids: Sequence[str] | None,
                   ci: dict[str, str]) -> tuple[list[Run], str, str]:
    if run_ids is not None:
        flt = RunFilter(run_ids=tuple(run_ids))
        runs = query_runs(store, flt, policy.project) if run_ids else []
        # The session's commit is the judged one: the baseline must not be made of it.
        commit = ci.get(c.RUN_COMMIT) or _most_common(r.commit for r in runs)
        return runs, f"{len(runs)} runs of this session", commit
    flt = policy.runs
    if flt.empty and ci.get(c.RUN_COMMIT):
        # Nothing said: judge what this CI job (or checkout) produced.
        flt = replace(flt, commit="current")
    flt = _resolve(flt, ci, policy)
    runs = query_runs(store, flt, policy.project)
    hint = ""
    if not runs and 0 < len(flt.commit) < 7:
        hint = "; a commit of fewer than 7 characters matches only a whole commit id"
    return runs, f"{len(runs)} runs ({_describe(flt)}{hint})", flt.commit


def _describe(flt: RunFilter) -> str:
    parts = [f"{k} {v[:12] if k == 'commit' else v}" for k, v in
             (("commit", flt.commit), ("branch", flt.branch), ("tag", flt.tag),
              ("test", flt.test_id), ("since", flt.since), ("until", flt.until)) if v]
    if flt.run_ids:
        parts.append(f"{len(flt.run_ids)} listed")
    return ", ".join(parts) or "all runs"


def baseline_values(override: str) -> list[str]:
    """The run ids or commits of a ``--baseline`` list; a UsageError when it names none (an empty
    filter would mean every run in the store)."""
    wanted = [v.strip() for v in override.split(",") if v.strip()]
    if not wanted:
        raise UsageError(f"--baseline {override!r} names nothing: give run ids or commits, separated by commas")
    return wanted


def _given_baseline(store: Store, policy: Policy, override: str, exclude: list[str]) -> tuple[list[Run], str]:
    """``--baseline``: runs by id or by commit, each value matching something (else one
    UsageError naming those that match nothing; an empty list would mean every run)."""
    wanted = baseline_values(override)
    found = {r.run_id: r for r in query_runs(store, RunFilter(run_ids=tuple(wanted)), policy.project, exclude)}
    unmatched = []
    for value in wanted:
        if value in found:
            continue
        by_commit = query_runs(store, RunFilter(commit=value), policy.project, exclude)
        if not by_commit:
            unmatched.append(value)
        found.update((r.run_id, r) for r in by_commit)
    if unmatched:
        raise UsageError(f"--baseline {', '.join(unmatched)}: no run or commit with that id in the store "
                         "(or only runs being judged); a commit of 7+ characters matches as a prefix")
    return list(found.values()), f"{len(found)} runs given by --baseline"


def _select_baseline(store: Store, policy: Policy, judged: list[Run], override: str | None,
                     current_commit: str, ci: dict[str, str]) -> tuple[list[Run], str]:
    exclude = [r.run_id for r in judged]
    if override is not None:
        return _given_baseline(store, policy, override, exclude)
    spec = policy.baseline
    flt = _resolve(spec.filter, ci, policy)
    if spec.explicit:
        runs = query_runs(store, flt, policy.project, exclude)
        return runs, f"{len(runs)} runs ({_describe(flt)})"
    flt = replace(flt, branch=flt.branch or DEFAULT_BASELINE_BRANCH)
    what = f"{'green ' if spec.green else ''}on branch {flt.branch}"
    chosen = last_commits(store, flt, policy.project, exclude, current_commit, spec.commits,
                          policy.name if spec.green else None)
    runs = query_runs(store, flt, policy.project, exclude, commits=chosen,
                      not_commit=current_commit) if chosen else []
    if not runs:
        hint = ""
        if spec.green:
            hint = " (record one: run the gate on that branch)"
            others = [r["policy"] for r in store.query(_OTHER_POLICIES_SQL, {
                "project": policy.project, "policy": policy.name})]
            if others:
                hint = (f" (green is counted per policy name, and this policy is {policy.name!r}; "
                        f"gates were recorded under {', '.join(map(repr, others))}: if it was renamed, "
                        "set [gate] name back, or record a green gate under the new name on that branch)")
        return [], f"none: no earlier commit {what}{hint}"
    commits = ", ".join(x[:12] or "(no commit)" for x in chosen)
    return runs, f"{len(runs)} runs of the last {'commit' if len(chosen) == 1 else 'commits'} {what}: {commits}"


def _most_common(values: Iterable[str]) -> str:
    counts = Counter(v for v in values if v)
    return counts.most_common(1)[0][0] if counts else ""


# --- checks -------------------------------------------------------------------------------
class _Context:
    """Everything a check needs: the store, the policy, and both sides' runs."""

    def __init__(self, store: Store, policy: Policy, judged: list[Run], baseline: list[Run],
                 baseline_text: str) -> None:
        self.store = store
        self.baseline_text = baseline_text
        self.policy = policy
        self.judged = judged
        self.baseline = baseline
        self.by_run = {r.run_id: r for r in judged + baseline}
        self.by_trace = {r.trace_id: r.run_id for r in judged + baseline}
        self._metrics: list[dict[str, Any]] | None = None  # both sides, every checked metric
        self._findings_of: dict[str, list[dict[str, Any]]] = {}  # by code, both sides
        self._judged: set[str] | None = None  # traces the detectors have judged, both sides

    def evaluate(self, check: Check) -> CheckResult:
        if check.metric:
            return self._metric(check)
        return self._failure_mode(check)

    # --- shared pieces --------------------------------------------------------------------
    def _too_few(self, check: Check, rule: str) -> str:
        """The policy's rule for undecidable checks, never harsher than the check's severity."""
        if rule == FAIL and check.severity == WARN:
            return WARN
        return rule

    def _outcome(self, check: Check, result: CheckResult, breached: bool, reason: str) -> None:
        result.reasons.append(reason)
        if breached:
            result.breached = True
            result.verdict = _worst(result.verdict, check.severity)

    def _undecided(self, check: Check, result: CheckResult, rule: str, reason: str,
                   because: str = "too few runs") -> None:
        result.decided = False
        result.undecided_because = result.undecided_because or because
        verdict = self._too_few(check, rule)
        capped = f" (capped at the check's severity, {verdict})" if verdict != rule else ""
        result.reasons.append(f"{reason}; policy rule: {rule}{capped}")
        result.verdict = _worst(result.verdict, verdict)

    def _regression(self, check: Check, result: CheckResult, current: list[float],
                    base: list[float], proportion: tuple[int, int, int, int] | None = None) -> None:
        n_cur = proportion[1] if proportion else len(current)
        n_base = proportion[3] if proportion else len(base)
        if n_base == 0 or n_cur == 0:
            side = "baseline" if n_base == 0 else "current runs"
            self._undecided(check, result, self.policy.too_few_runs,
                            f"no {side} to compare (baseline: {self.baseline_text})", f"no {side}")
            return
        if proportion:
            base_value = proportion[2] / proportion[3]
        else:
            base_value = stats.mean(base)
        result.baseline = base_value
        if n_cur < self.policy.min_runs or n_base < self.policy.min_runs:
            result.baseline_text = f"{base_value:.3g} (n={n_base})"
            self._undecided(check, result, self.policy.too_few_runs,
                            f"too few runs to compare: {n_cur} current, {n_base} baseline, "
                            f"need {self.policy.min_runs} each")
            return
        margin = (check.max_increase if check.max_increase is not None
                  else (check.max_regression or 0.0) * abs(base_value))
        alpha = self.policy.significance
        if proportion:
            cmp = stats.compare_proportions(*proportion, alpha=alpha, margin=margin)
        else:
            cmp = stats.compare_means(current, base, alpha, margin,
                                      higher_is_worse=check.direction == LOWER)
        result.comparison = cmp
        result.baseline_text = f"{base_value:.3g} (n={n_base})"
        allowed = (f"{check.max_regression:.0%}" if check.max_regression is not None
                   else f"{margin:g}")
        if cmp.significant:
            reason = (f"regressed beyond the allowed {allowed}: {cmp.describe()}, "
                      f"significant at {alpha:g}")
        elif cmp.effect > margin:
            evidence = (f"interval [{cmp.low:+.3g}, {cmp.high:+.3g}]" if cmp.decides_by_interval
                        else f"{cmp.test} p={cmp.p_value:.3g}")
            reason = (f"worse by {cmp.effect:+.3g} but not significantly at {alpha:g} "
                      f"({evidence}, allowed {allowed})")
        else:
            reason = f"no regression beyond {allowed}: {cmp.describe()}"
        self._outcome(check, result, cmp.significant, reason)

    # --- metric checks --------------------------------------------------------------------
    def _metric_rows(self, check: Check, runs: list[Run]) -> list[dict[str, Any]]:
        if not runs:
            return []
        if self._metrics is None:  # one read for every metric check, both sides
            metrics = sorted({ch.metric for ch in self.policy.checks if ch.metric})
            self._metrics = self.store.query(_METRICS_SQL, {
                "runs": list(self.by_run), "metrics": metrics, "project": self.policy.project})
        wanted = {r.run_id for r in runs}
        return [r for r in self._metrics if r["run_id"] in wanted and r["metric"] == check.metric
                and r["scope"] == check.scope and (not check.subject or r["subject"] == check.subject)]

    def _metric(self, check: Check) -> CheckResult:
        result = CheckResult(check, PASS, None, "-", check.limit_text(),
                             limit=check.max if check.max is not None else check.min)
        if not self.judged:
            self._undecided(check, result, self.policy.no_runs, "no runs to judge", "no runs")
            return result
        rows = self._metric_rows(check, self.judged)
        values = [float(r["value"]) for r in rows]
        if not values and self._not_applicable(check):
            result.value_text = "n/a"
            result.applicable = False
            result.reasons.append(f"not applicable: none of the {len(self.judged)} runs had "
                                  f"{METRIC_NEEDS[check.metric]}, without which {check.metric} has no value")
            return result
        if not values:
            self._undecided(check, result, self.policy.too_few_runs,
                            f"none of the {len(self.judged)} runs has a value for {check.metric}"
                            f"{' of ' + check.subject if check.subject else ''}", "no values")
            return result
        mean = stats.mean(values)
        low, high = stats.mean_interval(values, self.policy.significance)
        result.value = mean
        unit = "runs" if check.scope == tx.SCOPE_RUN else f"{check.scope}s in {len({r['run_id'] for r in rows})} runs"
        result.value_text = f"{mean:.3g} (n={len(values)} {unit})"
        if check.max is not None:
            self._outcome(check, result, mean > check.max,
                          f"mean {mean:.3g} [{low:.3g}, {high:.3g}] {'above' if mean > check.max else 'within'} "
                          f"the maximum {check.max:g}")
        if check.min is not None:
            self._outcome(check, result, mean < check.min,
                          f"mean {mean:.3g} [{low:.3g}, {high:.3g}] {'below' if mean < check.min else 'within'} "
                          f"the minimum {check.min:g}")
        if check.is_regression:
            base_values = [float(r["value"]) for r in self._metric_rows(check, self.baseline)]
            self._regression(check, result, values, base_values)
        if result.breached:
            result.evidence = self._metric_evidence(check, rows)
        return result

    def _not_applicable(self, check: Check) -> bool:
        """No judged run has the thing ``check``'s metric is a ratio of, though every one was
        measured. A missing value of a named subject, a metric of one's own or a run never
        measured stays undecided: a typo or a skipped step must not pass unseen."""
        if check.metric not in METRIC_NEEDS or check.subject:
            return False
        measured = {r["run_id"] for r in self.store.query(_MEASURED_RUNS_SQL, {
            "runs": [r.run_id for r in self.judged], "project": self.policy.project})}
        return all(r.run_id in measured for r in self.judged)

    def _metric_evidence(self, check: Check, rows: list[dict[str, Any]]) -> list[Evidence]:
        worst = sorted(rows, key=lambda r: r["value"], reverse=check.direction == LOWER)[:5]
        out = [Evidence(r["run_id"], self.by_run[r["run_id"]].trace_id,
                        agent="" if check.scope == tx.SCOPE_RUN else r["subject"],
                        detail=f"{check.metric} = {r['value']:.3g}",
                        test_id=self.by_run[r["run_id"]].test_id) for r in worst]
        code = _METRIC_FINDINGS.get(check.metric) or (
            check.metric.removeprefix(tx.FAILURE_RATE_PREFIX)
            if check.metric.startswith(tx.FAILURE_RATE_PREFIX) else None)
        if code:
            worst_runs = [self.by_run[r["run_id"]] for r in worst]
            out += self._findings(code, worst_runs, 0.0)[: MAX_EVIDENCE - len(out)]
        return out

    # --- failure-mode checks --------------------------------------------------------------
    def _findings(self, code: str, runs: list[Run], min_confidence: float) -> list[Evidence]:
        if not runs:
            return []
        if code not in self._findings_of:  # every checked mode at once, both sides
            codes = {code} | {ch.failure_mode for ch in self.policy.checks if ch.failure_mode}
            rows = self.store.query(_FINDINGS_SQL, {
                "codes": sorted(codes), "runs": list(self.by_run), "project": self.policy.project,
                "traces": [r.trace_id for r in self.by_run.values() if r.trace_id]})
            rows.sort(key=lambda r: (-r["confidence"], r["trace_id"], r["step"], r["span_id"]))
            for one in codes - self._findings_of.keys():
                self._findings_of[one] = [r for r in rows if r["code"] == one]
        wanted = {r.run_id for r in runs}
        out = []
        for r in self._findings_of[code]:
            if r["confidence"] < min_confidence:
                continue
            run_id = r["run_id"] if r["run_id"] in wanted else self.by_trace.get(r["trace_id"], "")
            if run_id not in wanted:
                continue
            out.append(Evidence(run_id, r["trace_id"], r["agent"], r["span_id"], r["step"],
                                f"{code} (confidence {r['confidence']:.2f}): {r['evidence']}",
                                self.by_run[run_id].test_id))
        return out

    def _judged_traces(self) -> set[str]:
        if self._judged is None:  # one read for every failure-mode check, both sides
            traces = [r.trace_id for r in self.by_run.values() if r.trace_id]
            self._judged = {r["trace_id"] for r in self.store.query(_JUDGED_TRACES_SQL, {"traces": traces})}
        return self._judged

    def _counts(self, check: Check, runs: list[Run]) -> tuple[dict[str, int], list[Evidence]]:
        found = self._findings(check.failure_mode, runs, check.min_confidence)
        counts = dict.fromkeys((r.run_id for r in runs), 0)
        for ev in found:
            counts[ev.run_id] += 1
        return counts, found

    def _failure_mode(self, check: Check) -> CheckResult:
        limit = float(check.max_count) if check.max_count is not None else check.max_rate
        result = CheckResult(check, PASS, None, "-", check.limit_text(), limit=limit)
        if not self.judged:
            self._undecided(check, result, self.policy.no_runs, "no runs to judge", "no runs")
            return result
        counts, found = self._counts(check, self.judged)
        n = len(counts)
        total = sum(counts.values())
        affected = sum(1 for v in counts.values() if v)
        rate = affected / n
        result.value = float(total) if check.max_count is not None else (
            rate if check.stat == RATE or check.max_rate is not None else total / n)
        result.value_text = f"{total} findings in {affected}/{n} runs"
        if check.max_count is not None:
            self._outcome(check, result, total > check.max_count,
                          f"{total} findings {'above' if total > check.max_count else 'within'} "
                          f"the maximum {check.max_count}")
        if check.max_rate is not None:
            self._outcome(check, result, rate > check.max_rate,
                          f"{affected}/{n} runs affected ({rate:.3g}) "
                          f"{'above' if rate > check.max_rate else 'within'} the maximum {check.max_rate:g}")
        runs = self.judged + (self.baseline if check.is_regression else [])
        unjudged = [r for r in runs if r.trace_id not in self._judged_traces()]
        if unjudged and not result.breached:
            self._undecided(check, result, self.policy.too_few_runs,
                            f"{len(unjudged)} of the {len(runs)} runs have not been judged by the detectors, "
                            "so their findings are unknown: run `handoffs detect` (or the gate without "
                            "--no-detect)", "not judged")
            return result
        if check.is_regression:
            base_counts, _ = self._counts(check, self.baseline)
            if check.stat == RATE:
                nb = len(base_counts)
                xb = sum(1 for v in base_counts.values() if v)
                self._regression(check, result, [], [], (affected, n, xb, nb))
            else:
                self._regression(check, result, [float(v) for v in counts.values()],
                                 [float(v) for v in base_counts.values()])
        if result.breached:
            result.evidence = found[:MAX_EVIDENCE]
        return result


def _worst(a: str, b: str) -> str:
    return a if _ORDER[a] >= _ORDER[b] else b

