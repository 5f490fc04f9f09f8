"""Build the paper's tables (T2-T6, F12) from the stage artifacts, each row beside the paper's number."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from pipeline.report import methods as method_styles
from pipeline.report import paper
from pipeline.report.inputs import Inputs
from pipeline.report.table_format import Table, fmt_hyper, stats

# The paper's Table 2 prices every model's weight norm with the same λ (eq. 1 at the tuned λ_wd), whatever its method.
WD_REF = paper.TABLE2_WD
DATASET_NAMES = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "digits": "digits"}


def missing_reason(inp: Inputs, *suites: str) -> str | None:
    """Why a section has nothing to show, or None when at least one of `suites` has runs."""
    if not any(inp.in_params(s) for s in suites):
        return f"Not run in this configuration (no `{'` / `'.join(suites)}` suite in the params file)."
    if not any(len(inp.suite_runs(s)) for s in suites):
        return f"No `{'` / `'.join(suites)}` runs in artifacts/train/runs.json (has the train stage run?)."
    return None


def col(df: pd.DataFrame, name: str) -> pd.Series:
    """A numeric column, all NaN when no record carried that metric."""
    if name in df.columns:
        return pd.to_numeric(df[name], errors="coerce")
    return pd.Series(math.nan, index=df.index, dtype=float)


def method_key(m) -> tuple:
    return method_styles.order_key(m)


def study_groups(df: pd.DataFrame):
    """(label, dataset, frame) per study, ordered by dataset then study index. The label is the dataset name,
    suffixed with the study index only when one suite has several studies on the same dataset."""
    if df.empty:
        return []
    pairs = sorted({(str(d), int(s)) for d, s in zip(df["dataset"], df["study"])})
    per_ds = pd.Series([d for d, _ in pairs]).value_counts()
    out = []
    for ds, st in pairs:
        label = ds if per_ds[ds] == 1 else f"{ds} (study {st})"
        out.append((label, ds, df[(df["dataset"] == ds) & (df["study"] == st)]))
    return out


def methods(df: pd.DataFrame) -> list:
    return sorted(df["method"].dropna().unique(), key=method_key)


def ref_note(paper_ds: str, comparable: bool, extra: str = "") -> str:
    parts = [] if comparable else [f"paper: {DATASET_NAMES.get(paper_ds, paper_ds)}; datasets differ, no Δ"]
    if extra:
        parts.append(extra)
    return "; ".join(parts)


def hyper_name(method: str) -> str:
    return method_styles.style(method).param_label


def plugin_note(t: Table, df: pd.DataFrame) -> None:
    """Where a plugin method has rows, say what its value is (the column is named for the built-ins')."""
    used = set(df["method"].dropna()) if len(df) and "method" in df.columns else set()
    for s in method_styles.plugins():
        if s.name in used:
            t.notes.append(f"{s.name} ({s.spec}): its `λ_wd / DoG` value is {s.param_label}.")


def seed_differences(awd: pd.DataFrame, fixed: pd.DataFrame, metric: str) -> list[float]:
    """awd − fixed of `metric` for every seed both have: its mean ± std and t interval are the paired ones."""
    a = dict(zip(awd["seed"], col(awd, metric)))
    f = dict(zip(fixed["seed"], col(fixed, metric)))
    return [a[s] - f[s] for s in sorted(set(a) & set(f), key=str)]


def add_differences(t: Table, keys: dict, awd: pd.DataFrame, fixed: pd.DataFrame, metrics: dict) -> None:
    """Rows `awd − fixed` (paired over seeds) for each {table metric: run column}."""
    for metric, column in metrics.items():
        t.add(dict(keys, method="awd − fixed"), metric, seed_differences(awd, fixed, column), comparable=False,
              note="paired over seeds: mean ± std [95% t CI] of the per-seed differences")


def dog_estimates(inp: Inputs, dataset: str, study: int) -> list[dict]:
    return sorted((e for e in inp.dog_estimates if e["dataset"] == dataset and int(e.get("study", 0)) == study),
                  key=lambda e: int(e.get("seed", 0)))


def table2(inp: Inputs) -> Table:
    t = Table("T2", "Natural training: fixed λ_wd vs AWD with the pooled estimated DoG (final models; mean ± std "
                    "[95% CI] over seeds)",
              ["dataset", "method", "lr", "λ_wd / DoG"], missing=missing_reason(inp, "natural"))
    if t.missing:
        return t
    for label, ds, g in study_groups(inp.suite_runs("natural")):
        pds, comparable = paper.reference_dataset(ds, paper.datasets_of(paper.T2))
        for m in methods(g):
            r = g[g["method"] == m]
            keys = {"dataset": label, "method": m, "lr": fmt_hyper(r["lr"]), "λ_wd / DoG": fmt_hyper(r["value"])}
            prow = paper.lookup(paper.T2, dataset=pds, method=m)
            note = ref_note(pds, comparable, f"paper {hyper_name(m)}={prow['value']:g}" if prow else "")
            norm, xent = col(r, "weight_norm"), col(r, "train_xent")
            wd_term = WD_REF * norm ** 2 / 2
            total = col(r, "total_loss").fillna(xent + wd_term)
            for metric, vals in (("val_acc", col(r, "val_acc")), ("test_acc", col(r, "test_acc")),
                                 ("best_val_test_acc", col(r, "best_val_test_acc")),
                                 ("weight_norm", norm), ("wd_term", wd_term), ("xent", xent),
                                 ("total_loss", total)):
                t.add(keys, metric, vals, prow if metric != "best_val_test_acc" else None,
                      comparable=comparable, note=note)
            est = dog_estimates(inp, ds, int(r["study"].iloc[0]))
            if m == "awd" and est:
                per_seed = ", ".join(f"seed {e.get('seed', 0)}: {e['dog']:.4g} (plateau epoch "
                                     f"{int(e['plateau_epoch']) + 1})" for e in est)
                t.add(keys, "dog_estimate", [e["dog"] for e in est], comparable=False,
                      note=f"pooled DoG = mean of the per-seed estimates, used by every AWD seed; {per_seed}")
        add_differences(t, {"dataset": label, "lr": fmt_hyper(g["lr"]), "λ_wd / DoG": "—"},
                        g[g["method"] == "awd"], g[g["method"] == "fixed"],
                        {"test_acc": "test_acc", "weight_norm": "weight_norm", "xent": "train_xent",
                         "total_loss": "total_loss"})
    t.notes.append("Every metric is the end-of-training model's (Table 2's X-ent is \"at the end of training\"); "
                   "\"test acc, best-val checkpoint\" is the early-stopped alternative, for reference. One DoG per "
                   "study, as in the paper: the mean of the fixed-λ seeds' estimates. Paper: WRN28-10, mean of 3 runs "
                   "(Table 2). 0.0005·‖W‖²/2 is computed from each run's ‖W‖₂; total loss is eq. 1 at λ = 0.0005.")
    return t


SELECTIONS = {  # id -> (label, the score a sweep run is chosen by)
    "val": ("val PGD-20 (ours)", "val_robust_acc"),
    "test": ("test AutoAttack (paper's)", "aa_acc"),
}


def adversarial_sweep(inp: Inputs) -> pd.DataFrame:
    """The adversarial suite's sweep: one run per swept value (extra seeds of the best values left out)."""
    df = inp.suite_runs("adversarial")
    if df.empty or "replicate" not in df.columns:
        return df
    return df[~df["replicate"].fillna(False).astype(bool)]


def adversarial_best(inp: Inputs, by: str = "val") -> pd.DataFrame:
    """The best sweep run of each (study, method). `by="val"`: held-out val PGD-20 robust accuracy (honest; how
    the extra seeds were chosen). `by="test"`: test AutoAttack accuracy, the paper's Fig. 3 reading (optimistic:
    chosen on the test set it is scored on). Ties go to the smaller hyper-parameter, then the key."""
    df = adversarial_sweep(inp)
    if df.empty:
        return df
    df = df.assign(_score=col(df, SELECTIONS[by][1]).fillna(-math.inf))
    df = df.sort_values(["dataset", "study", "method", "_score", "value", "key"],
                        ascending=[True, True, True, False, True, True])
    return df.groupby(["dataset", "study", "method"], sort=True).head(1).drop(columns="_score")


def best_with_seeds(inp: Inputs, best_row) -> pd.DataFrame:
    """Every run (sweep run and extra seeds) of the selected value."""
    df = inp.suite_runs("adversarial")
    return df[(df["dataset"] == best_row["dataset"]) & (df["study"] == best_row["study"])
              & (df["method"] == best_row["method"]) & np.isclose(df["value"].astype(float), float(best_row["value"]))]


def table3(inp: Inputs) -> Table:
    t = Table("T3", "Adversarial training: the best λ_wd and the best DoG, under both selections",
              ["dataset", "selection", "method", "λ_wd / DoG"], missing=missing_reason(inp, "adversarial"))
    if t.missing:
        return t
    for sel, (sel_label, _) in SELECTIONS.items():
        for label, ds, g in study_groups(adversarial_best(inp, sel)):
            pds, comparable = paper.reference_dataset(ds, paper.datasets_of(paper.T3))
            for m in methods(g):
                best = g[g["method"] == m].iloc[0]
                r = best_with_seeds(inp, best) if sel == "val" else g[g["method"] == m]
                prow = paper.lookup(paper.T3, dataset=pds, method=m)
                note = ref_note(pds, comparable, f"paper best {hyper_name(m)}={prow['value']:g}" if prow else "")
                keys = {"dataset": label, "selection": sel_label, "method": m, "λ_wd / DoG": fmt_hyper(r["value"])}
                t.add(keys, "val_robust_acc", col(r, "val_robust_acc"), note=note)
                t.add(keys, "weight_norm", col(r, "weight_norm"), prow, comparable=comparable, note=note)
                t.add(keys, "nat_acc", col(r, "test_acc"), prow, comparable=comparable, note=note)
                t.add(keys, "autoattack", col(r, "aa_acc"), prow, comparable=comparable, note=note)
            if sel == "val" and set(methods(g)) >= {"fixed", "awd"}:
                best = {m: best_with_seeds(inp, g[g["method"] == m].iloc[0]) for m in ("fixed", "awd")}
                add_differences(t, {"dataset": label, "selection": sel_label, "λ_wd / DoG": "—"}, best["awd"],
                                best["fixed"], {"weight_norm": "weight_norm", "nat_acc": "test_acc",
                                                "autoattack": "aa_acc"})
    t.notes.append("Two selections of each method's best value: by val PGD-20 robust accuracy (ours: honest, and "
                   "the value whose extra seeds (`best_seeds`) were trained, so n counts seeds), and by test "
                   "AutoAttack accuracy (the paper's reading of Fig. 3: chosen on the numbers it reports, so "
                   "optimistic; one run). Nat acc is clean test accuracy; AutoAttack runs on the first "
                   "`autoattack.n_test` test examples (all when null). Paper: WRN28-10, PGD-7, Table 3.")
    return t


def adversarial_runs_of(inp: Inputs, dataset: str, method: str, value: float) -> pd.DataFrame:
    """Every adversarial run (sweep run and extra seeds) of one value."""
    df = inp.suite_runs("adversarial")
    return df[(df["dataset"] == dataset) & (df["method"] == method) & np.isclose(df["value"].astype(float), value)]


def variant_rows(inp: Inputs) -> list[tuple[pd.Series, str, pd.DataFrame, list[float]]]:
    """One (run, note, runs, values) per Table 4 row: a re-tuned row (several values) at its value of best mean val
    PGD-20 over its seeds (ties: the smaller value); `runs`: that value's runs, every seed (a row from the sweep: the
    sweep's runs of the value, its extra seeds included, and the row's own seeds, each once); `values`: the row's."""
    var = inp.suite_runs("variants")
    out: list[tuple[pd.Series, str, pd.DataFrame, list[float]]] = []
    if var.empty:
        return out
    for (ds, _, _name), g in var.groupby(["dataset", "study", "name"], sort=True):
        score = g.assign(_s=col(g, "val_robust_acc")).groupby("value")["_s"].mean().fillna(-math.inf)
        value = float(sorted(score.items(), key=lambda kv: (-kv[1], kv[0]))[0][0])
        own = g[np.isclose(g["value"].astype(float), value)].sort_values("key")
        row = own.iloc[0]
        from_sweep = bool(row.get("from_sweep", False))
        runs = pd.concat([adversarial_runs_of(inp, str(ds), row["method"], value), own]).drop_duplicates("key") \
            if from_sweep else own
        values = sorted({float(v) for v in g["value"]})
        if len(values) > 1:
            note = f"re-tuned over {', '.join(f'{v:.3g}' for v in values)}: best by mean val PGD-20"
        elif from_sweep:
            more = len(runs) - 1
            note = "Table 3's sweep run itself" + (f" and {more} more seed{'s' if more > 1 else ''} of it" if more else "") \
                + " (no run of its own)"
        else:
            note = ""
        out.append((row, note, runs, values))
    return out


def table4(inp: Inputs) -> Table:
    t = Table("T4", "Variants (ASAM, AdaDecay) beside the SGD runs of the sweep, adversarially trained",
              ["dataset", "run", "method", "optimizer", "λ_wd / DoG", "epochs"], missing=missing_reason(inp, "variants"))
    if t.missing:
        return t
    rows = sorted(variant_rows(inp), key=lambda x: (str(x[0]["dataset"]), method_key(x[0]["method"]),
                                                    str(x[0]["optimizer"]), str(x[0]["name"])))
    for r, extra, runs, _ in rows:
        ds = str(r["dataset"])
        pds, comparable = paper.reference_dataset(ds, paper.datasets_of(paper.T4))
        prow = paper.closest_by_value([p for p in paper.T4 if p["dataset"] == pds], float(r["value"]),
                                      method=r["method"], optimizer=r["optimizer"])
        note = ref_note(pds, comparable, "; ".join(x for x in (
            f"paper row: {prow['name']}, {prow['epochs']} epochs" if prow else "", extra) if x))
        keys = {"dataset": ds, "run": str(r["name"]), "method": r["method"], "optimizer": r["optimizer"],
                "λ_wd / DoG": f"{float(r['value']):.4g}", "epochs": "—" if pd.isna(r.get("epochs")) else int(r["epochs"])}
        t.add(keys, "val_robust_acc", list(col(runs, "val_robust_acc").dropna()), note=note)
        t.add(keys, "nat_acc", list(col(runs, "test_acc").dropna()), prow, comparable=comparable and prow is not None,
              note=note)
        t.add(keys, "autoattack", list(col(runs, "aa_acc").dropna()), prow,
              comparable=comparable and prow is not None, note=note)
    for p in paper.T4:
        if p["method"] == "other":
            keys = {"dataset": p["dataset"], "run": p["name"], "method": "—", "optimizer": p["optimizer"],
                    "λ_wd / DoG": "—", "epochs": p["epochs"]}
            note = f"paper-only baseline ({p['aug']}, TRADES, SWA)"
            t.add(keys, "nat_acc", [], p, note=note)
            t.add(keys, "autoattack", [], p, note=note)
    t.notes.append("Paper rows are matched by method, optimizer and the nearest hyper-parameter. Paper: CIFAR-100, "
                   "WRN28-10 (Table 4). Its SGD rows are Table 3's runs; its starred rows were re-tuned (\"another "
                   "round of hyper-parameter search\"): here a small grid, the best by val PGD-20.")
    return t


def table5(inp: Inputs) -> Table:
    t = Table("T5", "Under-fitting: train and test accuracy of AWD vs fixed λ_wd",
              ["dataset", "method", "λ_wd / DoG", "lr"], missing=missing_reason(inp, "underfit"))
    if t.missing:
        return t
    for label, ds, g in study_groups(inp.suite_runs("underfit")):
        pds, comparable = paper.reference_dataset(ds, paper.datasets_of(paper.T5))
        for m in methods(g):
            r = g[g["method"] == m]
            prow = paper.lookup(paper.T5, dataset=pds, method=m)
            if prow:
                prow = {**prow, "unfit": 100.0 - prow["train_acc"]}
            note = ref_note(pds, comparable, f"paper {hyper_name(m)}={prow['value']:g}" if prow else "")
            # The underfit stage re-measures train accuracy without augmentation; that is what "fits" means here.
            train = [inp.unfit_train_acc.get(k, a) for k, a in zip(r["key"], col(r, "train_acc"))]
            keys = {"dataset": label, "method": m, "λ_wd / DoG": fmt_hyper(r["value"]), "lr": fmt_hyper(r["lr"])}
            t.add(keys, "weight_norm", col(r, "weight_norm"), prow, comparable=comparable, note=note)
            t.add(keys, "test_acc", col(r, "test_acc"), prow, comparable=comparable, note=note)
            t.add(keys, "train_acc", train, prow, comparable=comparable, note=note)
            t.add(keys, "unfit", [100.0 - a for a in train], prow, comparable=comparable, note=note)
    t.notes.append("Paper: CIFAR-100, ResNet50 + ASAM, lr 0.01 (Table 5).")
    return t


def lr_groups(df: pd.DataFrame):
    """(dataset, lr, method, rows) of the lr-sensitivity runs, sorted."""
    if df.empty:
        return []
    out = []
    for (ds, lr, m), g in df.groupby(["dataset", "lr", "method"], sort=True):
        out.append((str(ds), float(lr), m, g))
    return sorted(out, key=lambda x: (x[0], x[1], method_key(x[2])))


def table6(inp: Inputs) -> Table:
    t = Table("T6", "Global L1 pruning: test accuracy after pruning, per lr and method (mean ± std over seeds)",
              ["dataset", "lr", "method", "λ_wd / DoG", "pruned"], missing=missing_reason(inp, "lr_sensitivity"))
    if t.missing:
        return t
    pr = inp.prune[inp.prune["suite"] == "lr_sensitivity"] if len(inp.prune) else inp.prune
    if pr.empty:
        t.missing = "No pruning results in artifacts/prune/results.json (has the prune stage run?)."
        return t
    for ds, lr, m, g in lr_groups(pr):
        pds, comparable = paper.reference_dataset(ds, paper.datasets_of(paper.T6))
        for amount, a in g.groupby("amount", sort=True):
            prow = paper.lookup(paper.T6, dataset=pds, lr=lr, method=m, amount=float(amount))
            note = ref_note(pds, comparable, "" if prow else "paper has no such lr")
            keys = {"dataset": ds, "lr": f"{lr:g}", "method": m, "λ_wd / DoG": fmt_hyper(a["value"]),
                    "pruned": "Nat" if amount == 0 else f"{amount * 100:.0f}%"}
            t.add(keys, "acc", a["acc"], prow, comparable=comparable, note=note, paper_std_field="acc_std")
    t.notes.append("Paper: WRN28-10, λ_wd=0.0005 vs DoG=0.018 (CIFAR-10) / 0.016 (CIFAR-100), Table 6.")
    return t


def table_f12(inp: Inputs) -> Table:
    t = Table("F12", "‖W‖₂ per learning rate and method (mean ± std over seeds)",
              ["dataset", "lr", "method", "λ_wd / DoG"], missing=missing_reason(inp, "lr_sensitivity"))
    if t.missing:
        return t
    for ds, lr, m, g in lr_groups(inp.suite_runs("lr_sensitivity")):
        pds, comparable = paper.reference_dataset(ds, paper.datasets_of(paper.F12))
        prow = paper.lookup(paper.F12, dataset=pds, lr=lr, method=m)
        note = ref_note(pds, comparable, "" if prow else "paper has no such lr")
        keys = {"dataset": ds, "lr": f"{lr:g}", "method": m, "λ_wd / DoG": fmt_hyper(g["value"])}
        t.add(keys, "weight_norm", col(g, "weight_norm"), prow, comparable=comparable, note=note)
    t.notes.append("The paper's Figure 12 does not name its dataset; its lr=0.1 norms match Table 2's CIFAR-100 "
                   "row, so it is compared as CIFAR-100.")
    return t


SUITE_OF = {"T2": "natural", "T3": "adversarial", "T4": "variants", "T5": "underfit", "T6": "lr_sensitivity",
            "F12": "lr_sensitivity"}


def all_tables(inp: Inputs) -> dict[str, Table]:
    tables = {t.id: t for t in (table2(inp), table3(inp), table4(inp), table5(inp), table6(inp), table_f12(inp))}
    for tid, t in tables.items():
        if not t.missing:
            plugin_note(t, inp.suite_runs(SUITE_OF[tid]))
    return tables


def lr_curve(inp: Inputs, pruned_amount: float | None = None) -> pd.DataFrame:
    """Test accuracy (or accuracy after pruning `pruned_amount`) per dataset, lr, method: mean, std, n."""
    src = inp.suite_runs("lr_sensitivity")
    metric = "test_acc"
    if pruned_amount is not None:
        pr = inp.prune[inp.prune["suite"] == "lr_sensitivity"] if len(inp.prune) else inp.prune
        src = pr[np.isclose(pr["amount"].astype(float), pruned_amount)] if len(pr) else pr
        metric = "acc"
    rows = []
    for ds, lr, m, g in lr_groups(src):
        mean, std, n = stats(col(g, metric))
        rows.append({"dataset": ds, "lr": lr, "method": m, "mean": mean, "std": std, "n": n})
    return pd.DataFrame(rows, columns=["dataset", "lr", "method", "mean", "std", "n"])
