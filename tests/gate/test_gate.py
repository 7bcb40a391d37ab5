"""The gate's decisions on seeded runs: absolute limits, regressions that are and are not
significant, too few runs, an empty store, the last-green baseline, recorded results."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from gate_seed import PROJECT, Seeder

from handoffs import taxonomy as tx
from handoffs.errors import UsageError
from handoffs.gate import parse_policy, report, run_gate
from handoffs.store import Store

HEAD = "b" * 40
BASE = "a" * 40


def policy(checks: str, gate: str = "", runs: str = f'commit = "{HEAD}"',
           baseline: str = f'commit = "{BASE}"'):
    return parse_policy(f"""
[gate]
project = "{PROJECT}"
detect = false
{gate}

[runs]
{runs}

[baseline]
{baseline}

{checks}
""", "test.toml")


def seed_side(seed: Seeder, commit: str, values: list[float], metric: str = tx.ERROR_AMPLIFICATION,
              branch: str = "main", prefix: str = "") -> list[str]:
    ids = []
    for i, v in enumerate(values):
        run_id = f"{prefix or commit[:4]}-{i}"
        seed.run(run_id, commit=commit, branch=branch, metrics={metric: v})
        ids.append(run_id)
    return ids


def noisy(rng: random.Random, mean: float, sd: float, n: int) -> list[float]:
    return [max(0.0, rng.gauss(mean, sd)) for _ in range(n)]


def test_a_policy_that_passes(store: Store, seed: Seeder) -> None:
    for i in range(6):
        seed.run(f"h{i}", commit=HEAD, metrics={tx.OVERWRITE_RATE: 0.1, tx.AUTONOMOUS_COMPLETION_RATE: 0.9})
    result = run_gate(store, policy("""
[[check]]
metric = "overwrite_rate"
max = 0.2

[[check]]
failure_mode = "FM-3.1"
max_count = 0
"""))
    assert result.verdict == "pass" and result.exit_code == 0
    assert [r.verdict for r in result.checks] == ["pass", "pass"]
    assert result.checks[0].value == pytest.approx(0.1)
    assert result.checks[1].value_text == "0 findings in 0/6 runs"
    assert len(result.runs) == 6


def test_fails_on_an_absolute_threshold_and_points_at_runs_agents_spans(store: Store, seed: Seeder) -> None:
    for i in range(4):
        seed.run(f"ok{i}", commit=HEAD, metrics={tx.OVERWRITE_RATE: 0.1})
    bad_trace = seed.run("bad", commit=HEAD, metrics={tx.OVERWRITE_RATE: 0.9}, findings=[
        {"code": "FM-3.1", "agent": "supervisor", "span_id": "feedfacecafebeef", "step": 7,
         "evidence": "terminated with 2 open delegations"},
        {"code": "overwrite", "agent": "writer", "span_id": "0123456789abcdef", "step": 3}])
    result = run_gate(store, policy("""
[[check]]
name = "overwrites"
metric = "overwrite_rate"
max = 0.2

[[check]]
name = "no premature termination"
failure_mode = "FM-3.1"
max_count = 0

