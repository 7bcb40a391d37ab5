"""The compare page's verdict on a difference: B minus A with a bootstrap interval.

The unit resampled is the run (per-run figures from ``queries.side_samples``), so two
commits with several runs each get an honest interval; with one run per side there is no
spread to resample and the verdict says so instead of pretending.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np

BOOTSTRAP_SAMPLES: Final = 2000
LEVEL: Final = 0.95
MIN_SAMPLES: Final = 2  # per side, for an interval


@dataclass(frozen=True)
class Difference:
    """One figure compared: means of both sides, B - A, its interval, and what it means."""

    figure: str
    a: float | None
    b: float | None
    diff: float | None
    low: float | None
    high: float | None
    n_a: int
    n_b: int
    verdict: str  # worse | better | no clear difference | too few runs


def bootstrap_difference(figure: str, a: Sequence[float], b: Sequence[float],
                         higher_is_worse: bool = True, samples: int = BOOTSTRAP_SAMPLES,
                         level: float = LEVEL, seed: int = 0) -> Difference:
    """Difference of means B - A with a percentile bootstrap interval (runs resampled).

    ``worse`` when the whole interval lies on the harmful side of zero, ``better`` when on
    the other, else ``no clear difference``. NaN values (a figure a run does not have) are
    dropped first.
    """
    xa = np.asarray([v for v in a if v is not None and not np.isnan(v)], dtype=float)
    xb = np.asarray([v for v in b if v is not None and not np.isnan(v)], dtype=float)
    mean_a = float(xa.mean()) if xa.size else None
    mean_b = float(xb.mean()) if xb.size else None
    diff = mean_b - mean_a if mean_a is not None and mean_b is not None else None
    if xa.size < MIN_SAMPLES or xb.size < MIN_SAMPLES:
        return Difference(figure, mean_a, mean_b, diff, None, None, int(xa.size), int(xb.size),
                          "too few runs")
    rng = np.random.default_rng(seed)
    boot_a = xa[rng.integers(0, xa.size, (samples, xa.size))].mean(axis=1)
    boot_b = xb[rng.integers(0, xb.size, (samples, xb.size))].mean(axis=1)
    tail = (1 - level) / 2 * 100
    low, high = (float(x) for x in np.percentile(boot_b - boot_a, [tail, 100 - tail]))
    if low > 0 or high < 0:
        harmful = (low > 0) == higher_is_worse
        verdict = "worse" if harmful else "better"
    else:
        verdict = "no clear difference"
    return Difference(figure, mean_a, mean_b, diff, low, high, int(xa.size), int(xb.size), verdict)
