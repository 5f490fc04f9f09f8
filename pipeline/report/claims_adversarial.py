"""Claims of adversarial training: Table 3 / Fig. 3 (AutoAttack, clean accuracy, ‖W‖₂ of each method's best) and
Table 4 (each variant against its SGD counterpart). Every best is chosen by validation PGD-20 robust accuracy; the
test-selected best (the paper's reading) appears only in the tables and, when on a grid edge, in a note."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.report import stats
from pipeline.report.claims_core import (
    ACC_DIFF_BOUNDS,
    Claim,
    baselines,
    by_seed,
    claim_id,
    claim_text,
    edge_note,
    scale,
)
from pipeline.report.inputs import Inputs
from pipeline.report.tables import (
    adversarial_best,
    adversarial_runs_of,
    adversarial_sweep,
    col,
    hyper_name,
    study_groups,
    variant_rows,
)

VAL_SELECTED = "each method's best value by val PGD-20 robust accuracy (its sweep run, then its extra seeds)"


def paired_outcomes(inp: Inputs, a: pd.DataFrame, b: pd.DataFrame):
    """Per-example AutoAttack outcomes of two sets of runs, paired by seed and example, over all seeds."""
    a_seed, b_seed = dict(zip(a["seed"], a["key"])), dict(zip(b["seed"], b["key"]))
    xa, xb = [], []
    for seed in sorted(set(a_seed) & set(b_seed), key=str):
        ca, cb = inp.aa_correct.get(a_seed[seed]), inp.aa_correct.get(b_seed[seed])
        if ca is not None and cb is not None and len(ca) == len(cb):
            xa.append(ca)
            xb.append(cb)
    return (np.concatenate(xa), np.concatenate(xb)) if xa else None


def mcnemar_note(inp: Inputs, a: pd.DataFrame, b: pd.DataFrame, names: tuple[str, str]) -> tuple[str | None, dict]:
    """Supporting evidence only (test-sample noise, not training noise): the exact McNemar test."""
    pairs = paired_outcomes(inp, a, b)
    if pairs is None:
        return None, {}
    mc = stats.mcnemar(*pairs)
    return (f"supporting: McNemar over {mc.n} example×seed pairs, {names[0]}-only {mc.only_a}, {names[1]}-only "
            f"{mc.only_b}, p = {mc.p_value:.3g}"), {"mcnemar_p": float(f"{mc.p_value:.6g}"), "paired_examples": mc.n}


def _edges(inp: Inputs, g_val: pd.DataFrame, g_test: pd.DataFrame, sweep: pd.DataFrame, methods) -> list[str]:
    notes = []
    for m in methods:
        grid = sweep[sweep["method"] == m]["value"].astype(float)
        for g, by in ((g_val, "validation"), (g_test, "test AutoAttack, the paper's reading")):
            r = g[g["method"] == m]
            if len(r):
                n = edge_note(f"{m} {hyper_name(m)}", float(r["value"].iloc[0]), grid, by)
                if n:
                    notes.append(n)
    return notes


def table3_claims(inp: Inputs) -> list[Claim]:
    out = []
    by_test = adversarial_best(inp, "test")
    sweep = adversarial_sweep(inp)
    for label, ds, g in study_groups(adversarial_best(inp, "val")):
        gt = by_test[(by_test["dataset"] == ds) & (by_test["study"] == g["study"].iloc[0])] if len(by_test) else g
        sw = sweep[(sweep["dataset"] == ds) & (sweep["study"] == g["study"].iloc[0])]
        for b in baselines(g):
            rows = {m: g[g["method"] == m] for m in (b, "awd")}
            if any(r.empty for r in rows.values()):
                continue
            runs = {m: adversarial_runs_of(inp, ds, m, float(r["value"].iloc[0])) for m, r in rows.items()}
            sc = scale(pd.concat(runs.values()))
            edges = _edges(inp, g, gt, sw, (b, "awd"))
            mc, extra = mcnemar_note(inp, runs["awd"], runs[b], ("AWD", b))
            acc = {k: list(col(r, k).dropna()) for k, r in (("aa_acc", pd.concat(runs.values())),
                                                            ("test_acc", pd.concat(runs.values())))}
            rule = f"{VAL_SELECTED}; per seed: AWD − {b}"
            out += [
                Claim(claim_id("higher_autoattack", b),
                      claim_text("AWD: higher AutoAttack accuracy (Fig. 3, Table 3)", b), label, sc,
                      f"AutoAttack acc AWD − {b} (points)", f"{rule}; claimed > 0", "above", 0.0, ("awd", b),
                      by_seed(runs["awd"], "aa_acc"), by_seed(runs[b], "aa_acc"), ACC_DIFF_BOUNDS, acc["aa_acc"],
                      notes=edges + ([mc] if mc else []), extra=extra),
                Claim(claim_id("higher_clean_accuracy", b),
                      claim_text("AWD: higher clean accuracy, adversarially trained (Table 3)", b), label, sc,
                      f"clean test acc AWD − {b} (points)", f"{rule}; claimed > 0", "above", 0.0, ("awd", b),
                      by_seed(runs["awd"], "test_acc"), by_seed(runs[b], "test_acc"), ACC_DIFF_BOUNDS,
                      acc["test_acc"], notes=list(edges)),
                Claim(claim_id("smaller_norm_adversarial", b),
                      claim_text("AWD: ~4-5× smaller ‖W‖₂, adversarially trained (Table 3)", b), label, sc,
                      f"‖W‖₂ AWD − {b}", f"{rule}; claimed < 0", "below", 0.0, ("awd", b),
                      by_seed(runs["awd"], "weight_norm"), by_seed(runs[b], "weight_norm"), notes=list(edges)),
            ]
    return out


def variant_arms(inp: Inputs) -> list[dict]:
    """Table 4's rows as the table shows them (tables.variant_rows): each row's value and its runs, every seed."""
    arms = []
    for r, _, runs, grid in variant_rows(inp):
        value = float(r["value"])
        arms.append({"dataset": str(r["dataset"]), "name": str(r["name"]), "method": r["method"], "value": value,
                     "optimizer": str(r["optimizer"]), "from_sweep": bool(r.get("from_sweep", False)), "runs": runs,
                     "edge": edge_note(f"{r['name']} value", value, grid) if len(grid) > 1 else None})
    return arms


def _variant_claim(inp: Inputs, cid: str, text: str, a: dict, b: dict) -> Claim:
    mc, extra = mcnemar_note(inp, a["runs"], b["runs"], (a["name"], b["name"]))
    both = pd.concat([a["runs"], b["runs"]])
    return Claim(cid, text, a["dataset"], scale(both), f"AutoAttack acc {a['name']} − {b['name']} (points)",
                 "Table 4's rows as the params state them (a re-tuned row: its best value by val PGD-20); per seed: "
                 "the first − the second; claimed > 0", "above", 0.0, (a["name"], b["name"]),
                 by_seed(a["runs"], "aa_acc"), by_seed(b["runs"], "aa_acc"), ACC_DIFF_BOUNDS,
                 list(col(both, "aa_acc").dropna()), notes=[n for n in (a["edge"], b["edge"], mc) if n], extra=extra)


def table4_claims(inp: Inputs) -> list[Claim]:
    """Each variant against its SGD counterpart: an optimizer variant against the same method's SGD row, AWD
    against fixed λ_wd under the same non-SGD optimizer, and AWD (SGD) against every other regulariser."""
    out = []
    arms = variant_arms(inp)
    for ds in sorted({a["dataset"] for a in arms}):
        mine = [a for a in arms if a["dataset"] == ds]
        sgd = {a["method"]: a for a in mine if a["optimizer"] == "sgd" and a["method"] in ("fixed", "awd")}
        for a in mine:
            if a["optimizer"] != "sgd" and a["method"] in sgd:
                out.append(_variant_claim(inp, f"t4_{a['method']}_{a['optimizer']}_vs_sgd",
                                          f"{a['optimizer'].upper()} improves {a['method']}'s AutoAttack accuracy "
                                          "over SGD (Table 4)", a, sgd[a["method"]]))
        for opt in sorted({a["optimizer"] for a in mine} - {"sgd"}):
            pair = {a["method"]: a for a in mine if a["optimizer"] == opt}
            if {"awd", "fixed"} <= set(pair):
                out.append(_variant_claim(inp, f"t4_awd_vs_fixed_{opt}",
                                          f"AWD: higher AutoAttack accuracy under {opt.upper()} (Table 4)",
                                          pair["awd"], pair["fixed"]))
        if "awd" in sgd:
            for a in mine:
                if a["method"] not in ("fixed", "awd"):
                    out.append(_variant_claim(inp, f"t4_awd_vs_{a['method']}",
                                              f"AWD: higher AutoAttack accuracy than {a['method']} (Table 4)",
                                              sgd["awd"], a))
    return out
