"""Claims that rest on a selection or a count: the grid (Fig. 1 / 7: the good cells lie on a diagonal, 1-D searches
miss the best cell), label noise (Fig. 4 / 8, as the drop from clean accuracy) and under-fitting (Table 5, and the
flipped-label count behind Fig. 6 / 10). Every selection is by validation accuracy; a statistic needs a complete
grid (or pair of runs) per seed, and is paired by seed."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from pipeline.report.claims_core import (
    ACC_DIFF_BOUNDS,
    Claim,
    baselines,
    claim_id,
    claim_text,
    edge_note,
    scale,
)
from pipeline.report.heatmaps import one_d_searches
from pipeline.report.inputs import Inputs
from pipeline.report.tables import col, study_groups


def _complete_seeds(g: pd.DataFrame, cells: list[str]) -> dict[int, pd.DataFrame]:
    """seed -> its runs, for the seeds that have a finite val accuracy in every cell of the grid."""
    n_cells = len(g.drop_duplicates(cells))
    out = {}
    for s, x in g.assign(val_acc=col(g, "val_acc")).groupby("seed", sort=True):
        x = x.dropna(subset=["val_acc"])
        if len(x.drop_duplicates(cells)) == n_cells:
            out[int(s)] = x.groupby(cells, as_index=False)["val_acc"].mean()
    return out


def _best_wd_slope(cells: pd.DataFrame) -> float:
    """Slope of log10(val-best λ_wd) on log10(lr) over the grid's rows: -1 is the diagonal λ_wd·lr = const."""
    best = cells.sort_values(["lr", "val_acc", "wd"], ascending=[True, False, True]).groupby("lr").head(1)
    x, y = np.log10(best["lr"].astype(float)), np.log10(best["wd"].astype(float))
    return float(np.polyfit(x, y, 1)[0]) if x.nunique() >= 2 else math.nan


def grid_claims(inp: Inputs) -> list[Claim]:
    out: list[Claim] = []
    grid = inp.suite_runs("grid")
    if grid.empty:
        return out
    fixed = grid[grid["method"] == "fixed"]
    for label, _, g in study_groups(fixed):
        per_seed = _complete_seeds(g, ["lr", "wd"])
        slope = {s: _best_wd_slope(c) for s, c in per_seed.items()}
        miss = {}
        for s, c in per_seed.items():
            found = one_d_searches(c)
            miss[s] = float(c["val_acc"].max() - found["val_acc"].max())
        mean = g.assign(val_acc=col(g, "val_acc")).groupby(["lr", "wd"], as_index=False)["val_acc"].mean()
        wds = sorted(mean["wd"].astype(float).unique())
        rows_best = mean.sort_values(["lr", "val_acc"], ascending=[True, False]).groupby("lr").head(1)
        on_edge = [f"{lr:g}" for lr, wd in zip(rows_best["lr"], rows_best["wd"]) if edge_note("", wd, wds)]
        notes = [f"the val-best λ_wd sits on the grid's edge at lr = {', '.join(on_edge)}: the slope is censored"] \
            if on_edge else []
        reason = None if len(wds) >= 2 and mean["lr"].nunique() >= 2 else "the grid needs >= 2 lrs and >= 2 λ_wd"
        sc = scale(g)
        out += [
            Claim("diagonal_optimum", "Good cells lie on a diagonal, λ_wd·lr ≈ const (Fig. 1, 9)", label, sc,
                  "slope of log10(val-best λ_wd) on log10(lr) over the grid's lrs (-1 = the diagonal)",
                  "per seed, the best λ_wd of every lr by val accuracy; claimed < 0 (the best λ_wd falls as lr "
                  "rises)", "below", 0.0, ("slope", ""), slope, reason=reason, notes=notes),
            Claim("one_d_search_misses", "Separate 1-D searches miss the best cell (Fig. 7)", label, sc,
                  "val acc of the grid's best cell − that of the 1-D searches' result (points)",
                  "per seed, Appendix C's lr-then-λ_wd search from the grid value nearest λ_wd = 0.005, all by val "
                  "accuracy; claimed > 0; does not hold when every seed's search reaches the best cell", "above", 0.0,
                  ("best_minus_1d", ""), miss, bounds=(0.0, 100.0), reason=reason, zero_fails=True),
        ]
    return out


def _test_by_seed(df: pd.DataFrame, method: str, value: float) -> dict:
    r = df[(df["method"] == method) & np.isclose(df["value"].astype(float), value)]
    return {int(s): float(v) for s, v in zip(r["seed"], col(r, "test_acc"))}


