"""A claim row and the one rule that decides every row of the claims table (`decide`).

A builder (claims_natural, claims_adversarial, claims_search) states, before any number is looked at, what is
compared (per-seed values of two arms, or a per-seed statistic), on which side of what margin the paper's claim lies,
and how the compared runs were selected (validation metrics only). `decide` then gives each row one of four verdicts:

- *not testable here* when the builder found the runs it needs absent (its reason), when fewer than 2 seeds pair up
  (no seed-paired interval), or when every compared accuracy of both methods is >= 99 % and the unadjusted test
  finds no difference (a ceiling: the methods have < 1 point to differ by);
- otherwise the row joins the family: a two-sided t test of the per-seed differences against the margin, Holm's
  adjustment across the family, and the interval at the row's Holm level (stats.holm); the claim *holds* when that
  interval lies wholly on the claimed side of the margin, *does not hold* when wholly on the other, else
  *inconclusive*.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pandas as pd

from pipeline.report import stats
from pipeline.report.tables import col

CEILING = 99.0  # percent: both methods at or above it leave < 1 point for an effect
ACC_DIFF_BOUNDS = (-100.0, 100.0)  # a difference of two accuracies in percent


@dataclass
class Claim:
    id: str  # metrics key (claims.<id>.<dataset>)
    claim: str  # the paper's claim, with its table or figure
    dataset: str  # the study's label (a metrics key level)
    scale: str  # model, epochs, test size: shown beside the dataset
    measure: str  # what one per-seed value is, with its unit
    rule: str  # how the compared runs were selected and which side the claim is on
    favourable: str  # 'above' | 'below': the claimed side of `margin`
    margin: float = 0.0
    arms: tuple[str, str] = ("awd", "fixed")  # a − b; b empty: `a` holds the per-seed statistic itself
    a: dict = field(default_factory=dict)  # seed -> value
    b: dict = field(default_factory=dict)
    bounds: tuple[float, float] | None = None
    ceiling: list = field(default_factory=list)  # accuracies (%) whose all being >= CEILING makes it untestable
    reason: str | None = None  # set by the builder: why the data cannot test it
    zero_fails: bool = False  # the claim is that a non-negative statistic is > 0: all zeros is a clear 'no'
    notes: list[str] = field(default_factory=list)  # grid edges, supporting per-example evidence
    extra: dict = field(default_factory=dict)
    interval: stats.Interval | None = None
    p_value: float = math.nan
    p_holm: float = math.nan
    level: float = math.nan
    verdict: str = stats.INCONCLUSIVE

    def diffs(self) -> list[float]:
        if not self.b:
            return [float(v) for _, v in sorted(self.a.items(), key=lambda kv: str(kv[0])) if math.isfinite(v)]
        return stats.paired_values(self.a, self.b)

    def metrics(self) -> dict:
        out: dict = {"verdict": self.verdict}
        iv = self.interval
        if iv is not None and math.isfinite(iv.estimate):
            out.update(estimate=_r(iv.estimate), n=iv.n)
            if math.isfinite(iv.low):
                out.update(ci=[_r(iv.low), _r(iv.high)], level=_r(self.level), method="seed-paired t")
        if math.isfinite(self.p_value):
            out.update(p_value=_r(self.p_value), p_holm=_r(self.p_holm))
        if self.reason:
            out["reason"] = self.reason
        out.update(claimed=self.favourable, margin=_r(self.margin), arm_a=self.arms[0], arm_b=self.arms[1],
                   per_seed={"a": {f"seed{s}": _r(v) for s, v in sorted(self.a.items())},
                             "b": {f"seed{s}": _r(v) for s, v in sorted(self.b.items())}})
        if self.ceiling:
            out["ceiling_min"] = _r(min(self.ceiling))
        if self.zero_fails:
            out["zero_fails"] = True
        out.update(self.extra)
        return out


def _r(x):
    return None if x is None or not math.isfinite(float(x)) else float(f"{float(x):.6g}")


def decide(claims: list[Claim]) -> dict:
    """Give every claim its verdict (module docstring); returns the family: its size and adjustment."""
    family = []
    for c in claims:
        if c.favourable not in ("above", "below"):
            raise ValueError(f"claim {c.id}: favourable must be 'above' or 'below', got {c.favourable!r}")
        d = c.diffs()
        c.interval = stats.t_interval(d, bounds=c.bounds)
        c.p_value = c.p_holm = c.level = math.nan
        if c.reason:
            c.verdict = stats.NOT_TESTABLE
            continue
        if len(d) < 2:
            c.verdict = stats.NOT_TESTABLE
            c.reason = (f"{len(d)} seed pair{'s' if len(d) != 1 else ''} of the compared runs; a seed-paired "
                        "interval needs >= 2 (more seeds: the study's `seeds:`, the adversarial sweep's `best_seeds:`)")
            if stats.saturated(c.ceiling, CEILING):
                c.reason += f"; and both methods are at >= {CEILING:g} % (ceiling)"
            continue
        if c.zero_fails and all(x == 0 for x in d):
            c.verdict = stats.FAILS
            continue
        p = stats.t_pvalue(d, c.margin)
        if stats.saturated(c.ceiling, CEILING) and not p < stats.ALPHA:
            c.verdict = stats.NOT_TESTABLE
            c.reason = (f"every compared accuracy of both methods is >= {CEILING:g} % (lowest "
                        f"{min(c.ceiling):.2f} %) and the unadjusted test finds no difference (ceiling)")
            continue
        c.p_value = p
        family.append(c)
    adjusted, levels = stats.holm([c.p_value for c in family])
    for c, p_adj, level in zip(family, adjusted, levels):
        c.p_holm, c.level = p_adj, level
        c.interval = stats.t_interval(c.diffs(), level, c.bounds)
        c.verdict = stats.verdict(c.interval, c.favourable, c.margin)
    return {"size": len(family), "adjustment": "holm", "alpha": stats.ALPHA}


def by_seed(df: pd.DataFrame, metric: str) -> dict:
    vals = col(df, metric)
    return {int(s): float(v) for s, v in zip(df["seed"], vals) if s is not None and math.isfinite(v)}


def baselines(df: pd.DataFrame) -> list[str]:
    """What AWD is compared with: fixed λ_wd first (the paper's claims), then every other method of the runs."""
    from pipeline.report.tables import methods

    return ["fixed"] + ([m for m in methods(df) if m not in ("fixed", "awd")] if len(df) else [])


def claim_id(base: str, baseline: str) -> str:
    return base if baseline == "fixed" else f"{base}_vs_{baseline}"


def claim_text(text: str, baseline: str) -> str:
    """The paper's claim against fixed λ_wd; against another baseline it names it ("AWD vs sgdw: ...")."""
    return text if baseline == "fixed" else text.replace("AWD:", f"AWD vs {baseline}:", 1)


def scale(df: pd.DataFrame) -> str:
    """The compared runs' scale: model, epochs and test-set size (several values joined)."""
    parts = []
    for column, fmt in (("model", "{}"), ("epochs", "{:g} ep"), ("n_test", "{:g} test images")):
        if column in df.columns:
            vals = sorted({v for v in df[column].dropna()}, key=str)
            if vals:
                parts.append("/".join(fmt.format(float(v) if column != "model" else v) for v in vals))
    return ", ".join(parts)


def edge_note(what: str, selected: float, grid, by: str = "validation") -> str | None:
    side = stats.grid_edge(selected, grid)
    return f"{what} = {selected:g} (best by {by}) is on the grid's {side} edge" if side else None