[[check]]
name = "soft"
metric = "overwrite_rate"
max = 0.2
severity = "warn"
"""))
    assert result.exit_code == 1
    by_name = {r.check.name: r for r in result.checks}
    over = by_name["overwrites"]
    assert over.verdict == "fail" and over.value == pytest.approx((0.4 + 0.9) / 5)
    assert over.evidence[0].run_id == "bad" and over.evidence[0].trace_id == bad_trace
    # the overwrite finding of the worst run gives the span id
    assert any(e.span_id == "0123456789abcdef" and e.agent == "writer" for e in over.evidence)
    term = by_name["no premature termination"]
    assert term.verdict == "fail" and term.value == 1.0
    assert [(e.run_id, e.agent, e.span_id, e.step) for e in term.evidence] == [
        ("bad", "supervisor", "feedfacecafebeef", 7)]
    assert "open delegations" in term.evidence[0].detail
    assert by_name["soft"].verdict == "warn"


REGRESSION = """
[[check]]
name = "error amplification"
metric = "error_amplification"
max_regression = 0.10
"""


def test_fails_on_a_significant_regression(store: Store, seed: Seeder) -> None:
    rng = random.Random(7)
    seed_side(seed, BASE, noisy(rng, 4.4, 0.6, 10))
    seed_side(seed, HEAD, noisy(rng, 8.0, 0.6, 10))
    result = run_gate(store, policy(REGRESSION))
    check = result.checks[0]
    assert result.exit_code == 1 and check.verdict == "fail" and check.decided
    cmp = check.comparison
    assert cmp is not None and cmp.significant and cmp.p_value < 0.001
    assert cmp.low > cmp.margin > 0  # the whole interval is beyond the 10% allowed
    assert cmp.n_current == 10 and cmp.n_baseline == 10
    assert "regressed beyond the allowed 10%" in check.message
    assert check.evidence and check.evidence[0].run_id.startswith("bbbb")


def test_a_noisy_but_insignificant_change_does_not_fail(store: Store, seed: Seeder) -> None:
    rng = random.Random(11)
    seed_side(seed, BASE, noisy(rng, 4.4, 1.5, 6))
    current = noisy(rng, 4.4, 1.5, 6)
    # the point estimate is worse than allowed, as a coin flip would say; the test must not be fooled
    current = [v + 1.0 for v in current]
    seed_side(seed, HEAD, current)
    result = run_gate(store, policy(REGRESSION))
    check = result.checks[0]
    cmp = check.comparison
    assert cmp is not None and cmp.effect > cmp.margin
    assert not cmp.significant and check.verdict == "pass" and result.exit_code == 0
    assert "not significantly" in check.message


def test_higher_is_better_metrics_regress_downwards(store: Store, seed: Seeder) -> None:
    seed_side(seed, BASE, [0.9, 0.85, 0.92, 0.88, 0.9, 0.91], tx.AUTONOMOUS_COMPLETION_RATE)
    seed_side(seed, HEAD, [0.5, 0.45, 0.55, 0.52, 0.48, 0.5], tx.AUTONOMOUS_COMPLETION_RATE)
    result = run_gate(store, policy("""
[[check]]
metric = "autonomous_completion_rate"
max_increase = 0.05
"""))
    assert result.checks[0].verdict == "fail"
    assert result.checks[0].comparison.effect == pytest.approx(0.9 - 0.5, abs=0.02)
    # the same drop is an improvement for a lower-is-better metric of the user's own
    seed_side(seed, BASE, [0.9, 0.85, 0.92, 0.88, 0.9, 0.91], "my_score", prefix="mb")
    seed_side(seed, HEAD, [0.5, 0.45, 0.55, 0.52, 0.48, 0.5], "my_score", prefix="mh")
    improved = run_gate(store, policy("""
[[check]]
metric = "my_score"
direction = "lower"
max_increase = 0.05
"""))
    assert improved.checks[0].verdict == "pass"


def test_failure_mode_share_of_runs_is_a_proportion_test(store: Store, seed: Seeder) -> None:
    fm = [{"code": "FM-3.1"}]
    for i in range(12):
        seed.run(f"base{i}", commit=BASE, findings=fm if i == 0 else ())
    for i in range(12):
        seed.run(f"head{i}", commit=HEAD, findings=fm if i < 9 else ())
    result = run_gate(store, policy("""
[[check]]
failure_mode = "FM-3.1"
max_regression = 0
"""))
    check = result.checks[0]
    assert check.comparison.test == "fisher-exact" and check.verdict == "fail"
    assert check.value == pytest.approx(9 / 12) and check.baseline == pytest.approx(1 / 12)
    assert {e.run_id for e in check.evidence} <= {f"head{i}" for i in range(9)}


def test_one_more_affected_run_is_not_a_regression(store: Store, seed: Seeder) -> None:
    fm = [{"code": "FM-3.1"}]
    for i in range(10):
        seed.run(f"base{i}", commit=BASE, findings=fm if i == 0 else ())
        seed.run(f"head{i}", commit=HEAD, findings=fm if i < 2 else ())
    result = run_gate(store, policy("""
