"""Figures 2, 3, 4/8 and 5/11 (the grids are in heatmaps.py, the image grids in unfit_images.py)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from pipeline.report import paper
from pipeline.report.figure_io import FigureResult, new_figure, value_ticks, write
from pipeline.report.inputs import Inputs
from pipeline.report.methods import style
from pipeline.report.tables import (
    adversarial_best,
    adversarial_sweep,
    col,
    hyper_name,
    lr_curve,
    method_key,
    methods,
    missing_reason,
    study_groups,
)

MAX_TRACE_POINTS = 2000  # per series in the committed CSV; a paper-scale trace has ~10^5 iterations


def _stride(n: int) -> int:
    return max(1, math.ceil(n / MAX_TRACE_POINTS))


def figure2(inp: Inputs, out_dir: Path) -> FigureResult:
    reason = missing_reason(inp, "natural")
    if reason:
        return FigureResult("F2", reason)
    ests = sorted(inp.dog_estimates, key=lambda e: (str(e["dataset"]), int(e.get("study", 0)), int(e.get("seed", 0))))
    traced = [(e, tr) for e in ests if (tr := inp.trace(e["from_key"])) is not None]
    if not traced:
        return FigureResult("F2", "No DoG traces in artifacts/train/traces (natural suite's fixed-λ runs).")
    studies = sorted({(str(e["dataset"]), int(e.get("study", 0))) for e, _ in traced})
    fig, axes = new_figure(len(studies), 2, width=4.8, height=3.2)
    rows = []
    for (ds, st), (ax_dog, ax_loss) in zip(studies, axes):
        mine = [x for x in traced if (str(x[0]["dataset"]), int(x[0].get("study", 0))) == (ds, st)]
        for i, (e, tr) in enumerate(mine):
            color = f"C{i}"
            it, run_mean, loss = tr["iteration"], tr["dog_running_mean"], tr["epoch_train_loss"]
            epochs = np.arange(1, len(loss) + 1)
            ipe = float(tr["iters_per_epoch"]) if "iters_per_epoch" in tr else \
                (it.max() + 1) / max(len(loss), 1) if it.size else 1.0
            seed = e.get("seed", 0)
            # The estimate averages DoG up to the END of the plateau epoch (a 0-based index): mark it there.
            plateau = int(e["plateau_epoch"]) + 1
            ax_dog.plot(it, run_mean, color=color, lw=1, label=f"seed {seed}: DoG={e['dog']:.4g}")
            ax_dog.axhline(e["dog"], color=color, ls="--", lw=0.8)
            ax_dog.axvline(plateau * ipe, color=color, ls=":", lw=0.8)
            ax_loss.plot(epochs, loss, color=color, lw=1, label=f"seed {seed}: plateau at epoch {plateau}")
            ax_loss.axvline(plateau, color=color, ls=":", lw=0.8)
            window = e.get("window")
            if window:  # the epochs after the plateau epoch whose losses the rule required to stay near the floor
                ax_loss.axvspan(plateau, min(plateau + int(window), len(loss)), color=color, alpha=0.12)
            s = _stride(len(it))
            rows += [{"dataset": ds, "study": st, "seed": seed, "series": "dog_running_mean", "x": x, "y": y}
                     for x, y in zip(it[::s], run_mean[::s])]
            rows += [{"dataset": ds, "study": st, "seed": seed, "series": "epoch_train_loss", "x": x, "y": y}
                     for x, y in zip(epochs, loss)]
            rows.append({"dataset": ds, "study": st, "seed": seed, "series": "estimate", "x": plateau, "y": e["dog"]})
            if e.get("window"):
                rows.append({"dataset": ds, "study": st, "seed": seed, "series": "window_end",
                             "x": min(plateau + int(e["window"]), len(loss)), "y": float("nan")})
        if ds == paper.FACTS["fig2_dataset"]:
            ax_dog.axhline(paper.FACTS["fig2_dog"], color="k", ls="-.", lw=0.8,
                           label=f"paper DoG={paper.FACTS['fig2_dog']} (epoch {paper.FACTS['fig2_plateau_epoch']})")
        ax_dog.set_xlabel("iteration")
        ax_dog.set_ylabel("running mean of DoG")
        ax_dog.set_title(f"(a) {ds}: DoG running mean, estimate (--), plateau (:)")
        ax_dog.legend(fontsize=7, loc="lower right")
        ax_loss.set_yscale("log")
        ax_loss.set_xlabel("epoch")
        ax_loss.set_ylabel("train loss")
        ax_loss.set_title(f"(b) {ds}: train cross-entropy per epoch")
        ax_loss.legend(fontsize=7, loc="upper right")
    write(fig, pd.DataFrame(rows, columns=["dataset", "study", "seed", "series", "x", "y"]), out_dir, "F2")
    return FigureResult("F2")


def figure3(inp: Inputs, out_dir: Path) -> FigureResult:
    reason = missing_reason(inp, "adversarial")
    if reason:
        return FigureResult("F3", reason)
    best_keys = set(adversarial_best(inp, "val")["key"])
    test_keys = set(adversarial_best(inp, "test")["key"])
    groups = study_groups(adversarial_sweep(inp))
    # one panel per method of the sweep (fixed and AWD, then any baseline the params add), one colour each
    panels = [["fixed", "awd"] + [m for m in methods(g) if m not in ("fixed", "awd")] for _, _, g in groups]
    # One y scale per row (the methods' robust accuracies are compared), one legend for the figure.
    fig, axes = new_figure(len(groups), max(len(p) for p in panels), width=3.4, height=2.9, sharey="row")
    rows, paper_line = [], False
    for (label, ds, g), row, panel in zip(groups, axes, panels):
        pds, comparable = paper.reference_dataset(ds, paper.datasets_of(paper.T3))
        for ax, m in zip(row, panel):
            st = style(m)
            r = g[g["method"] == m].assign(aa=lambda d: col(d, "aa_acc"), val=lambda d: col(d, "val_robust_acc"))
            r = r.sort_values("value")
            ax.plot(r["value"], r["aa"], f"{st.marker}-", color=st.color)
            ax.plot(r["value"], r["val"], "s--", color=st.color, alpha=0.4, ms=4)
            sel = r[r["key"].isin(best_keys)]
            ax.plot(sel["value"], sel["aa"], "*", color="k", ms=13, zorder=3)
            tsel = r[r["key"].isin(test_keys)]
            ax.plot(tsel["value"], tsel["aa"], "o", mfc="none", mec="r", ms=15, mew=1.5, zorder=4)
            prow = paper.lookup(paper.T3, dataset=pds, method=m)
            if prow and comparable:
                ax.axhline(prow["autoattack"], color="k", ls=":", lw=0.8)
                paper_line = True
            ax.set_xscale("log" if st.sweep == "log" else "linear")
            if len(r):
                value_ticks(ax, r["value"], rotate=len(r) > 3)
            ax.set_xlabel(hyper_name(m))
            ax.set_ylabel("robust acc (%)")
            ax.set_title(f"{label}: {st.label}")
            rows += [{"dataset": ds, "study": int(x["study"]), "method": m, "value": x["value"], "autoattack": x["aa"],
                      "val_robust_acc": x["val"], "selected": int(x["key"] in best_keys),
                      "selected_by_test": int(x["key"] in test_keys)} for _, x in r.iterrows()]
    handles = [Line2D([], [], color="grey", marker="o", label="AutoAttack (test)"),
               Line2D([], [], color="grey", ls="--", marker="s", ms=4, alpha=0.5, label="PGD-20 (val)"),
               Line2D([], [], color="k", marker="*", ms=11, ls="", label="best by val PGD-20 (ours)"),
               Line2D([], [], color="r", marker="o", mfc="none", ms=11, ls="", label="best by test AA (paper's)")]
    if paper_line:
        handles.append(Line2D([], [], color="k", ls=":", label="paper's best"))
    ncol = min(len(handles), 3)
    fig.tight_layout(rect=(0, 0.17 / len(groups) * -(-len(handles) // ncol) / 2, 1, 1))
    fig.legend(handles=handles, loc="lower center", ncol=ncol, frameon=False)
    write(fig, pd.DataFrame(rows, columns=["dataset", "study", "method", "value", "autoattack", "val_robust_acc",
                                           "selected", "selected_by_test"]), out_dir, "F3", tight=False)
    return FigureResult("F3")


def _pick_datasets(groups, dataset: str):
    """The paper's figure is about `dataset`; without it, show every study rather than nothing."""
    chosen = [g for g in groups if g[1] == dataset]
    if chosen:
        return chosen, ""
    return groups, f"no {dataset} study here; shows every study"


