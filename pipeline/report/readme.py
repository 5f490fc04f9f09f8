"""results/README.md (the report, in the paper's order) and the nested metrics behind results/metrics.json (its keys:
pipeline/report/metric_keys.py)."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from pipeline.report import departures, paper
from pipeline.report.claims import RULE, all_claims, family, family_note
from pipeline.report.claims import markdown as claims_markdown
from pipeline.report.figure_io import FigureResult
from pipeline.report.inputs import Inputs
from pipeline.report.paper_tables import PaperTable
from pipeline.report.table_format import Table
from pipeline.report.tables import SELECTIONS, adversarial_best, best_with_seeds, col, lr_curve

F = paper.FACTS

# (id, kind, caption, the paper's reference) in the paper's order; the appendix starts at F7.
SECTIONS = [
    ("F1", "plot", "Validation accuracy over the learning-rate × λ_wd grid of each grid study, and beside it the "
                   "AWD grid over learning rate × DoG where the study has one (best cell starred).",
     "Fig. 1: WRN28-10 + SGD on CIFAR-10/100 and ResNet50 + ASAM on CIFAR-100; the best cell lies on a diagonal "
     f"(lr={F['fig1_best_lr']:g}, λ_wd={F['fig1_best_wd']:g} for WRN28-10)."),
    ("T2", "table", "Natural training: fixed λ_wd vs AWD run with the DoG estimated from the fixed-λ run.",
     "Table 2: similar accuracy, much smaller ‖W‖₂ and smaller total loss (eq. 1) with AWD."),
    ("F2", "plot", "Running mean of DoG over the fixed-λ run's iterations, the estimate (dashed) at the plateau "
                   "epoch (dotted) of the per-epoch train loss (log scale); the shaded span is the window the "
                   "plateau rule checked (the loss stays within rel_tol of its floor from there on).",
     f"Fig. 2: CIFAR-100, DoG={F['fig2_dog']} at plateau epoch {F['fig2_plateau_epoch']}."),
    ("F3", "plot", "AutoAttack robust test accuracy of every adversarially trained λ_wd and DoG; the black star is "
                   "each method's best by val PGD-20 robust accuracy (ours), the red ring its best by test AutoAttack "
                   "(the paper's reading).",
     f"Fig. 3: AWD beats fixed λ_wd by {F['fig3_margin_cifar10']} (CIFAR-10) and {F['fig3_margin_cifar100']} "
     "(CIFAR-100) AutoAttack points."),
    ("T3", "table", "The best of each method, selected by val PGD-20 (ours) and by test AutoAttack (the paper's): "
                    "‖W‖₂, clean test accuracy and AutoAttack accuracy.",
     "Table 3: AWD has higher robust and clean accuracy and a ~4-5× smaller ‖W‖₂."),
    ("T4", "table", "Optimizer and regulariser variants (ASAM, AdaDecay) beside the SGD best runs.",
     f"Table 4 (CIFAR-100): AWD + ASAM reaches {F['awd_asam_cifar100_aa']:.2f} AA vs the "
     f"{F['sota_cifar100_aa']:.2f} state of the art without extra data."),
    ("F4", "plot", "Test accuracy of clean-trained vs noisy-label-trained models per hyper-parameter and noise rate.",
     f"Fig. 4 (CIFAR-100, ResNet34): at 20% noise AWD keeps ~{F['fig4_noise20_gain']:g} points more than a fixed "
     "λ_wd of similar clean accuracy."),
    ("F5", "plot", "Test accuracy vs learning rate (mean ± std over seeds) and after 70% global L1 pruning.",
     "Fig. 5 (CIFAR-100): AWD is less sensitive to the learning rate and to pruning."),
    ("T5", "table", "Under-fitting: AWD fits fewer training examples at the same test accuracy.",
     f"Table 5 (CIFAR-100, ResNet50 + ASAM): AWD leaves {F['t5_unfit_gap']}% more of the training set unfit."),
    ("F6", "plot", "Training examples the AWD model does not fit (title: dataset label / prediction).",
     "Fig. 6: many unfit CIFAR-100 examples have wrong or ambiguous labels."),
    ("F7", "plot", "Alternating 1D searches on the same grid: lr at the initial λ_wd, λ_wd at that lr, then the "
                   "diagonal (constant lr·λ_wd) through their result.",
     f"Fig. 7 (CIFAR-10): 1D searches stop at λ_wd={F['fig7_1d_search_wd']:g}, lr={F['fig7_1d_search_lr']:g}; "
     "the diagonal finds the better cell."),
    ("F8", "plot", "Noisy labels, appendix dataset: clean-trained vs noisy-trained test accuracy.",
     f"Fig. 8 (CIFAR-10; its caption says CIFAR-100, Appendix E.1 says CIFAR-10): ~{F['noise20_gain_cifar10']:g} "
     "points for AWD at 20% noise."),
    ("F9", "plot", "The grid search for the ResNet32 study.", "Fig. 9: ResNet32 on CIFAR-10/100."),
    ("F10", "plot", "All stored unfit training examples of the AWD model.",
     f"Fig. 10: {F['fig10_unfit_fraction']}% of CIFAR-100 training examples are not fit by AWD."),
    ("F11", "plot", "Test accuracy vs learning rate and after 70% pruning, every dataset.",
     f"Fig. 11: at lr=1.0 fixed λ_wd loses {F['fig11_lr1_drop_cifar100']} (CIFAR-100) and "
     f"{F['fig11_lr1_drop_cifar10']} (CIFAR-10) points vs AWD."),
    ("F12", "table", "‖W‖₂ per learning rate and method.", "Fig. 12 (a table): AWD's norms are smaller for lr ≤ 0.1."),
    ("T6", "table", "Accuracy after global L1 pruning of 40-90% of the weights, per lr and method.",
     "Table 6: AWD models are more robust to pruning across learning rates."),
]
APPENDIX_START = "F7"


def _r(x):
    """Six significant digits: enough for any reported number, few enough that float noise cannot churn diffs."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return None
    return float(f"{float(x):.6g}")