[[check]]
failure_mode = "FM-3.1"
max_regression = 0
"""))
    assert result.checks[0].verdict == "pass" and not result.checks[0].comparison.significant


@pytest.mark.parametrize(("rule", "verdict", "exit_code"), [("warn", "warn", 0), ("fail", "fail", 1),
                                                            ("pass", "pass", 0)])
def test_too_few_runs_says_so_and_applies_the_rule(store: Store, seed: Seeder, rule: str, verdict: str,
                                                   exit_code: int) -> None:
    seed_side(seed, BASE, [4.0, 4.1])
    seed_side(seed, HEAD, [9.0, 9.5])  # a big change, but on two runs a side nothing is known
    result = run_gate(store, policy(REGRESSION, gate=f'too_few_runs = "{rule}"'))
    check = result.checks[0]
    assert (check.verdict, result.exit_code, check.decided) == (verdict, exit_code, False)
    assert "too few runs to compare: 2 current, 2 baseline, need 5 each" in check.message
    assert check.comparison is None
    assert report.verdict_label(check) == f"{verdict.upper()} (too few runs)"
    case = report.junit_tree(result).getroot().find("testsuite/testcase")
    assert case is not None
    assert [child.tag for child in case if child.tag != "system-out"] == {
        "warn": [], "fail": ["failure"], "pass": ["skipped"]}[rule]


def test_a_warn_check_never_fails_the_build_even_when_undecided(store: Store, seed: Seeder) -> None:
    seed_side(seed, HEAD, [9.0])
    result = run_gate(store, policy(REGRESSION.replace("max_regression", 'severity = "warn"\nmax_regression'),
                                    gate='too_few_runs = "fail"'))
    assert result.checks[0].verdict == "warn" and result.exit_code == 0


def test_an_empty_store_applies_the_no_runs_rule(store: Store) -> None:
    checks = """
[[check]]
metric = "overwrite_rate"
max = 0.2

