"""Uncertainty for the results: intervals over runs, paired differences over seeds, paired per-example tests, the
Holm adjustment of a family of tests, and the pieces of the claims table's rule (ceiling, grid edge).

All intervals are two-sided 95 % unless told otherwise. Accuracies may be fractions or percent: nothing here
rescales; `bounds` says what range a quantity can take.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# scipy.special, not scipy.stats: the same functions (tests/unit/test_stats.py pins them equal) for a quarter of the
# import (~1 CPU-s less in every aggregate stage)
from scipy import special

CONF = 0.95
ALPHA = 0.05  # the family-wise error rate the Holm adjustment holds
HOLDS, FAILS, INCONCLUSIVE, NOT_TESTABLE = "holds", "does not hold", "inconclusive", "not testable here"


def _finite(values) -> np.ndarray:
    v = np.asarray([float(x) for x in values if x is not None], dtype=float)
    return v[np.isfinite(v)]


@dataclass(frozen=True)
class Interval:
    estimate: float
    low: float
    high: float
    n: int
    method: str

    def text(self, fmt: str = "{:+.2f}") -> str:
        if not math.isfinite(self.estimate):
            return "—"
        if not (math.isfinite(self.low) and math.isfinite(self.high)):
            return f"{fmt.format(self.estimate)} (n={self.n}, no interval)"
        return f"{fmt.format(self.estimate)} [{fmt.format(self.low)}, {fmt.format(self.high)}] ({self.method}, n={self.n})"


def clip(interval: Interval, bounds: tuple[float, float] | None) -> Interval:
    """The interval cut to the range its quantity can take (an accuracy in [0, 100], a difference of two in
    [-100, 100]): the t interval is symmetric and would otherwise claim values no run can have."""
    if bounds is None:
        return interval
    lo, hi = bounds
    if lo > hi:
        raise ValueError(f"bounds must be (low, high) with low <= high, got {bounds}")
    low = interval.low if math.isnan(interval.low) else min(max(interval.low, lo), hi)
    high = interval.high if math.isnan(interval.high) else min(max(interval.high, lo), hi)
    return Interval(interval.estimate, low, high, interval.n, interval.method)


def t_interval(values, conf: float = CONF, bounds: tuple[float, float] | None = None) -> Interval:
    """Student-t interval of the mean, cut to `bounds` when given; NaN bounds for n < 2 (one run says nothing
    about its spread)."""
    v = _finite(values)
    if v.size == 0:
        return Interval(math.nan, math.nan, math.nan, 0, "t")
    mean = float(v.mean())
    if v.size < 2:
        return Interval(mean, math.nan, math.nan, 1, "t")
    half = float(special.stdtrit(v.size - 1, 0.5 + conf / 2) * v.std(ddof=1) / math.sqrt(v.size))
    return clip(Interval(mean, mean - half, mean + half, int(v.size), "t"), bounds)


def t_pvalue(values, null: float = 0.0) -> float:
    """Two-sided one-sample t test of mean = `null`. Identical values (no spread) give 0 when they differ from
    the null and 1 when they equal it: the limit of the t test, where the t interval is the point itself.
    NaN for n < 2."""
    v = _finite(values)
    if v.size < 2:
        return math.nan
    sd = float(v.std(ddof=1))
    if sd == 0.0:
        return 1.0 if math.isclose(float(v.mean()), null, abs_tol=1e-12) else 0.0
    t = (float(v.mean()) - null) / (sd / math.sqrt(v.size))
    return float(2 * special.stdtr(v.size - 1, -abs(t)))


def holm(pvalues: list[float], alpha: float = ALPHA) -> tuple[list[float], list[float]]:
    """Holm's step-down adjustment of a family of p-values (NaN entries are outside the family).

    Returns (adjusted p-values, confidence level per entry). Adjusted p: max over the steps up to its rank of
    (m - step + 1) * p, capped at 1; a hypothesis is rejected when it is < alpha. Level: 1 - alpha / (m - k + 1)
    at rank k (1 = smallest p); entries at or after the first step Holm does not reject take that step's level, so
    an entry's interval at its level excludes the null exactly when Holm rejects it."""
    idx = [i for i, p in enumerate(pvalues) if p is not None and math.isfinite(p)]
    m = len(idx)
    adjusted = [math.nan] * len(pvalues)
    levels = [math.nan] * len(pvalues)
    running, stopped_at = 0.0, None
    for k, i in enumerate(sorted(idx, key=lambda j: (pvalues[j], j)), start=1):
        running = max(running, min(1.0, (m - k + 1) * pvalues[i]))
        adjusted[i] = running
        if stopped_at is None and pvalues[i] >= alpha / (m - k + 1):
            stopped_at = k
        levels[i] = 1 - alpha / (m - (stopped_at or k) + 1)
    return adjusted, levels