def _nest(d: dict, path: list, value) -> None:
    for k in path[:-1]:
        d = d.setdefault(str(k), {})
    d[str(path[-1])] = value


def _table_metrics(t: Table, keys: list[str]) -> dict:
    out: dict = {}
    for r in t.rows:
        if r["n"]:
            _nest(out, [r[k] for k in keys] + [r["metric"]], _r(r["ours"]))
    return out


def metrics(inp: Inputs, tables: dict[str, Table], claims=None) -> dict:
    m: dict = {}
    for tid, keys in (("T2", ["dataset", "method"]), ("T3", ["dataset", "selection", "method"]),
                      ("T4", ["dataset", "run"]), ("T5", ["dataset", "method"]), ("F12", ["dataset", "method", "lr"])):
        if not tables[tid].missing:
            m[tid] = _table_metrics(tables[tid], keys)
    for e in sorted(inp.dog_estimates, key=lambda e: (str(e["dataset"]), int(e.get("study", 0)),
                                                      int(e.get("seed", 0)))):
        _nest(m, ["dog_estimate", e["dataset"], f"seed{e.get('seed', 0)}"],
              {"dog": _r(e["dog"]), "plateau_epoch_1based": int(e["plateau_epoch"]) + 1})
        if "pooled_dog" in e:
            _nest(m, ["dog_estimate", e["dataset"], "pooled"], _r(e["pooled_dog"]))
    for sel in SELECTIONS:
        best = adversarial_best(inp, sel)
        for ds, g in (best.groupby("dataset", sort=True) if len(best) else []):
            # the val-selected value's mean over its seeds; the test-selected run alone (it was chosen by this number)
            aa = {mt: _r(pd.to_numeric((best_with_seeds(inp, r.iloc[0]) if sel == "val" else r)["aa_acc"],
                                       errors="coerce").mean()) for mt, r in g.groupby("method") if "aa_acc" in r}
            for mt, v in aa.items():
                _nest(m, ["best_autoattack", f"by_{sel}", ds, mt], v)
            if aa.get("awd") is not None and aa.get("fixed") is not None:
                _nest(m, ["best_autoattack", f"by_{sel}", ds, "awd_minus_fixed"], _r(aa["awd"] - aa["fixed"]))
    # Every grid cell (fixed λ_wd and AWD DoG) and noisy-label cell, so `dvc metrics diff` shows exactly the cells
    # an edit changed.
    grid, noisy = inp.suite_runs("grid"), inp.suite_runs("noisy")
    if len(grid):  # a cell's mean over its seeds
        grid = grid.assign(val_acc=col(grid, "val_acc")).groupby(
            ["dataset", "name", "method", "lr", "value"], sort=True, as_index=False)["val_acc"].mean()
    for _, r in grid.iterrows():
        cell = f"lr={r['lr']:g},{'dog' if r['method'] == 'awd' else 'wd'}={r['value']:g}"
        _nest(m, ["grid", r["dataset"], r["name"], str(r["method"]), cell, "val_acc"], _r(r.get("val_acc")))
    for _, r in (noisy.sort_values(["dataset", "rate", "method", "value"]) if len(noisy) else noisy).iterrows():
        _nest(m, ["noisy", r["dataset"], f"rate={r['rate']:g}", f"{r['method']}={r['value']:g}", "test_acc"],
              _r(r.get("test_acc")))  # None where every run of the cell diverged or failed
    if inp.in_params("lr_sensitivity"):
        for name, frame in (("test_acc", lr_curve(inp)), ("pruned_70_acc", lr_curve(inp, 0.7))):
            for _, r in frame.iterrows():
                _nest(m, ["lr_sensitivity", r["dataset"], r["method"], f"lr={r['lr']:g}", name], _r(r["mean"]))
    claims = claims if claims is not None else all_claims(inp)
    for c in claims:
        _nest(m, ["claims", c.id, c.dataset], c.metrics())
    if claims:
        m["claims_family"] = family(claims)
    env = environment(inp)
    if env:
        m["environment"] = env
    return m


