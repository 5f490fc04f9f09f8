"""Claims of natural training: Table 2 (‖W‖₂, accuracy within a margin, total loss), learning-rate sensitivity
(Fig. 5, 11) and pruning (Fig. 5, Table 6). No selection: each compares the params' stated values, paired by seed."""

from __future__ import annotations

import math

import numpy as np

from pipeline.report.claims_core import (
    ACC_DIFF_BOUNDS,
    Claim,
    baselines,
    by_seed,
    claim_id,
    claim_text,
    scale,
)
from pipeline.report.inputs import Inputs
from pipeline.report.tables import WD_REF, col, study_groups

SIMILAR_ACC_MARGIN = -1.0  # "similar accuracy": AWD no more than 1 point below fixed λ
PRUNE_AMOUNT = 0.7  # Fig. 5's pruned panel
PAPER_LR = 0.1
PAIRED = "per seed: AWD − {b} of the same seed"


def _total_loss(df) -> dict:
    """Eq. 1 at the paper's λ = 5e-4 for every model (as Table 2 prices it): the run's record, else from its parts."""
    total = col(df, "total_loss").fillna(col(df, "train_xent") + WD_REF * col(df, "weight_norm") ** 2 / 2)
    return {int(s): float(v) for s, v in zip(df["seed"], total) if s is not None and math.isfinite(v)}


def table2_claims(inp: Inputs) -> list[Claim]:
    out = []
    for label, _, g in study_groups(inp.suite_runs("natural")):
        for b in baselines(g):
            f, a = g[g["method"] == b], g[g["method"] == "awd"]
            if f.empty or a.empty:
                continue
            sc = scale(g)
            acc = list(col(f, "test_acc").dropna()) + list(col(a, "test_acc").dropna())
            out += [
                Claim(claim_id("smaller_norm", b), claim_text("AWD: smaller ‖W‖₂ (Table 2)", b), label, sc,
                      f"‖W‖₂ AWD − {b}, final models", f"the params' λ_wd and the pooled DoG; {PAIRED.format(b=b)}; "
                      "claimed < 0", "below", 0.0, ("awd", b), by_seed(a, "weight_norm"), by_seed(f, "weight_norm")),
                Claim(claim_id("similar_accuracy", b),
                      claim_text("AWD: similar test accuracy (Table 2)", b), label, sc,
                      f"test acc AWD − {b} (points), final models",
                      f"as above; claimed > {SIMILAR_ACC_MARGIN:g} point (AWD at most 1 point below)", "above",
                      SIMILAR_ACC_MARGIN, ("awd", b), by_seed(a, "test_acc"), by_seed(f, "test_acc"),
                      ACC_DIFF_BOUNDS, acc),
                Claim(claim_id("smaller_total_loss", b), claim_text("AWD: smaller total loss, eq. 1 (Table 2)", b),
                      label, sc, f"X-ent + {WD_REF:g}·‖W‖²/2, AWD − {b}", "as above; claimed < 0", "below", 0.0,
                      ("awd", b), _total_loss(a), _total_loss(f)),
            ]
    return out


def lr_claims(inp: Inputs) -> list[Claim]:
    out = []
    for label, _, g in study_groups(inp.suite_runs("lr_sensitivity")):
        lrs = sorted(float(x) for x in g["lr"].dropna().unique())
        for b in baselines(g):
            spread = {}
            for m in (b, "awd"):
                r = g[g["method"] == m]
                spread[m] = {int(s): float(col(x, "test_acc").max() - col(x, "test_acc").min())
                             for s, x in r.groupby("seed") if x["lr"].nunique() == len(lrs)
                             and col(x, "test_acc").notna().all()}
            rows = g[g["method"].isin([b, "awd"])]
            out.append(Claim(claim_id("lr_sensitivity", b),
                             claim_text("AWD: less sensitive to the learning rate (Fig. 5, 11)", b), label,
                             scale(g), f"spread of test acc over lr ∈ {{{', '.join(f'{x:g}' for x in lrs)}}} "
                             f"(max − min, points), AWD − {b}",
                             f"the params' λ_wd and DoG at every lr; {PAIRED.format(b=b)}; claimed < 0", "below",
                             0.0, ("awd", b), spread["awd"], spread[b], ACC_DIFF_BOUNDS,
                             list(col(rows, "test_acc").dropna())))
    return out


def prune_claims(inp: Inputs) -> list[Claim]:
    out: list[Claim] = []
    pr = inp.prune[inp.prune["suite"] == "lr_sensitivity"] if len(inp.prune) else inp.prune
    if pr.empty:
        return out
    runs = inp.suite_runs("lr_sensitivity")
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
            out.append(Claim(claim_id("pruning", b), claim_text("AWD: more robust to pruning (Fig. 5, Table 6)", b),
                             str(ds), scale(runs[runs["dataset"] == ds]),
                             f"test acc after {amount:.0%} global L1 pruning at lr = {lr:g}, AWD − {b} (points)",
                             f"the pruning amount nearest {PRUNE_AMOUNT:.0%} and the lr nearest the paper's "
                             f"{PAPER_LR:g}, fixed before the runs; {PAIRED.format(b=b)}; claimed > 0", "above", 0.0,
                             ("awd", b), by.get("awd", {}), by.get(b, {}), ACC_DIFF_BOUNDS,
                             [v for m in ("awd", b) for v in by.get(m, {}).values()]))
    return out