def paired_values(a: dict, b: dict) -> list[float]:
    """a[s] − b[s] for every pairing key s (seed) both have a finite value for, in key order."""
    common = sorted(set(a) & set(b), key=str)
    return [float(a[s]) - float(b[s]) for s in common
            if a[s] is not None and b[s] is not None and math.isfinite(a[s]) and math.isfinite(b[s])]


def saturated(values, ceiling: float = 99.0) -> bool:
    """Every accuracy (percent) at or above `ceiling`: the methods have at most 100 - ceiling points to differ by,
    fewer than a test set of this size resolves between seeds."""
    v = _finite(values)
    return bool(v.size) and bool((v >= ceiling).all())


def grid_edge(selected: float, grid) -> str | None:
    """'lower' / 'upper' when `selected` is the smallest / largest value of a grid of >= 2 values (the optimum
    may lie beyond it), else None."""
    g = _finite(grid)
    if g.size < 2 or not math.isfinite(float(selected)):
        return None
    if math.isclose(float(selected), float(g.min()), rel_tol=1e-9):
        return "lower"
    if math.isclose(float(selected), float(g.max()), rel_tol=1e-9):
        return "upper"
    return None


@dataclass(frozen=True)
class McNemar:
    n: int
    only_a: int  # examples model a gets right and b wrong
    only_b: int
    p_value: float  # exact two-sided (binomial on the discordant pairs)
    diff: Interval  # accuracy(a) − accuracy(b) as a fraction, Wald interval for paired proportions


def binom_two_sided_half(x: int, n: int) -> float:
    """The exact two-sided binomial test's p-value of x successes in n trials at p = 1/2 (scipy.stats.binomtest's):
    the distribution is symmetric, so it is twice the smaller tail, at most 1."""
    return 1.0 if n == 0 else min(1.0, float(2 * special.bdtr(min(x, n - x), n, 0.5)))


def mcnemar(a_correct, b_correct, conf: float = CONF) -> McNemar:
    """Exact McNemar test of two models' per-example outcomes on the same examples."""
    a = np.asarray(a_correct, dtype=bool)
    b = np.asarray(b_correct, dtype=bool)
    if a.shape != b.shape or a.ndim != 1 or a.size == 0:
        raise ValueError(f"mcnemar: need two equal-length 1-D outcome vectors, got shapes {a.shape} and {b.shape}")
    n, n10, n01 = int(a.size), int((a & ~b).sum()), int((~a & b).sum())
    k = n10 + n01
    p = binom_two_sided_half(n10, k)
    d = (n10 - n01) / n
    se = math.sqrt(max(k - (n10 - n01) ** 2 / n, 0.0)) / n
    z = float(special.ndtri(0.5 + conf / 2))
    return McNemar(n, n10, n01, p, Interval(d, d - z * se, d + z * se, n, "paired Wald"))


def verdict(interval: Interval, favourable: str, margin: float = 0.0) -> str:
    """The claims table's rule: `holds` when the whole interval lies on the claimed side of `margin`
    (favourable 'above' or 'below'), `does not hold` when it lies wholly on the other side, else `inconclusive`
    (also when there is no interval)."""
    if favourable not in ("above", "below"):
        raise ValueError(f"favourable must be 'above' or 'below', got {favourable!r}")
    lo, hi = interval.low, interval.high
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return INCONCLUSIVE
    above, below = lo > margin, hi < margin
    if favourable == "below":
        above, below = below, above
    return HOLDS if above else FAILS if below else INCONCLUSIVE