def environment(inp: Inputs) -> dict:
    """The distinct hardware and software the training runs recorded (several when jobs ran on several hosts)."""
    out = {}
    for k in ("hardware", "software"):
        if k in inp.runs.columns:
            out[k] = sorted({str(v) for v in inp.runs[k].dropna()})
    return {k: v for k, v in out.items() if v}


def _datasets(inp: Inputs) -> list[str]:
    found = set(inp.runs["dataset"].dropna().astype(str)) if len(inp.runs) else set()
    for studies in inp.suites.values():
        found |= {str(s["dataset"]) for s in studies if isinstance(s, dict) and "dataset" in s}
    return sorted(found)


def _ours_lines(sid: str, m: dict) -> list[str]:
    """One-line comparisons with the paper's scalar facts, where this run has the number."""
    lines = []
    if sid == "F2":
        for ds, seeds in sorted(m.get("dog_estimate", {}).items()):
            est = ", ".join(f"{v['dog']:.4g} (epoch {v['plateau_epoch_1based']})"
                            for k, v in sorted(seeds.items()) if k != "pooled")
            pooled = f", pooled (mean) {seeds['pooled']:.4g}" if seeds.get("pooled") is not None else ""
            lines.append(f"Ours, {ds}: DoG estimate per seed {est}{pooled}; paper (CIFAR-100): {F['fig2_dog']} "
                         f"(epoch {F['fig2_plateau_epoch']}).")
    if sid == "F3":
        for sel, (sel_label, _) in SELECTIONS.items():
            for ds, v in sorted(m.get("best_autoattack", {}).get(f"by_{sel}", {}).items()):
                if "awd_minus_fixed" in v:
                    ref = F.get(f"fig3_margin_{ds}")
                    lines.append(f"Ours, {ds}, selected by {sel_label}: best AWD − best fixed AutoAttack = "
                                 f"{v['awd_minus_fixed']:+.2f} points"
                                 + (f" (paper {ref:+.2f})." if ref is not None else
                                    f" (paper: +{F['fig3_margin_cifar10']} CIFAR-10, +{F['fig3_margin_cifar100']} "
                                    "CIFAR-100; datasets differ)."))
    return lines


