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
from pipeline.report.tables import adversarial_best, best_with_seeds, col, methods, study_groups

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


def baselines(df: pd.DataFrame) -> list[str]:
    """What AWD is compared with: fixed λ_wd first (the paper's claims), then every other method of the runs."""
    return ["fixed"] + ([m for m in methods(df) if m not in ("fixed", "awd")] if len(df) else [])


def _claim_id(base: str, baseline: str) -> str:
    return base if baseline == "fixed" else f"{base}_vs_{baseline}"


def _claim_text(text: str, baseline: str) -> str:
    """The paper's claim against fixed λ_wd; against another baseline it names it ("AWD vs sgdw: ...")."""
    return text if baseline == "fixed" else text.replace("AWD:", f"AWD vs {baseline}:", 1)


def norm_claim(inp: Inputs) -> list[Claim]:
    out = []
    for label, _, g in study_groups(inp.suite_runs("natural")):
        for b in baselines(g):
            f, a = g[g["method"] == b], g[g["method"] == "awd"]
            d_norm = stats.paired_difference(_by_seed(a, "weight_norm"), _by_seed(f, "weight_norm"))
            d_acc = stats.paired_difference(_by_seed(a, "test_acc"), _by_seed(f, "test_acc"))
            v = stats.combine(stats.verdict(d_norm, "below"), stats.verdict(d_acc, "above", SIMILAR_ACC_MARGIN))
            out.append(Claim(
                _claim_id("smaller_norm", b), _claim_text("AWD: smaller ‖W‖ at similar accuracy (Table 2)", b), label,
                f"‖W‖₂ AWD − {b}: {d_norm.text()}; test acc AWD − {b} (points): {d_acc.text()}",
                f"‖W‖ difference wholly < 0 and accuracy difference wholly > {SIMILAR_ACC_MARGIN:g} point "
                "(seed-paired t)", v, d_norm, {"test_acc_diff": stats_dict(d_acc)}))
    return out


def stats_dict(iv: stats.Interval) -> dict:
    return {"estimate": _r(iv.estimate), "ci": [_r(iv.low), _r(iv.high)], "n": iv.n}


def autoattack_claim(inp: Inputs) -> list[Claim]:
    out = []
    best = adversarial_best(inp, "val")
    for label, _, g in study_groups(best):
        for b in baselines(g):
            rows = {m: g[g["method"] == m] for m in (b, "awd")}
            if any(r.empty for r in rows.values()):
                continue
            runs = {m: best_with_seeds(inp, r.iloc[0]) for m, r in rows.items()}
            d = stats.paired_difference(_by_seed(runs["awd"], "aa_acc"), _by_seed(runs[b], "aa_acc"))
            pairs = _paired_outcomes(inp, runs, b)
            mc = stats.mcnemar(*pairs) if pairs else None
            evidence = f"AutoAttack acc AWD − {b} (val-selected bests, points): {d.text()}"
            if mc is not None:
                evidence += (f"; McNemar over {mc.n} example×seed pairs: AWD-only {mc.only_a}, {b}-only {mc.only_b}, "
                             f"p = {mc.p_value:.3g}, difference {_pct(mc.diff).text()}")
            if d.n >= 2:
                iv, rule = d, "seed-paired t interval wholly > 0"
            else:
                iv, rule = ((_pct(mc.diff) if mc else d),
                            "per-example paired interval (McNemar data) wholly > 0 (one seed)")
            extra = {"mcnemar_p": _r(mc.p_value) if mc else None, "paired_examples": mc.n if mc else 0}
            out.append(Claim(_claim_id("higher_autoattack", b),
                             _claim_text("AWD: higher AutoAttack accuracy (Fig. 3, Table 3)", b), label,
                             evidence, rule, stats.verdict(iv, "above"), iv, extra))
    return out


def _paired_outcomes(inp: Inputs, runs: dict, baseline: str = "fixed") -> tuple[np.ndarray, np.ndarray] | None:
    """Per-example AutoAttack outcomes of AWD and the baseline, paired by seed and example, over all seeds."""
    a_seed = dict(zip(runs["awd"]["seed"], runs["awd"]["key"]))
    f_seed = dict(zip(runs[baseline]["seed"], runs[baseline]["key"]))
    a, f = [], []
    for seed in sorted(set(a_seed) & set(f_seed)):
        ca, cf = inp.aa_correct.get(a_seed[seed]), inp.aa_correct.get(f_seed[seed])
        if ca is not None and cf is not None and len(ca) == len(cf):
            a.append(ca)
            f.append(cf)
    return (np.concatenate(a), np.concatenate(f)) if a else None


