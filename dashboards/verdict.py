"""The compare page's verdict on a difference, reached the way the CI gate reaches it.

B is the candidate and A the baseline. Per-run figures go through the gate's Welch test
(``handoffs.gate.stats.compare_means``), shares of runs showing a failure mode through its
Fisher exact test (``compare_proportions``), at the gate's default significance and with its
default minimum of runs a side, so the dashboard and ``handoffs gate`` never disagree on
whether a change is a regression.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from handoffs.gate import stats
from handoffs.gate.policy import Policy

ALPHA: Final[float] = Policy.significance  # the gate's default significance level
MIN_RUNS: Final[int] = Policy.min_runs  # below this many runs a side the gate does not decide


@dataclass(frozen=True)
class Difference:
    """One figure compared: A's and B's value, how much worse B is, and the verdict."""

    figure: str
    a: float | None
    b: float | None
    worse_by: float | None  # > 0: B is worse, in the figure's units
    low: float | None
    high: float | None
    p_value: float | None
    n_a: int
    n_b: int
    verdict: str  # regression | no regression | too few runs
    test: str


def _clean(values: Sequence[float]) -> list[float]:
    return [float(v) for v in values if v is not None and not math.isnan(v)]


def _from(figure: str, cmp: stats.Comparison) -> Difference:
    return Difference(figure, cmp.baseline, cmp.current, cmp.effect, cmp.low, cmp.high,
                      cmp.p_value, cmp.n_baseline, cmp.n_current,
                      "regression" if cmp.significant else "no regression", cmp.test)


def compare_figure(figure: str, a: Sequence[float], b: Sequence[float],
                   higher_is_worse: bool = True, alpha: float = ALPHA,
                   min_runs: int = MIN_RUNS) -> Difference:
    """Per-run values of A and B: is B's mean significantly worse (Welch, one-sided)?"""
    xa, xb = _clean(a), _clean(b)
    if len(xa) < max(min_runs, 2) or len(xb) < max(min_runs, 2):
        ma = stats.mean(xa) if xa else None
        mb = stats.mean(xb) if xb else None
        sign = 1.0 if higher_is_worse else -1.0
        worse = sign * (mb - ma) if ma is not None and mb is not None else None
        return Difference(figure, ma, mb, worse, None, None, None, len(xa), len(xb),
                          "too few runs", "welch-t")
    return _from(figure, stats.compare_means(xb, xa, alpha, higher_is_worse=higher_is_worse))


def compare_share(figure: str, hits_a: int, runs_a: int, hits_b: int, runs_b: int,
                  alpha: float = ALPHA, min_runs: int = MIN_RUNS) -> Difference:
    """Share of runs with a failure mode: is B's share significantly higher (Fisher)?"""
    if runs_a < max(min_runs, 1) or runs_b < max(min_runs, 1):
        # With one run a side no share can differ significantly: a verdict would always be green.
        a = hits_a / runs_a if runs_a else None
        b = hits_b / runs_b if runs_b else None
        worse = b - a if a is not None and b is not None else None
        return Difference(figure, a, b, worse, None, None, None, runs_a, runs_b,
                          "too few runs", "fisher-exact")
    return _from(figure, stats.compare_proportions(hits_b, runs_b, hits_a, runs_a, alpha))
