"""Uncertainty for the results: intervals over runs, paired differences over seeds, paired per-example tests, and
the verdict rule of the claims table.

All intervals are two-sided 95 % unless told otherwise. Accuracies may be fractions or percent: nothing here
rescales.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

CONF = 0.95
HOLDS, FAILS, INCONCLUSIVE = "holds", "does not hold", "inconclusive"


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

    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0

    def text(self, fmt: str = "{:+.2f}") -> str:
        if not math.isfinite(self.estimate):
            return "—"
        if not (math.isfinite(self.low) and math.isfinite(self.high)):
            return f"{fmt.format(self.estimate)} (n={self.n}, no interval)"
        return f"{fmt.format(self.estimate)} [{fmt.format(self.low)}, {fmt.format(self.high)}] ({self.method}, n={self.n})"


def t_interval(values, conf: float = CONF) -> Interval:
    """Student-t interval of the mean; NaN bounds for n < 2 (one run says nothing about its spread)."""
    v = _finite(values)
    if v.size == 0:
        return Interval(math.nan, math.nan, math.nan, 0, "t")
    mean = float(v.mean())
    if v.size < 2:
        return Interval(mean, math.nan, math.nan, 1, "t")
    half = float(sps.t.ppf(0.5 + conf / 2, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size))
    return Interval(mean, mean - half, mean + half, int(v.size), "t")


def bootstrap_interval(values, conf: float = CONF, n_boot: int = 10_000, seed: int = 0) -> Interval:
    """Percentile bootstrap interval of the mean (seeded, so the same values give the same interval)."""
    v = _finite(values)
    if v.size < 2:
        return Interval(float(v.mean()) if v.size else math.nan, math.nan, math.nan, int(v.size), "bootstrap")
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, v.size, size=(n_boot, v.size))].mean(axis=1)
    lo, hi = np.quantile(means, [0.5 - conf / 2, 0.5 + conf / 2])
    return Interval(float(v.mean()), float(lo), float(hi), int(v.size), "bootstrap")


def paired_difference(a: dict, b: dict, conf: float = CONF) -> Interval:
    """t interval of a[s] − b[s] over the pairing keys s (seeds) both have."""
    common = sorted(set(a) & set(b), key=str)
    return t_interval([a[s] - b[s] for s in common if a[s] is not None and b[s] is not None], conf)


@dataclass(frozen=True)
class McNemar:
    n: int
    only_a: int  # examples model a gets right and b wrong
    only_b: int
    p_value: float  # exact two-sided (binomial on the discordant pairs)
    diff: Interval  # accuracy(a) − accuracy(b) as a fraction, Wald interval for paired proportions


def mcnemar(a_correct, b_correct, conf: float = CONF) -> McNemar:
    """Exact McNemar test of two models' per-example outcomes on the same examples."""
    a = np.asarray(a_correct, dtype=bool)
    b = np.asarray(b_correct, dtype=bool)
    if a.shape != b.shape or a.ndim != 1 or a.size == 0:
        raise ValueError(f"mcnemar: need two equal-length 1-D outcome vectors, got shapes {a.shape} and {b.shape}")
    n, n10, n01 = int(a.size), int((a & ~b).sum()), int((~a & b).sum())
    k = n10 + n01
    p = 1.0 if k == 0 else float(sps.binomtest(n10, k, 0.5).pvalue)
    d = (n10 - n01) / n
    se = math.sqrt(max(k - (n10 - n01) ** 2 / n, 0.0)) / n
    z = float(sps.norm.ppf(0.5 + conf / 2))
    return McNemar(n, n10, n01, p, Interval(d, d - z * se, d + z * se, n, "paired Wald"))


def two_proportions(k_a: int, n_a: int, k_b: int, n_b: int, conf: float = CONF) -> Interval:
    """k_a/n_a − k_b/n_b with a Newcombe (Wilson score) interval, for unpaired proportions."""
    if min(n_a, n_b) <= 0:
        return Interval(math.nan, math.nan, math.nan, 0, "Newcombe")
    z = float(sps.norm.ppf(0.5 + conf / 2))

    def wilson(k, n):
        p = k / n
        centre = (p + z * z / (2 * n)) / (1 + z * z / n)
        half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
        return centre - half, centre + half

    pa, pb = k_a / n_a, k_b / n_b
    (la, ua), (lb, ub) = wilson(k_a, n_a), wilson(k_b, n_b)
    d = pa - pb
    low = d - math.sqrt((pa - la) ** 2 + (ub - pb) ** 2)
    high = d + math.sqrt((ua - pa) ** 2 + (pb - lb) ** 2)
    return Interval(d, low, high, n_a + n_b, "Newcombe")


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


def combine(*verdicts: str) -> str:
    """A claim with several parts holds when every part holds and fails when any part fails."""
    if any(v == FAILS for v in verdicts):
        return FAILS
    return HOLDS if verdicts and all(v == HOLDS for v in verdicts) else INCONCLUSIVE
