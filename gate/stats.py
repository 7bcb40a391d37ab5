"""Baseline comparisons that respect noise: agent runs are stochastic, so a change counts as a
regression only when it is significant at the policy's level, beyond the allowed margin.

Means (a metric per run, findings per run) use Welch's t-test; proportions (share of runs with
a failure mode) use Fisher's exact test, with the Newcombe hybrid score interval for the
difference. Every comparison is oriented so that a positive effect means *worse*, whichever
way the metric points, and reports its interval at the matching one-sided level.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


def _scipy() -> Any:
    # Imported on first use: scipy.stats costs seconds to import, and pytest workers that only
    # trace (never judge) should not pay it.
    from scipy import stats

    return stats


FISHER = "fisher-exact"


@dataclass(frozen=True)
class Comparison:
    """Current against baseline. ``effect`` > 0 means current is worse, in the metric's units."""

    test: str
    current: float
    baseline: float
    effect: float
    low: float  # the interval of ``effect`` at confidence 1 - 2*alpha (one-sided alpha per bound)
    high: float
    margin: float  # how much worse is tolerated before it is a regression
    p_value: float | None
    significant: bool  # worse by more than ``margin``, significant at alpha
    n_current: int
    n_baseline: int

    def __post_init__(self) -> None:
        for name in ("effect", "low", "high"):  # -0.0 would print as "-0": worse, seemingly
            object.__setattr__(self, name, getattr(self, name) + 0.0)

    @property
    def decides_by_interval(self) -> bool:
        """Whether the interval decides (Welch, Newcombe); Fisher's test decides by its p-value,
        and an interval beside it could clear the margin while the test does not."""
        return self.test != FISHER

    def describe(self) -> str:
        interval = f" [{self.low:+.3g}, {self.high:+.3g}]" if self.decides_by_interval else ""
        p = f", p={self.p_value:.3g}" if self.p_value is not None else ""
        return (f"{self.effect:+.3g} worse{interval}{p} "
                f"({self.test}, n={self.n_current} vs {self.n_baseline})")


def compare_means(current: Sequence[float], baseline: Sequence[float], alpha: float,
                  margin: float = 0.0, higher_is_worse: bool = True) -> Comparison:
    """Welch's t-test of H0: worsening <= margin, on per-run values (each side needs 2+)."""
    if len(current) < 2 or len(baseline) < 2:
        raise ValueError("Welch's test needs at least two values on each side")
    sign = 1.0 if higher_is_worse else -1.0
    mc, mb = mean(current), mean(baseline)
    effect = sign * (mc - mb)
    vc, vb = _var(current), _var(baseline)
    se2 = vc / len(current) + vb / len(baseline)
    if se2 <= 0.0:
        # Both sides constant: the difference is exact, not an estimate.
        return Comparison("welch-t", mc, mb, effect, effect, effect, margin,
                          0.0 if effect > margin else 1.0, effect > margin, len(current), len(baseline))
    se = math.sqrt(se2)
    df = se2 ** 2 / ((vc / len(current)) ** 2 / (len(current) - 1)
                     + (vb / len(baseline)) ** 2 / (len(baseline) - 1))
    t = (effect - margin) / se
    p = float(_scipy().t.sf(t, df))
    q = float(_scipy().t.ppf(1.0 - alpha, df))
    return Comparison("welch-t", mc, mb, effect, effect - q * se, effect + q * se, margin,
                      p, p < alpha, len(current), len(baseline))


def compare_proportions(x_current: int, n_current: int, x_baseline: int, n_baseline: int,
                        alpha: float, margin: float = 0.0) -> Comparison:
    """Share of runs showing a failure: is current's share higher by more than ``margin``?

    With no margin, Fisher's exact one-sided test decides (exact for the small counts CI
    suites produce); with a margin, the Newcombe interval's lower bound must exceed it.
    """
    if n_current < 1 or n_baseline < 1:
        raise ValueError("a proportion needs at least one run on each side")
    pc, pb = x_current / n_current, x_baseline / n_baseline
    effect = pc - pb
    z = float(_scipy().norm.ppf(1.0 - alpha))
    lc, uc = wilson_interval(x_current, n_current, z)
    lb, ub = wilson_interval(x_baseline, n_baseline, z)
    low = effect - math.sqrt((pc - lc) ** 2 + (ub - pb) ** 2)
    high = effect + math.sqrt((uc - pc) ** 2 + (pb - lb) ** 2)
    if margin <= 0.0:
        table = [[x_current, n_current - x_current], [x_baseline, n_baseline - x_baseline]]
        p = float(_scipy().fisher_exact(table, alternative="greater").pvalue)
        return Comparison(FISHER, pc, pb, effect, low, high, 0.0, p, p < alpha,
                          n_current, n_baseline)
    return Comparison("newcombe", pc, pb, effect, low, high, margin, None, low > margin,
                      n_current, n_baseline)


def wilson_interval(x: int, n: int, z: float) -> tuple[float, float]:
    """Wilson's score interval for a proportion x/n (sound at 0 and n, unlike Wald's)."""
    p = x / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def mean_interval(values: Sequence[float], alpha: float) -> tuple[float, float]:
    """Student's t interval of a mean at confidence 1 - 2*alpha (the point itself for n < 2)."""
    m = mean(values)
    if len(values) < 2:
        return m, m
    half = float(_scipy().t.ppf(1.0 - alpha, len(values) - 1)) * math.sqrt(_var(values) / len(values))
    return m - half, m + half


def mean(values: Sequence[float]) -> float:
    """The arithmetic mean, summed exactly (fsum) so long runs of rates do not drift."""
    return math.fsum(values) / len(values)


def _var(values: Sequence[float]) -> float:
    m = mean(values)
    return math.fsum((v - m) ** 2 for v in values) / (len(values) - 1)
