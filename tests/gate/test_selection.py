"""How the gate selects what it reads, now that each read is pruned and paged: runs delivered
twice count once, pages of runs neither skip nor repeat a run, the baseline is the last green
commits on the branch however far back, metrics and findings keep their latest version only."""

from __future__ import annotations

import json
import time
import uuid

import pyarrow as pa
import pytest
from gate_seed import PROJECT, Seeder

from handoffs import conventions as c
from handoffs import taxonomy as tx
from handoffs.gate import judge, load_policy, parse_policy, run_gate
from handoffs.gate.policy import RunFilter
from handoffs.store import SpanBatch, Store
from handoffs.store.schema import FINDINGS_TABLE, METRICS_TABLE, RUNS_TABLE

HEAD = "b" * 40
T0 = time.time_ns() - 3_600 * 10**9


def run_span(store: Store, run_id: str, start_ns: int, commit: str = HEAD, branch: str = "main",
             times: int = 1) -> str:
    """One run span, inserted ``times`` times as an at-least-once delivery would (no token)."""
    trace_id = uuid.uuid4().hex
    batch = SpanBatch()
    batch.append(trace_id=trace_id, span_id=uuid.uuid4().hex[:16], name=f"handoffs.run {run_id}",
                 start_ns=start_ns, duration_ns=1_000, service_name="team",
                 resource_attributes={c.SERVICE_NAME: "team", c.RESOURCE_PROJECT: PROJECT},
                 attributes={c.SPAN_TYPE: c.SpanType.RUN.value, c.RUN_ID: run_id, c.RUN_COMMIT: commit,
                             c.RUN_BRANCH: branch, c.RUN_TAGS: json.dumps([])})
    for _ in range(times):
        store.insert_spans(batch)
    return trace_id


def policy(checks: str, runs: str = f'commit = "{HEAD}"', baseline: str = 'branch = "main"'):
    return parse_policy(f"""
[gate]
project = "{PROJECT}"
detect = false

[runs]
{runs}

[baseline]
{baseline}

{checks}
""", "test.toml")


def test_a_run_delivered_twice_is_judged_once(any_store: Store) -> None:
    store = any_store  # both engines: the gate also reads a shared store over HTTP
    store.command(f"SYSTEM STOP MERGES {RUNS_TABLE}")  # keep the copies apart, as before a merge
    for i in range(4):
        run_span(store, f"r{i}", T0 + i, times=2)
    assert store.scalar(f"SELECT count() FROM {RUNS_TABLE}") == 8  # the duplicates are there
    result = run_gate(store, policy('[[check]]\nfailure_mode = "FM-3.1"\nmax_count = 0'), env={})
    assert [r.run_id for r in result.runs] == ["r3", "r2", "r1", "r0"]
    assert result.checks[0].value_text == "0 findings in 0/4 runs"