[[check]]
failure_mode = "FM-3.1"
max_count = 0
max_regression = 0
"""
    result = run_gate(store, policy(checks))
    assert result.runs == [] and result.exit_code == 1
    assert all(r.verdict == "fail" and not r.decided and "no runs to judge" in r.message
               for r in result.checks)
    assert report.verdict_label(result.checks[0]) == "FAIL (no runs)"
    lenient = run_gate(store, policy(checks, gate='no_runs = "warn"'))
    assert lenient.verdict == "warn" and lenient.exit_code == 0


def test_baseline_is_the_last_green_commit_on_main(store: Store, seed: Seeder) -> None:
    rng = random.Random(3)
    old, green, red = "1" * 40, "2" * 40, "3" * 40
    seed_side(seed, old, noisy(rng, 9.0, 0.3, 6))
    seed_side(seed, green, noisy(rng, 4.0, 0.3, 6))
    seed_side(seed, "f" * 40, noisy(rng, 4.0, 0.3, 6), branch="feature")  # other branches never count
    absolute = 'metric = "error_amplification"\nmax = 100'
    for commit in (old, green):
        run_gate(store, policy(f"[[check]]\n{absolute}", runs=f'commit = "{commit}"'), env={})
    seed_side(seed, red, noisy(rng, 4.0, 0.3, 6))
    failing = policy(f"[[check]]\n{absolute.replace('100', '1')}", runs=f'commit = "{red}"')
    assert run_gate(store, failing, env={}).exit_code == 1  # recorded: red is not green
    seed_side(seed, HEAD, noisy(rng, 6.0, 0.3, 6), branch="feature")
    result = run_gate(store, policy(REGRESSION, baseline='branch = "main"'), env={})
    assert {r.commit for r in result.baseline} == {green}
    assert "green on branch main" in result.baseline_text and green[:12] in result.baseline_text
    assert result.checks[0].verdict == "fail"  # 6 vs 4: significantly more than 10% worse


def test_no_green_commit_yet_is_too_few_runs(store: Store, seed: Seeder) -> None:
    seed_side(seed, HEAD, [1.0] * 6)
    result = run_gate(store, policy(REGRESSION, baseline='branch = "main"'), env={})
    assert result.baseline == [] and "no earlier commit green on branch main" in result.baseline_text
    assert result.checks[0].verdict == "warn" and not result.checks[0].decided
    assert report.verdict_label(result.checks[0]) == "WARN (no baseline)"  # not "too few runs": there is none
    assert "policy name" not in result.baseline_text


def test_a_renamed_policy_with_no_green_commit_names_the_names_gates_were_recorded_under(
        store: Store, seed: Seeder) -> None:
    seed_side(seed, BASE, [1.0] * 6)
    run_gate(store, policy('[[check]]\nmetric = "error_amplification"\nmax = 100', gate='name = "team"',
                           runs=f'commit = "{BASE}"'), env={})
    seed_side(seed, HEAD, [1.0] * 6, branch="feature")
    renamed = run_gate(store, policy(REGRESSION, gate='name = "team-v2"', baseline='branch = "main"'), env={})
    assert renamed.baseline == []
    assert "green is counted per policy name, and this policy is 'team-v2'" in renamed.baseline_text
    assert "recorded under 'team'" in renamed.baseline_text
    same = run_gate(store, policy(REGRESSION, gate='name = "team"', baseline='branch = "main"'), env={})
    assert {r.commit for r in same.baseline} == {BASE}


def test_baseline_override_takes_run_ids_or_commits(store: Store, seed: Seeder) -> None:
    seed_side(seed, BASE, [4.0, 4.2, 4.1, 3.9, 4.0])
    seed_side(seed, HEAD, [4.0, 4.2, 4.1, 3.9, 4.0])
    by_commit = run_gate(store, policy(REGRESSION), baseline=BASE[:10])
    assert len(by_commit.baseline) == 5
    by_ids = run_gate(store, policy(REGRESSION), baseline="aaaa-0,aaaa-1")
    assert sorted(r.run_id for r in by_ids.baseline) == ["aaaa-0", "aaaa-1"]
    with pytest.raises(UsageError, match="no run or commit"):
        run_gate(store, policy(REGRESSION), baseline="nothing-like-this")
    # A value matching nothing was dropped silently when another matched; a blank list meant
    # every other run in the store; with no regression check a typo went unnoticed.
    with pytest.raises(UsageError, match="--baseline nothing-like-this: no run or commit"):
        run_gate(store, policy(REGRESSION), baseline="aaaa-0,nothing-like-this")
    for blank in (" ", ",", ""):
        with pytest.raises(UsageError, match="names nothing"):
            run_gate(store, policy(REGRESSION), baseline=blank)
    with pytest.raises(UsageError, match="no run or commit"):
        run_gate(store, policy('[[check]]\nmetric = "overwrite_rate"\nmax = 0.2'), baseline="typo")


def test_runs_are_selected_by_tag_branch_and_window(store: Store, seed: Seeder) -> None:
    seed.run("t1", commit=HEAD, branch="dev", tags=["nightly"], metrics={tx.OVERWRITE_RATE: 0.5})
    seed.run("t2", commit=HEAD, branch="dev", metrics={tx.OVERWRITE_RATE: 0.0})
    check = '[[check]]\nmetric = "overwrite_rate"\nmax = 0.2'
    assert [r.run_id for r in run_gate(store, policy(check, runs='tag = "nightly"')).runs] == ["t1"]
    assert len(run_gate(store, policy(check, runs='branch = "dev"')).runs) == 2
    assert run_gate(store, policy(check, runs='since = "1h"')).runs == []  # seeded long ago


def test_agent_scope_points_at_agents(store: Store, seed: Seeder) -> None:
    for i in range(3):
        seed.run(f"r{i}", commit=HEAD, agent_metrics={"writer": {tx.OVERWRITE_RATE: 0.8},
                                                      "coder": {tx.OVERWRITE_RATE: 0.0}})
    result = run_gate(store, policy('[[check]]\nmetric = "overwrite_rate"\nscope = "agent"\nmax = 0.2'))
    assert result.checks[0].verdict == "fail"
    assert {e.agent for e in result.checks[0].evidence[:3]} == {"writer"}
    only_coder = run_gate(store, policy(
        '[[check]]\nmetric = "overwrite_rate"\nscope = "agent"\nsubject = "coder"\nmax = 0.2'))
    assert only_coder.checks[0].verdict == "pass"


def test_results_are_recorded(store: Store, seed: Seeder) -> None:
    seed.run("x", commit=HEAD, branch="main", metrics={tx.OVERWRITE_RATE: 0.5})
    result = run_gate(store, policy('[[check]]\nname = "ow"\nmetric = "overwrite_rate"\nmax = 0.2'), env={})
    rows = store.query("SELECT gate_id, check_name, verdict, value, limit_value, run_ids, commit, branch "
                       "FROM handoffs_gate_results FINAL")
    assert rows == [{"gate_id": result.gate_id, "check_name": "ow", "verdict": "fail", "value": 0.5,
                     "limit_value": 0.2, "run_ids": ["x"], "commit": HEAD, "branch": "main"}]


def test_current_commit_comes_from_ci(store: Store, seed: Seeder, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    seed.run("mine", commit=HEAD, metrics={tx.OVERWRITE_RATE: 0.1})
    seed.run("other", commit=BASE, metrics={tx.OVERWRITE_RATE: 0.9})
    check = '[[check]]\nmetric = "overwrite_rate"\nmax = 0.2'
    env = {"GITHUB_ACTIONS": "true", "GITHUB_SHA": HEAD, "GITHUB_REF_NAME": "main"}
    result = run_gate(store, policy(check, runs=""), env=env)
    assert [r.run_id for r in result.runs] == ["mine"] and result.commit == HEAD
    monkeypatch.chdir(tmp_path)  # outside CI and outside a git checkout (test_selection covers git's)
    with pytest.raises(UsageError, match="HANDOFFS_COMMIT"):
        run_gate(store, policy(check, runs='commit = "current"'), env={})


def test_the_gate_judges_new_traces_without_reading_every_stored_finding_back(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    from handoffs.demo import simulate
    from handoffs.detectors import load_findings, pipeline
    from handoffs.gate.judge import refresh_detection

    [run] = simulate(1, seed=5, inject="overwrite", failure_rate=1.0, store=store)

    def every_finding(*args: object, **kwargs: object) -> None:
        raise AssertionError("the gate read every stored finding back")

    monkeypatch.setattr(pipeline, "load", every_finding)  # what detect() reads every finding back with
    assert refresh_detection(store, [run.run_id]) is None
    monkeypatch.undo()
    [stored] = load_findings(store, [run.trace_id])
    assert "overwrite" in stored.codes()


def test_the_gate_judges_the_runs_it_compares_not_a_store_nobody_judged(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    from handoffs.demo import simulate
    from handoffs.detectors import pipeline
    from handoffs.store.schema import DETECTED_TABLE

    runs = simulate(3, seed=5, inject="overwrite", failure_rate=1.0, store=store)
    spans = int(store.scalar("SELECT count() FROM otel_traces"))
    # Months of traces never judged by this detector set (a new store, or an upgrade): judging
    # them all is a full pass, left to `handoffs detect`; the gate judges the runs it compares.
    monkeypatch.setattr(pipeline, "PASSING_SPANS", spans - 1)
    result = run_gate(store, parse_policy('[[check]]\nfailure_mode = "overwrite"\nmax_count = 0', "test.toml"),
                      run_ids=[runs[0].run_id], detect=True)
    judged = {r["trace_id"] for r in store.query(f"SELECT trace_id FROM {DETECTED_TABLE}")}
    assert judged == {runs[0].trace_id}
    assert result.checks[0].verdict == "fail"  # its overwrite was found
    [note] = [n for n in result.notes if "handoffs detect" in n]
    assert f"({spans:,} spans stored)" in note


def test_the_gate_computes_again_only_the_metrics_of_runs_judged_since(store: Store) -> None:
    from handoffs.demo import simulate
    from handoffs.gate.judge import refresh_detection
    from handoffs.store.schema import METRICS_TABLE

    def computed() -> dict[str, object]:
        return {r["run_id"]: r["at"] for r in store.query(
            f"SELECT run_id, max(computed_at) AS at FROM {METRICS_TABLE} GROUP BY run_id")}

    base = simulate(2, seed=5, inject="overwrite", failure_rate=1.0, store=store)
    assert refresh_detection(store, [r.run_id for r in base]) is None
    stored = computed()
    assert set(stored) == {r.run_id for r in base}
    # The next build: its runs are new, the baseline's metrics were stored by the last gate.
    build = simulate(2, seed=6, inject="overwrite", failure_rate=1.0, store=store)
    runs = build + base
    assert refresh_detection(store, [r.run_id for r in runs]) is None
    now = computed()
    assert set(now) == {r.run_id for r in runs}
    assert {r.run_id: now[r.run_id] for r in base} == stored


def test_agent_text_reaches_every_report_as_written(store: Store, seed: Seeder, tmp_path: Path) -> None:
    import io
    import xml.etree.ElementTree as ET

    # Square brackets in evidence were read as rich markup ("[/]" crashed the table after the
    # gate had judged, so no JUnit was written); control characters made the JUnit unparsable.
    evidence = "terminated (done; see logs[/] and [bold]x\x1b[31m\x00\x07)"
    for i in range(5):
        seed.run(f"m{i}", commit=HEAD, findings=[{"code": "FM-3.1", "evidence": evidence}])
    result = run_gate(store, policy('[[check]]\nname = "no early stop [strict]"\nfailure_mode = "FM-3.1"\n'
                                    'max_count = 0'))
    out = io.StringIO()
    report.write_table(result, out)
    table = out.getvalue()
    assert "no early stop [strict]" in table and "see logs[/] and [bold]x" in table
    assert "\x1b" not in table and "x\ufffd[31m" in table  # an agent's colour code would restyle the terminal
    report.write_junit(result, tmp_path / "gate.xml")
    failure = ET.parse(tmp_path / "gate.xml").getroot().find("testsuite/testcase/failure")
    assert failure is not None and "see logs[/] and [bold]x\ufffd[31m\ufffd\ufffd)" in (failure.text or "")


def test_a_session_is_never_its_own_baseline(store: Store, seed: Seeder) -> None:
    # The pytest plugin judges a session's run ids. Its commit was not excluded from the
    # baseline, so a second session on a commit already gated green compared it with itself.
    session_env = {"HANDOFFS_COMMIT": HEAD, "HANDOFFS_BRANCH": "main"}
    seed_side(seed, BASE, [4.0, 4.2, 4.1, 3.9, 4.0])
    run_gate(store, policy(REGRESSION, runs=f'commit = "{BASE}"', baseline=""), env={})
    first = seed_side(seed, HEAD, [4.0, 4.2, 4.1, 3.9, 4.0], prefix="s1")
    assert run_gate(store, policy(REGRESSION, runs="", baseline=""), run_ids=first, env=session_env).verdict != "fail"
    second = seed_side(seed, HEAD, [4.0, 4.2, 4.1, 3.9, 4.0], prefix="s2")
    result = run_gate(store, policy(REGRESSION, runs="", baseline=""), run_ids=second, env=session_env)
    assert {r.commit for r in result.baseline} == {BASE}


def test_runs_the_detectors_never_judged_do_not_pass_a_failure_mode_check(store: Store, seed: Seeder) -> None:
    # With --no-detect on runs never detected, "0 findings" read as a clean pass.
    for i in range(5):
        seed.run(f"u{i}", commit=HEAD, judged=i < 3)
    check = run_gate(store, policy('[[check]]\nfailure_mode = "overwrite"\nmax_count = 0')).checks[0]
    assert (check.verdict, check.decided, report.verdict_label(check)) == ("warn", False, "WARN (not judged)")
    assert "2 of the 5 runs have not been judged by the detectors" in check.message
    # Findings that already break the limit fail it whatever the rest would have shown.
    seed.run("u5", commit=HEAD, findings=[{"code": "overwrite"}])
    assert run_gate(store, policy('[[check]]\nfailure_mode = "overwrite"\nmax_count = 0')).checks[0].verdict == "fail"


def test_a_share_fishers_test_does_not_call_worse_shows_no_interval_that_would(store: Store, seed: Seeder) -> None:
    # 0/5 -> 3/5: Newcombe's interval [+0.12, +0.86] cleared 0 beside "p=0.083 PASS", as if
    # the table contradicted its verdict. Fisher's test decides here, so its p-value is shown.
    for i in range(5):
        seed.run(f"base{i}", commit=BASE)
        seed.run(f"head{i}", commit=HEAD, findings=[{"code": "FM-3.1"}] if i < 3 else ())
    result = run_gate(store, policy('[[check]]\nfailure_mode = "FM-3.1"\nmax_regression = 0'))
    check = result.checks[0]
    assert check.verdict == "pass" and check.comparison.p_value == pytest.approx(0.0833, abs=1e-3)
    assert report._change(check) == "+0.6 p=0.083"
    assert "fisher-exact p=0.0833" in check.message and "interval" not in check.message
    assert report.to_json(result)["checks"][0]["comparison"]["interval"] is None


def test_no_runs_for_a_short_commit_says_prefixes_need_7_characters(store: Store, seed: Seeder) -> None:
    seed_side(seed, HEAD, [1.0] * 5)
    result = run_gate(store, policy('[[check]]\nmetric = "error_amplification"\nmax = 5', runs=f'commit = "{HEAD[:6]}"'))
    assert result.runs == [] and "fewer than 7 characters matches only a whole commit id" in result.runs_text
    assert len(run_gate(store, policy('[[check]]\nmetric = "error_amplification"\nmax = 5',
                                      runs=f'commit = "{HEAD[:7]}"')).runs) == 5


def test_a_junit_path_is_tried_not_asked_about(tmp_path: Path) -> None:
    # Permission bits say yes to root, under /proc too: the gate judged and recorded, then failed.
    with pytest.raises(UsageError, match="cannot write the JUnit report to /proc/handoffs-gate.xml"):
        report.check_junit_path("/proc/handoffs-gate.xml")
    assert report.check_junit_path(tmp_path / "reports" / "gate.xml") == tmp_path / "reports" / "gate.xml"
    assert not (tmp_path / "reports" / "gate.xml").exists()  # tried, then left for the real report


def test_a_metric_no_measured_run_had_the_denominator_of_passes_as_not_applicable(store: Store, seed: Seeder) -> None:
    # A team without errors has no error amplification: the example policy's check warned forever.
    for i in range(5):
        seed.run(f"m{i}", commit=HEAD, metrics={tx.failure_rate_metric("FM-3.1"): 0.0})
    check = run_gate(store, policy('[[check]]\nmetric = "error_amplification"\nmax = 2')).checks[0]
    assert (check.verdict, check.applicable, check.value_text) == ("pass", False, "n/a")
    assert report.verdict_label(check) == "PASS (not applicable)"
    assert "none of the 5 runs had an error to amplify" in check.message
    # A run never measured, a named subject (a typo?) or a metric of one's own stays undecided.
    seed.run("m5", commit=HEAD)
    for checks in ('[[check]]\nmetric = "error_amplification"\nmax = 2',
                   '[[check]]\nmetric = "overwrite_rate"\nscope = "agent"\nsubject = "writr"\nmax = 0.2'):
        check = run_gate(store, policy(checks)).checks[0]
        assert (check.verdict, check.undecided_because, check.applicable) == ("warn", "no values", True), checks
    mine = run_gate(store, policy('[[check]]\nmetric = "my_score"\ndirection = "higher"\nmin = 0.5',
                                  runs='run_ids = ["m0", "m1"]')).checks[0]
    assert (mine.verdict, mine.undecided_because) == ("warn", "no values")


def test_report_lines_are_never_broken_so_a_ci_log_keeps_each_whole(store: Store, seed: Seeder) -> None:
    import io

    # Evidence past 140 columns was broken into lines mid-word: grep and copying a trace id failed.
    evidence = "the supervisor overwrote the output of route_writer " + "after many outputs " * 12 + "END"
    for i in range(5):
        seed.run(f"w{i}", commit=HEAD, findings=[{"code": "FM-3.1", "evidence": evidence}])
    result = run_gate(store, policy('[[check]]\nfailure_mode = "FM-3.1"\nmax_count = 0'))
    out = io.StringIO()
    report.write_table(result, out)
    lines = out.getvalue().splitlines()
    found = [x for x in lines if evidence in x]
    assert len(found) == 5 and all(x.startswith("    - run w") for x in found)
    assert any(len(x) > 140 for x in found)
    assert max(len(x) for x in lines if x[:1] in "┏┃┡│└") <= 140  # the table still fits the width