def noise_claims(inp: Inputs) -> list[Claim]:
    out = []
    for label, _, g in study_groups(inp.suite_runs("noisy")):
        rate_of = g["rate"].astype(float)
        clean = g[np.isclose(rate_of, 0.0)]
        for rate in sorted(float(x) for x in rate_of.dropna().unique() if float(x) > 0):
            noisy = g[np.isclose(rate_of, rate)]
            for b in baselines(g):
                drop, notes, reason = {}, [], None
                for m in (b, "awd"):
                    c = clean[clean["method"] == m]
                    if c.empty or col(c, "val_acc").isna().all():
                        reason = f"no clean (rate 0) {m} runs with a val accuracy to select its value by"
                        break
                    score = c.assign(_s=col(c, "val_acc")).groupby("value")["_s"].mean()
                    value = float(sorted(score.items(), key=lambda kv: (-kv[1], kv[0]))[0][0])
                    n = edge_note(f"{m} value", value, sorted(c["value"].astype(float).unique()))
                    if n:
                        notes.append(n)
                    cl, no = (_test_by_seed(df, m, value) for df in (clean, noisy))
                    drop[m] = {s: cl[s] - no[s] for s in set(cl) & set(no) if math.isfinite(cl[s] - no[s])}
                rows = g[g["method"].isin([b, "awd"])]
                out.append(Claim(claim_id(f"label_noise_{round(rate * 100)}", b),
                                 claim_text(f"AWD: smaller accuracy drop under {rate:.0%} label noise (Fig. 4, 8)", b),
                                 label, scale(g), f"test acc drop, clean − {rate:.0%} noise (points), AWD − {b}",
                                 "each method's value by clean val accuracy (the noisy runs' val labels are noisy), "
                                 f"the same value trained with noise; per seed: AWD − {b}; claimed < 0", "below",
                                 0.0, ("awd", b), drop.get("awd", {}), drop.get(b, {}), ACC_DIFF_BOUNDS,
                                 list(col(rows, "test_acc").dropna()), reason=reason, notes=notes))
    return out


def _unfit_pct(inp: Inputs, r: pd.DataFrame) -> dict:
    acc = [inp.unfit_train_acc.get(k, a) for k, a in zip(r["key"], col(r, "train_acc"))]
    return {int(s): 100.0 - float(a) for s, a in zip(r["seed"], acc) if math.isfinite(a)}


def _flipped_unfit(inp: Inputs, r: pd.DataFrame) -> tuple[dict, str | None]:
    """seed -> how many flipped-label training examples the run leaves unfit, from its unfit export."""
    out, why = {}, []
    for s, key in zip(r["seed"], r["key"]):
        z = inp.unfit(key)
        if z is None:
            why.append(f"no unfit export for the {r['method'].iloc[0]} run (artifacts/train/unfit/ holds the AWD "
                       "run's only)")
        elif "flipped" not in z:
            why.append("the unfit export records no flipped-label mask (the underfit runs train on clean labels, "
                       "so no label was flipped)")
        else:
            out[int(s)] = float(np.asarray(z["flipped"], dtype=bool).sum())
    return (out, None) if not why else ({}, "; ".join(sorted(set(why))))


def underfit_claims(inp: Inputs) -> list[Claim]:
    out = []
    for label, _, g in study_groups(inp.suite_runs("underfit")):
        for b in baselines(g):
            rows = {m: g[g["method"] == m] for m in (b, "awd")}
            if any(r.empty for r in rows.values()):
                continue
            fit = [100.0 - v for r in rows.values() for v in _unfit_pct(inp, r).values()]
            test = {m: {int(s): float(v) for s, v in zip(r["seed"], col(r, "test_acc"))} for m, r in rows.items()}
            common = set(test["awd"]) & set(test[b])
            gap = (np.mean([test["awd"][s] - test[b][s] for s in common]) if common else math.nan)
            sc = scale(g)
            out.append(Claim(claim_id("fits_fewer", b), claim_text("AWD: fits fewer training examples (Table 5)", b),
                             label, sc, f"unfit training examples AWD − {b} (points of the training set)",
                             f"the params' λ_wd and DoG; per seed: AWD − {b}; claimed > 0 (at similar test accuracy: "
                             f"test acc AWD − {b} = {gap:+.2f} points)", "above", 0.0, ("awd", b),
                             _unfit_pct(inp, rows["awd"]), _unfit_pct(inp, rows[b]), ACC_DIFF_BOUNDS, fit))
            flips = {m: _flipped_unfit(inp, r) for m, r in rows.items()}
            why = "; ".join(w for _, w in flips.values() if w) or None
            out.append(Claim(claim_id("unfit_flipped", b),
                             claim_text("AWD: leaves more flipped-label examples unfit (Fig. 6, 10)", b), label, sc,
                             f"flipped-label training examples left unfit, AWD − {b} (count)",
                             f"the underfit runs; per seed: AWD − {b}; claimed > 0", "above", 0.0, ("awd", b),
                             flips["awd"][0], flips[b][0], reason=why))
    return out