def test_pages_of_runs_neither_skip_nor_repeat(any_store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    store = any_store
    # Pages of two rows, runs sharing a start time and runs stored twice: the page boundary
    # falls inside ties and between copies of one run.
    monkeypatch.setattr(judge, "_MAX_PAGE", 2)
    store.command(f"SYSTEM STOP MERGES {RUNS_TABLE}")
    starts = {"a": T0, "b": T0 + 5, "c": T0 + 5, "d": T0 + 5, "e": T0 + 9, "f": T0 + 9}
    for run_id, start in starts.items():
        run_span(store, run_id, start, times=2 if run_id in "bcf" else 1)
    assert store.scalar(f"SELECT count() FROM {RUNS_TABLE}") == 9
    runs = judge.query_runs(store, RunFilter(commit=HEAD), PROJECT)
    assert [r.run_id for r in runs] == ["e", "f", "b", "c", "d", "a"]
    assert [r.run_id for r in judge.query_runs(store, RunFilter(branch="main"), PROJECT, limit=3)] == [
        "e", "f", "b"]
    assert [r.run_id for r in judge.query_runs(store, RunFilter(commit=HEAD[:9]), PROJECT,
                                               exclude=["f", "c"])] == ["e", "b", "d", "a"]


def test_baseline_is_the_last_green_commits_however_far_back(any_store: Store,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    store, seed = any_store, Seeder(any_store)
    # Pages of two runs: the green commits lie behind several pages of newer red ones and of
    # another branch's runs, and the current commit's own earlier runs on main never count.
    monkeypatch.setattr(judge, "_COMMIT_PAGE", 2)
    absolute = '[[check]]\nmetric = "error_amplification"\nmax = {limit}'
    commits = [f"{i}" * 40 for i in range(1, 7)]  # oldest first
    for k, commit in enumerate(commits):
        for i in range(3):
            seed.run(f"{commit[:2]}-{i}", commit=commit, branch="main", metrics={tx.ERROR_AMPLIFICATION: 4.0})
        seed.run(f"{commit[:2]}-feature", commit="f" * 40, branch="feature")
        green = k in (1, 2)  # commits 2 and 3 pass; 1, 4, 5 and 6 fail
        run_gate(store, policy(absolute.format(limit=100 if green else 1), runs=f'commit = "{commit}"'),
                 env={})
    seed.run("head-on-main", commit=HEAD, branch="main", metrics={tx.ERROR_AMPLIFICATION: 4.0})
    for i in range(3):
        seed.run(f"head-{i}", commit=HEAD, branch="feature", metrics={tx.ERROR_AMPLIFICATION: 4.0})
    regression = '[[check]]\nmetric = "error_amplification"\nmax_regression = 0.1'
    one = run_gate(store, policy(regression, runs=f'commit = "{HEAD}"\nbranch = "feature"'), env={})
    assert sorted(r.run_id for r in one.baseline) == ["33-0", "33-1", "33-2"]
    assert one.baseline_text.endswith(f"green on branch main: {commits[2][:12]}")
    two = run_gate(store, policy(regression, runs=f'commit = "{HEAD}"\nbranch = "feature"',
                                 baseline='branch = "main"\ncommits = 2'), env={})
    assert {r.commit for r in two.baseline} == {commits[1], commits[2]}
    assert len(two.baseline) == 6
    any_colour = run_gate(store, policy(regression, runs=f'commit = "{HEAD}"\nbranch = "feature"',
                                        baseline='branch = "main"\ngreen = false\ncommits = 2'), env={})
    assert {r.commit for r in any_colour.baseline} == {commits[4], commits[5]}  # HEAD's own run excluded


def _metric(store: Store, run_id: str, value: float) -> None:
    store.insert(METRICS_TABLE, pa.table({
        "project": [PROJECT], "run_id": [run_id], "scope": [tx.SCOPE_RUN], "subject": [run_id],
        "metric": [tx.OVERWRITE_RATE], "value": [value], "numerator": [0.0], "denominator": [0.0]}))
    time.sleep(0.002)  # computed_at has millisecond precision: the next row is newer


def test_the_latest_metric_computation_wins(store: Store) -> None:
    for i in range(3):
        run_span(store, f"m{i}", T0 + i)
    for run_id, values in (("m0", [0.9, 0.1]), ("m1", [0.1, 0.9]), ("m2", [0.1, float("nan")])):
        for v in values:
            _metric(store, run_id, v)
    result = run_gate(store, policy('[[check]]\nmetric = "overwrite_rate"\nmax = 0.2'), env={})
    # m0 now 0.1, m1 now 0.9; m2's latest is NaN, which hides its older value.
    assert result.checks[0].value == pytest.approx(0.5)
    assert result.checks[0].value_text.startswith("0.5 (n=2")


def _finding(store: Store, run_id: str, trace_id: str, span_id: str, confidence: float) -> None:
    store.insert(FINDINGS_TABLE, pa.table({
        "project": [PROJECT], "run_id": [run_id], "trace_id": [trace_id], "code": [tx.OVERWRITE],
        "name": [tx.BY_CODE[tx.OVERWRITE].name], "agent": ["writer"],
        "step": pa.array([1], pa.int32()), "span_id": [span_id], "confidence": [confidence],
        "evidence": ["seeded"], "detector": ["test"], "detector_version": ["0"]}))
    time.sleep(0.002)


def test_findings_by_run_or_by_trace_count_once_at_their_latest(store: Store) -> None:
    traces = [run_span(store, f"f{i}", T0 + i) for i in range(4)]
    _finding(store, "f0", traces[0], "s0", 0.9)  # by run and trace
    _finding(store, "", traces[1], "s1", 0.9)  # the detector did not know the run
    _finding(store, "f2", uuid.uuid4().hex, "s2", 0.9)  # the run's finding in another trace
    _finding(store, "f3", traces[3], "s3", 0.9)
    _finding(store, "f3", traces[3], "s3", 0.2)  # judged again: below the check's confidence now
    result = run_gate(store, policy('[[check]]\nfailure_mode = "overwrite"\nmin_confidence = 0.5\n'
                                    'max_count = 0'), env={})
    assert result.checks[0].value_text == "3 findings in 3/4 runs"
    assert sorted(e.span_id for e in result.checks[0].evidence) == ["s0", "s1", "s2"]


def test_current_commit_outside_ci_is_the_git_checkouts(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    import subprocess

    # The docs promised git outside CI; only the CI's variables were read, so a checkout
    # with a commit got "none is known here: run ... inside a git checkout".
    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(repo)]
    subprocess.run([*git, "init", "-q", "-b", "feature/x"], check=True)
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "x"], check=True)
    sha = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    monkeypatch.chdir(repo)
    flt = RunFilter(commit="current", branch="current")
    inline = policy('[[check]]\nmetric = "overwrite_rate"\nmax = 0.2\n')  # no file: the working directory
    assert judge._resolve(flt, {}, inline) == RunFilter(commit=sha, branch="feature/x")
    # What the CI says still wins.
    assert judge._resolve(flt, {c.RUN_COMMIT: "c" * 40, c.RUN_BRANCH: "main"}, inline) == RunFilter(commit="c" * 40, branch="main")
    monkeypatch.chdir(tmp_path)  # no checkout here
    with pytest.raises(judge.UsageError, match=rf"{tmp_path} is not in a git checkout; set HANDOFFS_COMMIT"):
        judge._resolve(flt, {}, inline)
    # Why none is known, in a checkout: no commit yet, or no branch (it said "with a commit checked out").
    empty = tmp_path / "empty"
    subprocess.run(["git", "init", "-q", str(empty)], check=True)
    monkeypatch.chdir(empty)
    with pytest.raises(judge.UsageError, match=rf"the git checkout at {empty} has no commit yet"):
        judge._resolve(flt, {}, inline)
    subprocess.run([*git, "checkout", "-q", "--detach"], check=True)
    monkeypatch.chdir(repo)
    assert judge._resolve(RunFilter(commit="current"), {}, inline) == RunFilter(commit=sha)
    with pytest.raises(judge.UsageError, match=r"no branch checked out \(a detached HEAD\); set HANDOFFS_BRANCH"):
        judge._resolve(RunFilter(branch="current"), {}, inline)
    subprocess.run([*git, "checkout", "-q", "feature/x"], check=True)
    # `handoffs gate --policy repo/handoffs.toml` from outside the checkout: the policy's checkout.
    (repo / "handoffs.toml").write_text('[[check]]\nmetric = "overwrite_rate"\nmax = 0.2\n')
    assert judge._resolve(flt, {}, load_policy(repo / "handoffs.toml")) == RunFilter(commit=sha, branch="feature/x")
