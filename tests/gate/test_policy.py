"""Policy files: the documented example parses; every mistake names the line at fault."""

from __future__ import annotations

from pathlib import Path

import pytest

from handoffs.errors import UsageError
from handoffs.gate import load_policy, parse_policy

EXAMPLE = Path(__file__).resolve().parents[2] / "handoffs.example.toml"


def test_the_example_policy_parses_with_its_documented_defaults() -> None:
    policy = load_policy(EXAMPLE)
    assert policy.significance == 0.05 and policy.min_runs == 5
    assert (policy.too_few_runs, policy.no_runs) == ("warn", "fail")
    assert policy.baseline.filter.branch == "main" and policy.baseline.green
    names = [c.name for c in policy.checks]
    assert "supervisor overwrites" in names and "no premature termination" in names
    completion = next(c for c in policy.checks if c.metric == "autonomous_completion_rate")
    assert completion.direction == "higher" and completion.severity == "warn"


def test_minimal_policy_gets_defaults_and_a_readable_name() -> None:
    policy = parse_policy('[[check]]\nmetric = "error_amplification"\nmax_regression = 0.1\n', "p.toml")
    check = policy.checks[0]
    assert check.name == "error_amplification mean <= 10% worse than baseline"
    assert check.direction == "lower" and check.severity == "fail" and check.line == 1
    assert policy.name == "p" and policy.detect


def test_an_absolute_allowance_reads_the_way_the_metric_improves() -> None:
    policy = parse_policy('[[check]]\nmetric = "autonomous_completion_rate"\nmax_increase = 0.05\n'
                          '[[check]]\nmetric = "overwrite_rate"\nmax_increase = 0.05\n')
    higher, lower = policy.checks
    # Higher is better: the mean may fall at most 0.05 below the baseline, so it must stay above.
    assert higher.limit_text() == "mean >= baseline - 0.05"
    assert lower.limit_text() == "mean <= baseline + 0.05"
    assert higher.name == "autonomous_completion_rate mean >= baseline - 0.05"


def _error(text: str) -> str:
    with pytest.raises(UsageError) as info:
        parse_policy(text, "handoffs.toml")
    return str(info.value)


_CHECK = '[[check]]\nmetric = "overwrite_rate"\nmax = 0.2\n'


