"""The paper's claims, this run's evidence for each, and a verdict decided by a stated statistical rule.

Rule (pipeline.stats.verdict): a claim *holds* when the 95 % interval of its effect lies wholly on the claimed
side (of 0, or of the stated margin), *does not hold* when it lies wholly on the other side, and is *inconclusive*
otherwise or when there is no interval (fewer than 2 seeds, no per-example outcomes). Seed-paired intervals
carry the training noise; per-example tests carry only the test-sample noise, so they are used only where a
claim has no seeds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from pipeline.report import stats
from pipeline.report.inputs import Inputs
from pipeline.report.tables import adversarial_best, best_with_seeds, col, study_groups

SIMILAR_ACC_MARGIN = -1.0  # "similar accuracy": AWD no more than 1 point below fixed λ
PRUNE_AMOUNT = 0.7  # Fig. 5's pruned panel
PAPER_LR = 0.1


@dataclass
class Claim:
    id: str
    claim: str
    dataset: str
    evidence: str
    rule: str
    verdict: str
    interval: stats.Interval | None = None
    extra: dict = field(default_factory=dict)

    def metrics(self) -> dict:
        iv = self.interval
        out = {"verdict": self.verdict}
        if iv is not None:
            out.update(estimate=_r(iv.estimate), ci=[_r(iv.low), _r(iv.high)], n=iv.n, method=iv.method)
        out.update(self.extra)
        return out


def _r(x):
    return None if x is None or not math.isfinite(float(x)) else float(f"{float(x):.6g}")


def _by_seed(df: pd.DataFrame, metric: str) -> dict:
    vals = col(df, metric)
    return {int(s): float(v) for s, v in zip(df["seed"], vals) if s is not None and math.isfinite(v)}


def _pct(iv: stats.Interval) -> stats.Interval:
    return stats.Interval(iv.estimate * 100, iv.low * 100, iv.high * 100, iv.n, iv.method)


def norm_claim(inp: Inputs) -> list[Claim]:
    out = []
    for label, _, g in study_groups(inp.suite_runs("natural")):
        f, a = g[g["method"] == "fixed"], g[g["method"] == "awd"]
        d_norm = stats.paired_difference(_by_seed(a, "weight_norm"), _by_seed(f, "weight_norm"))
        d_acc = stats.paired_difference(_by_seed(a, "test_acc"), _by_seed(f, "test_acc"))
        v = stats.combine(stats.verdict(d_norm, "below"), stats.verdict(d_acc, "above", SIMILAR_ACC_MARGIN))
        out.append(Claim(
            "smaller_norm", "AWD: smaller ‖W‖ at similar accuracy (Table 2)", label,
            f"‖W‖₂ AWD − fixed: {d_norm.text()}; test acc AWD − fixed (points): {d_acc.text()}",
            f"‖W‖ difference wholly < 0 and accuracy difference wholly > {SIMILAR_ACC_MARGIN:g} point (seed-paired t)",
            v, d_norm, {"test_acc_diff": stats_dict(d_acc)}))
    return out


def stats_dict(iv: stats.Interval) -> dict:
    return {"estimate": _r(iv.estimate), "ci": [_r(iv.low), _r(iv.high)], "n": iv.n}


def autoattack_claim(inp: Inputs) -> list[Claim]:
    out = []
    best = adversarial_best(inp, "val")
    for label, _, g in study_groups(best):
        rows = {m: g[g["method"] == m] for m in ("fixed", "awd")}
        if any(r.empty for r in rows.values()):
            continue
        runs = {m: best_with_seeds(inp, r.iloc[0]) for m, r in rows.items()}
        d = stats.paired_difference(_by_seed(runs["awd"], "aa_acc"), _by_seed(runs["fixed"], "aa_acc"))
        pairs = _paired_outcomes(inp, runs)
        mc = stats.mcnemar(*pairs) if pairs else None
        evidence = f"AutoAttack acc AWD − fixed (val-selected bests, points): {d.text()}"
        if mc is not None:
            evidence += (f"; McNemar over {mc.n} example×seed pairs: AWD-only {mc.only_a}, fixed-only {mc.only_b}, "
                         f"p = {mc.p_value:.3g}, difference {_pct(mc.diff).text()}")
        if d.n >= 2:
            iv, rule = d, "seed-paired t interval wholly > 0"
        else:
            iv, rule = (_pct(mc.diff) if mc else d), "per-example paired interval (McNemar data) wholly > 0 (one seed)"
        extra = {"mcnemar_p": _r(mc.p_value) if mc else None, "paired_examples": mc.n if mc else 0}
        out.append(Claim("higher_autoattack", "AWD: higher AutoAttack accuracy (Fig. 3, Table 3)", label,
                         evidence, rule, stats.verdict(iv, "above"), iv, extra))
    return out


def _paired_outcomes(inp: Inputs, runs: dict) -> tuple[np.ndarray, np.ndarray] | None:
    """Per-example AutoAttack outcomes of AWD and fixed, paired by seed and example, concatenated over seeds."""
    a_seed = dict(zip(runs["awd"]["seed"], runs["awd"]["key"]))
    f_seed = dict(zip(runs["fixed"]["seed"], runs["fixed"]["key"]))
    a, f = [], []
    for seed in sorted(set(a_seed) & set(f_seed)):
        ca, cf = inp.aa_correct.get(a_seed[seed]), inp.aa_correct.get(f_seed[seed])
        if ca is not None and cf is not None and len(ca) == len(cf):
            a.append(ca)
            f.append(cf)
    return (np.concatenate(a), np.concatenate(f)) if a else None


def _proportion_difference(p: dict, n: dict) -> stats.Interval:
    """AWD − fixed of two proportions measured on n examples each, in points; no interval without the sizes."""
    if not all(math.isfinite(v) for v in n.values()):
        return stats.Interval((p["awd"] - p["fixed"]) * 100, math.nan, math.nan, 1, "no example count")
    return _pct(stats.two_proportions(round(p["awd"] * n["awd"]), int(n["awd"]),
                                      round(p["fixed"] * n["fixed"]), int(n["fixed"])))


def lr_claim(inp: Inputs) -> list[Claim]:
    out = []
    df = inp.suite_runs("lr_sensitivity")
    for label, _, g in study_groups(df):
        spread = {}
        for m in ("fixed", "awd"):
            r = g[g["method"] == m]
            n_lrs = r["lr"].nunique()
            spread[m] = {int(s): float(col(x, "test_acc").max() - col(x, "test_acc").min())
                         for s, x in r.groupby("seed") if x["lr"].nunique() == n_lrs}
        d = stats.paired_difference(spread["awd"], spread["fixed"])
        out.append(Claim("lr_sensitivity", "AWD: less sensitive to the learning rate (Fig. 5, 11)", label,
                         f"spread of test acc over lr (max − min, points) AWD − fixed: {d.text()}",
                         "seed-paired t interval of the spread difference wholly < 0", stats.verdict(d, "below"), d))
    return out


def noise_claim(inp: Inputs) -> list[Claim]:
    out = []
    for label, _, g in study_groups(inp.suite_runs("noisy")):
        rates = sorted(float(x) for x in g["rate"].dropna().unique() if float(x) > 0)
        if not rates:
            continue
        rate = rates[0]
        at = g[np.isclose(g["rate"].astype(float), rate)]
        best = {m: at[at["method"] == m].assign(a=lambda d: col(d, "test_acc")).sort_values("a").tail(1)
                for m in ("fixed", "awd")}
        if any(b.empty for b in best.values()):
            continue
        n = {m: col(b, "n_test").iloc[0] for m, b in best.items()}
        iv = _proportion_difference({m: float(b["a"].iloc[0]) / 100 for m, b in best.items()}, n)
        out.append(Claim("label_noise", "AWD: more robust to label noise (Fig. 4, 8)", label,
                         f"best test acc over each method's values at {rate:.0%} noise, AWD − fixed (points): "
                         f"{iv.text()}", "Newcombe interval of the difference wholly > 0 (one run per value)",
                         stats.verdict(iv, "above"), iv))
    return out


def prune_claim(inp: Inputs) -> list[Claim]:
    out = []
    pr = inp.prune[inp.prune["suite"] == "lr_sensitivity"] if len(inp.prune) else inp.prune
    if pr.empty:
        return out
    for ds, g in pr.groupby("dataset", sort=True):
        amounts = sorted(float(a) for a in g["amount"].unique() if float(a) > 0)
        lrs = sorted(float(x) for x in g["lr"].unique())
        if not amounts or not lrs:
            continue
        amount = min(amounts, key=lambda a: abs(a - PRUNE_AMOUNT))
        lr = min(lrs, key=lambda x: abs(math.log(x / PAPER_LR)))
        sel = g[np.isclose(g["amount"].astype(float), amount) & np.isclose(g["lr"].astype(float), lr)]
        by = {m: {int(s): float(a) for s, a in zip(r["seed"], r["acc"])} for m, r in sel.groupby("method")}
        d = stats.paired_difference(by.get("awd", {}), by.get("fixed", {}))
        out.append(Claim("pruning", "AWD: more robust to pruning (Fig. 5, Table 6)", str(ds),
                         f"test acc after {amount:.0%} global L1 pruning at lr={lr:g}, AWD − fixed (points): {d.text()}",
                         "seed-paired t interval wholly > 0", stats.verdict(d, "above"), d))
    return out


def underfit_claim(inp: Inputs) -> list[Claim]:
    out = []
    for label, _, g in study_groups(inp.suite_runs("underfit")):
        rows = {m: g[g["method"] == m] for m in ("fixed", "awd")}
        if any(r.empty for r in rows.values()):
            continue
        acc = {m: inp.unfit_train_acc.get(r["key"].iloc[0], col(r, "train_acc").iloc[0]) / 100
               for m, r in rows.items()}
        n = {m: col(r, "n_train").iloc[0] for m, r in rows.items()}
        iv = _proportion_difference({m: 1 - a for m, a in acc.items()}, n)
        out.append(Claim("fits_fewer", "AWD: fits fewer training examples (Table 5)", label,
                         f"unfit training examples AWD − fixed (points): {iv.text()}",
                         "Newcombe interval wholly > 0 (one run each)", stats.verdict(iv, "above"), iv))
    return out


def all_claims(inp: Inputs) -> list[Claim]:
    out = []
    for build in (norm_claim, autoattack_claim, lr_claim, noise_claim, prune_claim, underfit_claim):
        out += build(inp)
    return out


def markdown(claims: list[Claim]) -> str:
    if not claims:
        return "_No claim has the runs it needs in this configuration._\n"
    lines = ["| claim | dataset | evidence (estimate [95% CI]) | rule | verdict |", "|---|---|---|---|---|"]
    for c in claims:
        cells = [c.claim, c.dataset, c.evidence, c.rule, f"**{c.verdict}**"]
        lines.append("| " + " | ".join(x.replace("|", "\\|") for x in cells) + " |")
    return "\n".join(lines) + "\n"
