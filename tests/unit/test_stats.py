"""pipeline.report.stats on inputs with known answers."""

import math

import numpy as np
import pytest

from pipeline.report.stats import (
    FAILS,
    HOLDS,
    INCONCLUSIVE,
    Interval,
    mcnemar,
    paired_values,
    t_interval,
    verdict,
)


def test_t_interval_of_known_sample():
    ci = t_interval([1, 2, 3, 4, 5])
    # mean 3, s = sqrt(2.5), t(0.975, 4) = 2.776445
    half = 2.776445 * math.sqrt(2.5) / math.sqrt(5)
    assert (ci.estimate, ci.n) == (3.0, 5)
    assert ci.low == pytest.approx(3 - half, abs=1e-5) and ci.high == pytest.approx(3 + half, abs=1e-5)


def test_t_interval_of_one_run_has_no_bounds_and_ignores_missing_values():
    ci = t_interval([0.7, None, float("nan")])
    assert ci.estimate == 0.7 and ci.n == 1 and math.isnan(ci.low) and math.isnan(ci.high)
    assert "no interval" in ci.text()


def test_paired_values_pair_by_seed():
    fixed = {0: 10.0, 1: 12.0, 2: 11.0, 3: 99.0, 4: 1.0}
    awd = {0: 8.0, 1: 9.0, 2: 9.0, 4: float("nan")}  # seed 3 has no partner, seed 4 no finite value
    assert paired_values(awd, fixed) == [-2.0, -3.0, -2.0]


def test_mcnemar_on_a_known_contingency_table():
    # 100 examples: 50 both right, 9 only a right, 1 only b right, 40 both wrong
    a = np.array([1] * 50 + [1] * 9 + [0] * 1 + [0] * 40, dtype=bool)
    b = np.array([1] * 50 + [0] * 9 + [1] * 1 + [0] * 40, dtype=bool)
    r = mcnemar(a, b)
    assert (r.n, r.only_a, r.only_b) == (100, 9, 1)
    assert r.p_value == pytest.approx(2 * 11 / 1024)  # exact: 2·P(X ≤ 1), X ~ Bin(10, 1/2)
    assert r.diff.estimate == pytest.approx(0.08)
    se = math.sqrt(10 - 64 / 100) / 100
    assert r.diff.low == pytest.approx(0.08 - 1.959964 * se, abs=1e-6)
    assert r.diff.high == pytest.approx(0.08 + 1.959964 * se, abs=1e-6)
    assert mcnemar(a, a).p_value == 1.0
    with pytest.raises(ValueError, match="equal-length"):
        mcnemar(a, b[:-1])


def test_verdict_rule():
    iv = lambda lo, hi: Interval((lo + hi) / 2, lo, hi, 3, "t")  # noqa: E731
    assert verdict(iv(0.5, 2.0), "above") == HOLDS
    assert verdict(iv(-2.0, -0.5), "above") == FAILS
    assert verdict(iv(-0.5, 2.0), "above") == INCONCLUSIVE
    assert verdict(iv(-2.0, -0.5), "below") == HOLDS
    assert verdict(iv(-0.5, 0.5), "above", margin=-1.0) == HOLDS  # "similar": not worse than 1 point
    assert verdict(Interval(1.0, math.nan, math.nan, 1, "t"), "above") == INCONCLUSIVE
    with pytest.raises(ValueError, match="favourable"):
        verdict(iv(0, 1), "up")


@pytest.mark.parametrize("df", [1, 2, 4, 9, 29])
def test_t_functions_are_scipy_stats_t(df):
    from scipy import stats as sps

    from pipeline.report.stats import t_pvalue

    for conf in (0.9, 0.95, 0.9875, 0.995):
        v = np.array([1.0, 2.5, 0.5, 3.0, 1.5, 2.0] * 5)[: df + 1]
        half = t_interval(v, conf).high - float(v.mean())
        assert half == pytest.approx(sps.t.ppf(0.5 + conf / 2, df) * v.std(ddof=1) / math.sqrt(v.size), rel=1e-12)
    for null in (-1.0, 0.0, 1.7):
        t = (float(v.mean()) - null) / (v.std(ddof=1) / math.sqrt(v.size))
        assert t_pvalue(v, null) == pytest.approx(2 * sps.t.sf(abs(t), df), rel=1e-10, abs=1e-300)


def test_the_binomial_p_value_is_scipy_binomtests():
    from scipy import stats as sps

    from pipeline.report.stats import binom_two_sided_half

    for n in (1, 2, 7, 20, 61, 540):
        for x in sorted({0, 1, n // 3, n // 2, (n + 1) // 2, n - 1, n}):
            assert binom_two_sided_half(x, n) == pytest.approx(sps.binomtest(x, n, 0.5).pvalue, rel=1e-9), (x, n)