@pytest.mark.parametrize(("text", "line", "words"), [
    ('[gate]\nsignificance = 0.05\nmin_runs = [\n', 3, "not valid TOML"),
    ('[gate]\nsignificance = 0.05 0.1\n\n[[check]]\nmetric = "overwrite_rate"\nmax = 0.2\n', 2, "not valid TOML"),
    ('[gate]\nname = "x"\n\n[[check]]\nmetric = "overwrite_rate"\nmaxx = 0.2\n', 6, "unknown key 'maxx'"),
    ('[[check]]\nmetric = "overwrite_rate"\nmax = 0.2\n\n[[check]]\nmetric = "overwrite-rate"\nmax = 1\n',
     6, "unknown metric 'overwrite-rate'"),
    ('[[check]]\nfailure_mode = "FM-9.9"\nmax_count = 0\n', 2, "unknown failure mode"),
    ('[[check]]\nmetric = "overwrite_rate"\n', 1, "sets no limit"),
    ('[[check]]\nmetric = "overwrite_rate"\nmax = "0.2"\n', 3, "max must be a number"),
    ('[[check]]\nmetric = "overwrite_rate"\nmax = true\n', 3, "max must be a number"),
    ('[[check]]\nmetric = "overwrite_rate"\nmax = 0.2\nseverity = "error"\n', 4, "not one of fail, warn"),
    ('[gate]\ntoo_few_runs = "maybe"\n[[check]]\nmetric = "overwrite_rate"\nmax = 0.2\n', 2,
     "not one of fail, warn, pass"),
    ('[gate]\nsignificance = 2\n[[check]]\nmetric = "overwrite_rate"\nmax = 0.2\n', 2, "between"),
    # nan compares false with everything: a check with max = nan could never fail a build.
    ('[[check]]\nmetric = "overwrite_rate"\nmax = nan\n', 3, "a finite number, not nan"),
    ('[gate]\nsignificance = nan\n[[check]]\nmetric = "overwrite_rate"\nmax = 0.2\n', 2, "finite"),
    ('[[check]]\nmetric = "overwrite_rate"\nmax_regression = inf\n', 3, "a finite number, not inf"),
    ('[runs]\nsince = "yesterday"\n[[check]]\nmetric = "overwrite_rate"\nmax = 0.2\n', 2, "ISO 8601"),
    ('[runs]\nsince = "2026-02-01T00:00:00Z"\nuntil = "2026-01-01T00:00:00Z"\n[[check]]\n'
     'metric = "overwrite_rate"\nmax = 0.2\n', 3, "is not after since"),
    ('[[check]]\nmetric = "overwrite_rate"\nfailure_mode = "FM-3.1"\nmax = 1\n', 1, "exactly one of"),
    ('[[check]]\nmetric = "overwrite_rate"\nmax_count = 0\n', 3, "applies to failure_mode checks"),
    ('[[check]]\nfailure_mode = "FM-3.1"\nmax = 0\n', 3, "applies to metric checks"),
    ('[[check]]\nname = "a"\nmetric = "overwrite_rate"\nmax = 0.2\n[[check]]\nname = "a"\n'
     'metric = "overwrite_rate"\nmin = 0\n', 5, "two checks are named 'a'"),
    ('[gate]\nname = "x"\n', 1, "no checks"),
    ('[gates]\nname = "x"\n', 1, "unknown table or key 'gates'"),
    ('[gate]\nname = "x"\n\n[check]\nmetric = "overwrite_rate"\nmax = 0.2\n', 4, "is written [[check]]"),
    # Each of these was accepted and then judged something other than what was written.
    ('[[check]]\nmetric = "overwrite_rate"\ndirection = "higher"\nmax_increase = 0.05\n', 3,
     "overwrite_rate is lower-is-better: drop direction"),
    ('[[check]]\nfailure_mode = "overwrite"\ndirection = "higher"\nmax_count = 0\n', 3, "applies to metric checks"),
    ('[[check]]\nmetric = "overwrite_rate"\nmin = 0.5\nmax = 0.1\n', 3, "min = 0.5 is above max = 0.1"),
    ('[[check]]\nmetric = "overwrite_rate"\nsubject = "writer"\nmax = 0.2\n', 3, 'scope = "agent"'),
    ('[[check]]\nmetric = "overwrite_rate"\nscope = "pair"\nsubject = "writer"\nmax = 0.2\n', 4,
     'a pair is "delegator->delegate"'),
    # Keys TOML spells as dotted keys, quoted keys or sub-tables were all put on line 1.
    ('# ours\ngate.min_runs = 1\n' + _CHECK, 2, "min_runs = 1 must be at least 2"),
    ('# ours\nruns.since = "yesterday"\n' + _CHECK, 2, "ISO 8601"),
    ('[gate]\nname = "x"\n[gate.extra]\na = 1\n' + _CHECK, 3, "unknown key 'extra' in [gate]"),
    ('[gate]\nname = "x"\nextra.a = 1\n' + _CHECK, 3, "unknown key 'extra' in [gate]"),
    ('[gate]\n"name" = 5\n' + _CHECK, 2, "name must be a string"),
    ('[gate]\nname = "x"\n' + _CHECK + 'limits.max = 1\n', 6, "unknown key 'limits' in [check]"),
    ('[gate]\nname = "x"\n' + _CHECK + '[check.sub]\nx = 1\n', 6, "unknown key 'sub' in [check]"),
])
def test_a_malformed_policy_names_the_line_at_fault(text: str, line: int, words: str) -> None:
    message = _error(text)
    assert message.startswith(f"handoffs.toml:{line}: "), message
    assert words in message


def test_a_metric_of_ones_own_needs_a_direction() -> None:
    assert "direction" in _error('[[check]]\nmetric = "my_score"\nmax = 1\n')
    policy = parse_policy('[[check]]\nmetric = "my_score"\ndirection = "higher"\nmin = 0.5\n')
    assert policy.checks[0].direction == "higher"


def test_a_missing_policy_file_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="handoffs.example.toml"):
        load_policy(tmp_path / "nope.toml")


def test_default_names_tell_scopes_apart() -> None:
    policy = parse_policy('[[check]]\nmetric = "overwrite_rate"\nmax = 0.5\n'
                          '[[check]]\nmetric = "overwrite_rate"\nscope = "agent"\nmax = 0.5\n')
    assert [c.name for c in policy.checks] == ["overwrite_rate <= 0.5", "overwrite_rate per agent <= 0.5"]


def test_a_pair_subject_may_be_spaced_and_a_file_may_start_with_a_bom(tmp_path: Path) -> None:
    path = tmp_path / "bom.toml"
    path.write_bytes(b"\xef\xbb\xbf" + b'[[check]]\nmetric = "overwrite_rate"\nscope = "pair"\n'
                     b'subject = "supervisor -> writer"\nmax = 0.2\n')
    assert load_policy(path).checks[0].subject == "supervisor->writer"


def test_an_empty_policy_path_says_so() -> None:
    with pytest.raises(UsageError, match="--policy is empty"):  # was "cannot read policy file .: Is a directory"
        load_policy("")