def noisy_bars(inp: Inputs, out_dir: Path, fid: str, dataset: str) -> FigureResult:
    reason = missing_reason(inp, "noisy")
    if reason:
        return FigureResult(fid, reason)
    groups, note = _pick_datasets(study_groups(inp.suite_runs("noisy")), dataset)
    rates = sorted({float(x) for _, _, g in groups for x in g["rate"] if float(x) > 0})
    n_hyper = max(len({(m, v) for m, v in zip(g["method"], g["value"])}) for _, _, g in groups)
    fig, axes = new_figure(len(groups), max(len(rates), 1), width=max(3.2, 1.0 + 0.5 * n_hyper), height=3.0,
                           sharey=True)
    rows, shown = [], set()
    for (label, ds, g), row in zip(groups, axes):
        g = g.assign(test=col(g, "test_acc"), rate=g["rate"].astype(float))
        hyper = sorted({(m, float(v)) for m, v in zip(g["method"], g["value"])}, key=lambda x: (method_key(x[0]), x[1]))
        shown |= {m for m, _ in hyper}
        clean = {h: a["test"].mean() for h, a in g[g["rate"] == 0].groupby(["method", "value"])}
        for ax, rate in zip(row, rates):
            noisy = {h: a["test"].mean() for h, a in g[g["rate"] == rate].groupby(["method", "value"])}
            x = np.arange(len(hyper))
            for j, (m, v) in enumerate(hyper):
                ax.bar(x[j] - 0.2, clean.get((m, v), np.nan), 0.4, color=style(m).color, alpha=0.4)
                ax.bar(x[j] + 0.2, noisy.get((m, v), np.nan), 0.4, color=style(m).color)
            ax.set_xticks(x, [f"{hyper_name(m)}\n{v:g}" for m, v in hyper], fontsize=7)
            ax.set_ylabel("test acc (%)")
            ax.set_title(f"{label}: {rate:.0%} label noise")
        for (m, v, rate), a in g.groupby(["method", "value", "rate"], sort=True):
            rows.append({"dataset": ds, "method": m, "value": v, "rate": rate, "test_acc": a["test"].mean(),
                         "n": int(a["test"].notna().sum())})
    handles = [Patch(color="grey", alpha=0.4, label="trained on clean labels"),
               Patch(color="grey", label="trained on noisy labels")]
    handles += [Patch(color=style(m).color, label=style(m).label) for m in sorted(shown, key=method_key)]
    ncol = min(len(handles), 2)
    fig.tight_layout(rect=(0, 0.17 / len(groups) * -(-len(handles) // ncol) / 2, 1, 1))
    fig.legend(handles=handles, loc="lower center", ncol=ncol, frameon=False)
    data = pd.DataFrame(rows, columns=["dataset", "method", "value", "rate", "test_acc", "n"])
    data = data.sort_values(["dataset", "method", "value", "rate"], kind="mergesort").reset_index(drop=True)
    write(fig, data, out_dir, fid, tight=False)
    return FigureResult(fid, note=note)


def unfinished_lrs(inp: Inputs, dataset: str) -> dict:
    """lr -> "diverged" / "failed" for the lr_sensitivity lrs of `dataset` none of whose runs finished."""
    df = inp.suite_runs("lr_sensitivity")
    if df.empty or "status" not in df.columns:
        return {}
    df = df[df["dataset"] == dataset]
    status = df["status"].fillna("done")
    return {float(lr): sorted(set(g))[0] for lr, g in status.groupby(df["lr"]) if not (g == "done").any()}


def lr_figure(inp: Inputs, out_dir: Path, fid: str, dataset: str | None) -> FigureResult:
    """Test accuracy vs lr (mean ± std over seeds) and accuracy after 70% global L1 pruning."""
    reason = missing_reason(inp, "lr_sensitivity")
    if reason:
        return FigureResult(fid, reason)
    nat, pruned = lr_curve(inp), lr_curve(inp, pruned_amount=0.7)
    datasets = sorted(nat["dataset"].unique())
    note = ""
    if dataset is not None:
        if dataset in datasets:
            datasets = [dataset]
        else:
            note = f"no {dataset} study here; shows every study"
    fig, axes = new_figure(len(datasets), 2, width=3.6, height=2.9)
    parts = []
    for ds, row in zip(datasets, axes):
        pds, comparable = paper.reference_dataset(ds, paper.datasets_of(paper.T6))
        for ax, (panel, data, amount) in zip(row, (("test_acc", nat, 0.0), ("pruned_70", pruned, 0.7))):
            d = data[data["dataset"] == ds]
            for m in methods(d):
                c = d[d["method"] == m].sort_values("lr")
                st = style(m)
                ax.errorbar(c["lr"], c["mean"], yerr=c["std"].fillna(0), fmt=f"{st.marker}-", capsize=3,
                            color=st.color, label=st.label)
                if comparable:
                    p = sorted((r["lr"], r["acc"]) for r in paper.T6
                               if r["dataset"] == pds and r["method"] == m and math.isclose(r["amount"], amount))
                    ax.plot([a for a, _ in p], [b for _, b in p], ":", color=st.color, label=f"paper {m}")
            parts.append(d.assign(panel=panel))
            for lr, status in unfinished_lrs(inp, ds).items():  # a collapsed lr: a red ✕ on the axis, not a gap
                ax.plot([lr], [0.03], "x", color="red", ms=9, transform=ax.get_xaxis_transform())
                ax.annotate(status, (lr, 0.07), xycoords=("data", "axes fraction"), color="red", fontsize=7,
                            ha="center")
            ax.set_xscale("log")
            if len(d):
                value_ticks(ax, d["lr"])
            ax.set_xlabel("learning rate")
            ax.set_ylabel("test acc (%)")
            ax.set_title(f"{ds}: " + ("no pruning" if panel == "test_acc" else "after 70% L1 pruning"))
            if d.empty:
                ax.text(0.5, 0.5, "no results", transform=ax.transAxes, ha="center")
            else:
                ax.legend(fontsize=7)
    data = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    write(fig, data.reindex(columns=["dataset", "panel", "method", "lr", "mean", "std", "n"]), out_dir, fid)
    return FigureResult(fid, note=note)
