"""The compare page's verdicts come from the gate's tests: regressions found, noise not."""

from __future__ import annotations

import pytest

from handoffs.dashboards.verdict import compare_figure, compare_share

CLEAN = [0.0, 0.1, 0.05, 0.0, 0.1]
OVERWRITING = [0.9, 0.8, 0.85, 0.95, 0.7]


def test_a_clear_rise_is_a_regression_and_a_fall_is_not() -> None:
    worse = compare_figure("overwrite_rate", CLEAN, OVERWRITING)
    assert worse.verdict == "regression" and worse.worse_by == pytest.approx(0.79)
    assert worse.low is not None and worse.low > 0 and worse.n_a == worse.n_b == 5
    assert compare_figure("overwrite_rate", OVERWRITING, CLEAN).verdict == "no regression"


def test_direction_follows_the_figure() -> None:
    # Autonomous completion falling is the regression.
    assert compare_figure("autonomy", OVERWRITING, CLEAN, higher_is_worse=False).verdict == "regression"


def test_one_run_a_side_gets_a_difference_but_no_verdict() -> None:
    d = compare_figure("findings", [1.0], [3.0, float("nan")])
    assert d.verdict == "too few runs" and d.worse_by == 2.0 and d.n_b == 1


def test_shares_of_runs_with_a_mode() -> None:
    assert compare_share("cascade", 0, 20, 12, 20).verdict == "regression"
    assert compare_share("cascade", 1, 20, 2, 20).verdict == "no regression"


def test_below_the_gates_minimum_of_runs_there_is_no_verdict() -> None:
    # The gate (default min_runs 5) does not decide on 4 runs a side; neither does the page.
    four = compare_figure("overwrite_rate", CLEAN[:4], OVERWRITING[:4])
    assert four.verdict == "too few runs" and four.worse_by == pytest.approx(0.8375)
    single = compare_share("cascade", 0, 1, 1, 1)
    assert single.verdict == "too few runs" and (single.a, single.b, single.worse_by) == (0.0, 1.0, 1.0)
    assert compare_share("cascade", 0, 4, 4, 4).verdict == "too few runs"