def _proportion_difference(p: dict, n: dict, baseline: str = "fixed") -> stats.Interval:
    """AWD − baseline of two proportions measured on n examples each, in points; no interval without the sizes."""
    b = baseline
    if not all(math.isfinite(v) for v in n.values()):
        return stats.Interval((p["awd"] - p[b]) * 100, math.nan, math.nan, 1, "no example count")
    return _pct(stats.two_proportions(round(p["awd"] * n["awd"]), int(n["awd"]), round(p[b] * n[b]), int(n[b])))


def lr_claim(inp: Inputs) -> list[Claim]:
    out = []
    df = inp.suite_runs("lr_sensitivity")
    for label, _, g in study_groups(df):
        for b in baselines(g):
            spread = {}
            for m in (b, "awd"):
                r = g[g["method"] == m]
                n_lrs = r["lr"].nunique()
                spread[m] = {int(s): float(col(x, "test_acc").max() - col(x, "test_acc").min())
                             for s, x in r.groupby("seed") if x["lr"].nunique() == n_lrs}
            d = stats.paired_difference(spread["awd"], spread[b])
            out.append(Claim(_claim_id("lr_sensitivity", b),
                             _claim_text("AWD: less sensitive to the learning rate (Fig. 5, 11)", b), label,
                             f"spread of test acc over lr (max − min, points) AWD − {b}: {d.text()}",
                             "seed-paired t interval of the spread difference wholly < 0", stats.verdict(d, "below"),
                             d))
    return out


def noise_claim(inp: Inputs) -> list[Claim]:
    out = []
    for label, _, g in study_groups(inp.suite_runs("noisy")):
        rates = sorted(float(x) for x in g["rate"].dropna().unique() if float(x) > 0)
        if not rates:
            continue
        rate = rates[0]
        at = g[np.isclose(g["rate"].astype(float), rate)]
        for base in baselines(g):
            best = {m: at[at["method"] == m].assign(a=lambda d: col(d, "test_acc")).sort_values("a").tail(1)
                    for m in (base, "awd")}
            if any(b.empty for b in best.values()):
                continue
            n = {m: col(b, "n_test").iloc[0] for m, b in best.items()}
            iv = _proportion_difference({m: float(b["a"].iloc[0]) / 100 for m, b in best.items()}, n, base)
            out.append(Claim(_claim_id("label_noise", base),
                             _claim_text("AWD: more robust to label noise (Fig. 4, 8)", base), label,
                             f"best test acc over each method's values at {rate:.0%} noise, AWD − {base} (points): "
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
        for b in baselines(g):
            d = stats.paired_difference(by.get("awd", {}), by.get(b, {}))
            out.append(Claim(_claim_id("pruning", b), _claim_text("AWD: more robust to pruning (Fig. 5, Table 6)", b),
                             str(ds), f"test acc after {amount:.0%} global L1 pruning at lr={lr:g}, AWD − {b} "
                             f"(points): {d.text()}", "seed-paired t interval wholly > 0", stats.verdict(d, "above"),
                             d))
    return out


def underfit_claim(inp: Inputs) -> list[Claim]:
    out = []
    for label, _, g in study_groups(inp.suite_runs("underfit")):
        for b in baselines(g):
            rows = {m: g[g["method"] == m] for m in (b, "awd")}
            if any(r.empty for r in rows.values()):
                continue
            acc = {m: inp.unfit_train_acc.get(r["key"].iloc[0], col(r, "train_acc").iloc[0]) / 100
                   for m, r in rows.items()}
            n = {m: col(r, "n_train").iloc[0] for m, r in rows.items()}
            iv = _proportion_difference({m: 1 - a for m, a in acc.items()}, n, b)
            out.append(Claim(_claim_id("fits_fewer", b),
                             _claim_text("AWD: fits fewer training examples (Table 5)", b), label,
                             f"unfit training examples AWD − {b} (points): {iv.text()}",
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