def _environment_lines(inp: Inputs) -> list[str]:
    """Software and hardware behind the results (recorded per store entry; versions are not part of keys)."""
    if not inp.environments:
        return []
    lines = ["Computed with:"]
    for env, n in inp.environments:
        hw = f"CUDA {env['cuda']}, {env['gpu']}" if env.get("gpu") else "CPU"
        lines.append(f"- {n} results: Python {env.get('python')}, torch {env.get('torch')}, torchvision "
                     f"{env.get('torchvision')}, pyautoattack {env.get('pyautoattack')}, "
                     f"numpy {env.get('numpy')}; {hw}")
    return lines + [""]


def readme(inp: Inputs, tables: dict[str, PaperTable], figures: dict[str, FigureResult], params_name: str,
           m: dict, claims=None) -> str:
    datasets = _datasets(inp)
    only_digits = datasets == ["digits"]
    env = m.get("environment", {})
    claims = claims if claims is not None else all_claims(inp)
    sizes = {}
    if len(inp.runs) and "n_test" in inp.runs.columns:
        for ds, n in inp.runs.groupby("dataset")["n_test"].max().items():
            if n == n:
                sizes[str(ds)] = int(n)
    head = [
        "# awd-bench results: *Adaptive Weight Decay* (Ghiasi, Shafahi, Ardekani)", "",
        departures.scale_line(Path(params_name), sizes), "",
        "## The paper's claims in this run", "",
        claims_markdown(claims),
        family_note(claims), "",
        RULE, "",
        departures.section(Path(params_name)),
        "Ran on: " + ("; ".join(f"{k}: {', '.join(v)}" for k, v in env.items()) or "not recorded") + ".", "",
        f"Generated by `python -m pipeline.aggregate` from params file `{params_name}`; "
        f"dataset(s): {', '.join(datasets) if datasets else 'none'}.", "",
        ("The paper's numbers are shown for reference beside ours, with no difference computed (the datasets "
         "differ)." if only_digits else
         "Differences (Δ) are computed only where our dataset is the paper's (CIFAR-10 / CIFAR-100)."), "",
        "Tables are in the paper's shape (its methods as rows): our mean ± std over runs beside the paper's value; "
        "accuracies in %. Each is also in `paper/` as Markdown, CSV and LaTeX (booktabs); every statistic per row "
        "(95 % interval, n, Δ = ours − paper) is in `tables/*.csv`. Figures are `plots/*.pdf` (vector) and "
        "`plots/*.png`, their data `plots/*.csv`. Each claim's verdict and estimate are in `headline.json` (what `dvc "
        "metrics show` prints), every number (the per-seed values behind each verdict included) in `metrics.json`.",
        "",
    ] + _environment_lines(inp)
    body = []
    for sid, kind, caption, ref in SECTIONS:
        if sid == APPENDIX_START:
            body += ["## Appendix", ""]
        body += [f"### {sid}", "", caption, "", f"*Paper:* {ref}", ""]
        body += [line + "\n" for line in _ours_lines(sid, m)]
        if kind == "table":
            t = tables[sid]
            body.append(t.to_markdown(heading=False))
            if not t.missing:
                body.append(f"[{sid}.md](paper/{sid}.md) · [{sid}.csv](paper/{sid}.csv) · [{sid}.tex](paper/{sid}.tex)"
                            f" · every statistic: [tables/{sid}.csv](tables/{sid}.csv)\n")
        else:
            f = figures[sid]
            if f.missing:
                body.append(f"_{f.missing}_\n")
            elif f.same_as:
                body.append(f"_On this configuration {sid} would repeat [{f.same_as}](#{f.same_as.lower()}) (the "
                            f"same runs, identical plot data): it is drawn once, there. Plot data: "
                            f"[{sid}.csv](plots/{sid}.csv)._\n")
            else:
                if f.note:
                    body.append(f"_This configuration: {f.note}._\n")
                body.append(f"![{sid}](plots/{sid}.png)\n\n[{sid}.pdf](plots/{sid}.pdf) (vector) · "
                            f"[plot data: {sid}.csv](plots/{sid}.csv)\n")
    return "\n".join(head + body).rstrip() + "\n"
