"""The statistics behind regression checks: agree with scipy's reference tests, and hold
their false-alarm rate when nothing changed."""

from __future__ import annotations

import random

import pytest
from scipy import stats as sps

from handoffs.gate.stats import compare_means, compare_proportions, wilson_interval


def test_welch_matches_scipy_and_orients_effects_as_worse() -> None:
    cur, base = [5.1, 6.3, 5.8, 7.0, 6.1], [4.2, 4.8, 4.4, 5.0, 4.1, 4.6]
    cmp = compare_means(cur, base, alpha=0.05)
    ref = sps.ttest_ind(cur, base, equal_var=False, alternative="greater")
    assert cmp.p_value == pytest.approx(ref.pvalue, rel=1e-9)
    assert cmp.effect > 0 and cmp.significant and cmp.low > 0
    better = compare_means(cur, base, alpha=0.05, higher_is_worse=False)  # higher is better here
    assert better.effect < 0 and not better.significant


def test_a_margin_shifts_the_null() -> None:
    cur, base = [11.0, 11.2, 10.9, 11.1, 11.0], [10.0, 10.1, 9.9, 10.0, 10.05]
    assert compare_means(cur, base, 0.05, margin=0.5).significant
    assert not compare_means(cur, base, 0.05, margin=1.5).significant  # 10% worse allowed, ~10% seen


def test_constant_sides_compare_exactly() -> None:
    assert compare_means([2.0] * 5, [1.0] * 5, 0.05).significant
    same = compare_means([0.9] * 5, [0.9] * 5, 0.05, higher_is_worse=False)
    assert not same.significant
    assert same.describe().startswith("+0 worse [+0, +0]")  # was "-0 worse [-0, -0]" for higher-is-better


def test_one_run_against_one_run_is_never_judged() -> None:
    with pytest.raises(ValueError):
        compare_means([9.0], [1.0], 0.05)


def test_fisher_matches_scipy_and_newcombe_handles_margins() -> None:
    cmp = compare_proportions(9, 12, 1, 12, alpha=0.05)
    ref = sps.fisher_exact([[9, 3], [1, 11]], alternative="greater")
    assert cmp.test == "fisher-exact" and cmp.p_value == pytest.approx(ref.pvalue)
    assert cmp.significant and cmp.low > 0 and cmp.effect == pytest.approx(8 / 12)
    assert not compare_proportions(2, 10, 1, 10, alpha=0.05).significant
    with_margin = compare_proportions(9, 12, 1, 12, alpha=0.05, margin=0.2)
    assert with_margin.test == "newcombe" and with_margin.significant
    assert not compare_proportions(9, 12, 1, 12, alpha=0.05, margin=0.6).significant


def test_wilson_interval_stays_inside_0_1_and_covers_the_estimate() -> None:
    for x, n in ((0, 5), (5, 5), (3, 10)):
        low, high = wilson_interval(x, n, 1.96)
        assert 0.0 <= low <= x / n <= high <= 1.0
    assert wilson_interval(0, 5, 1.96)[1] > 0.2  # zero of five is not proof of zero


def test_false_alarms_stay_near_the_significance_level_when_nothing_changed() -> None:
    rng = random.Random(2024)
    alpha, trials = 0.05, 2000
    means = sum(compare_means([rng.gauss(4.4, 1.5) for _ in range(8)],
                              [rng.gauss(4.4, 1.5) for _ in range(8)], alpha).significant
                for _ in range(trials)) / trials
    props = sum(compare_proportions(sum(rng.random() < 0.3 for _ in range(15)), 15,
                                    sum(rng.random() < 0.3 for _ in range(15)), 15, alpha).significant
                for _ in range(trials)) / trials
    print(f"false alarm rate: means {means:.3f}, proportions {props:.3f} at alpha {alpha}")
    assert means < 0.08 and props < alpha  # Fisher is conservative
    # and a real change is caught most of the time
    power = sum(compare_means([rng.gauss(6.5, 1.5) for _ in range(8)],
                              [rng.gauss(4.4, 1.5) for _ in range(8)], alpha).significant
                for _ in range(500)) / 500
    assert power > 0.7
