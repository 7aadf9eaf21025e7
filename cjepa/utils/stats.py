"""Mean and confidence interval of a handful of success rates (seeds of a planning evaluation), the pooled
Wilson interval, and the difference between two groups of rates (Welch).

Success rates are reported over few seeds (3 evaluation seeds; later training seeds x evaluation seeds), so
the interval uses Student's t with n - 1 degrees of freedom, not the normal quantile: with 3 rates the normal
interval is 2.2x too narrow. The rates are treated as independent draws (one per seed); a pooled interval
over episodes would ignore the seed-to-seed spread that the seeds are there to show.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Optional, Sequence


@dataclass(frozen=True)
class MeanCI:
    mean: float
    half_width: Optional[float]  # None with a single rate: no spread to estimate
    n: int
    confidence: float

    @property
    def low(self) -> Optional[float]:
        return None if self.half_width is None else self.mean - self.half_width

    @property
    def high(self) -> Optional[float]:
        return None if self.half_width is None else self.mean + self.half_width

    def text(self, digits: int = 1) -> str:
        """'50.0 +- 24.8' (or '50.0 (n=1, no interval)')."""
        if self.half_width is None:
            return f"{self.mean:.{digits}f} (n=1, no interval)"
        return f"{self.mean:.{digits}f} +- {self.half_width:.{digits}f}"


def mean_ci(values: Sequence[float], confidence: float = 0.95) -> MeanCI:
    """Mean of ``values`` and the half-width of its two-sided t-interval at ``confidence``."""
    from scipy.stats import t

    vals = [float(v) for v in values]
    if not vals:
        raise ValueError("mean_ci needs at least one value")
    if not all(math.isfinite(v) for v in vals):
        raise ValueError(f"mean_ci needs finite values, got {vals}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    n = len(vals)
    mean = statistics.fmean(vals)
    if n == 1:
        return MeanCI(mean, None, 1, confidence)
    sem = statistics.stdev(vals) / math.sqrt(n)
    return MeanCI(mean, float(t.ppf(0.5 + confidence / 2, n - 1)) * sem, n, confidence)


def wilson_interval(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    """(low, high) of the Wilson score interval of ``successes`` in ``trials``, as fractions.

    For episodes pooled over seeds: unlike the normal interval it stays inside [0, 1] and keeps its coverage
    at small counts and rates near 0 or 1. It assumes every episode is an independent draw, so it does not
    show seed-to-seed spread (``mean_ci`` over per-seed rates does)."""
    from scipy.stats import binomtest

    if trials < 1 or not 0 <= successes <= trials:
        raise ValueError(f"wilson_interval needs 0 <= successes <= trials and trials >= 1, got {successes}/{trials}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    ci = binomtest(successes, trials).proportion_ci(confidence_level=confidence, method="wilson")
    return float(ci.low), float(ci.high)


@dataclass(frozen=True)
class Difference:
    """mean(a) - mean(b) with its two-sided interval and p-value."""

    difference: float
    low: float
    high: float
    p_value: float
    confidence: float


def welch_difference(a: Sequence[float], b: Sequence[float], confidence: float = 0.95) -> Difference:
    """Difference of the means of two groups of rates (e.g. training seeds of two recipes), with Welch's
    t-interval: unequal variances, Welch-Satterthwaite degrees of freedom. Each group needs two or more rates
    and the two together some spread."""
    from scipy.stats import ttest_ind

    x, y = [float(v) for v in a], [float(v) for v in b]
    if len(x) < 2 or len(y) < 2:
        raise ValueError(f"welch_difference needs two or more rates per group, got {len(x)} and {len(y)}")
    if not all(math.isfinite(v) for v in x + y):
        raise ValueError(f"welch_difference needs finite values, got {x} and {y}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if statistics.pvariance(x) == 0.0 and statistics.pvariance(y) == 0.0:
        raise ValueError(f"welch_difference: no spread in either group ({x}, {y}), so no interval")
    test = ttest_ind(x, y, equal_var=False)
    ci = test.confidence_interval(confidence)
    return Difference(statistics.fmean(x) - statistics.fmean(y), float(ci.low), float(ci.high), float(test.pvalue),
                      confidence)
