"""Figures 1, 7 and 9: the lr × λ_wd grid searches (and AWD's lr × DoG grid beside them, Fig. 1(c)), and the 1D
searches that miss the grid's optimum."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.colors import Normalize

from pipeline.report import paper
from pipeline.report.figure_io import FigureResult, new_figure, value_ticks, write
from pipeline.report.inputs import Inputs
from pipeline.report.methods import style
from pipeline.report.tables import col, methods, missing_reason


def grid_frame(inp: Inputs, method: str = "fixed") -> pd.DataFrame:
    """Mean val/test accuracy per (study, lr, wd) cell of every grid study; with another method (AWD, a plugin)
    that method's grid cells, its value (DoG, ...) in the `wd` column (the heat-map's y axis)."""
    df = inp.suite_runs("grid")
    cols = ["study", "name", "dataset", "model", "lr", "wd", "val_acc", "test_acc"]
    if df.empty:
        return pd.DataFrame(columns=cols)
    df = df[df["method"] == method]
    if method != "fixed":
        df = df.assign(wd=df["value"])
    if df.empty:
        return pd.DataFrame(columns=cols)
    status = df["status"].fillna("done").astype(str) if "status" in df.columns else "done"
    df = df.assign(val_acc=col(df, "val_acc"), test_acc=col(df, "test_acc"), status=status,
                   name=df["name"].fillna("grid").astype(str), model=df["model"].fillna("").astype(str))
    keys = ["study", "name", "dataset", "model", "lr", "wd"]
    out = df.groupby(keys, sort=True)[["val_acc", "test_acc"]].mean().reset_index()
    # a cell none of whose runs finished is marked as the paper marks collapsed cells, not left blank
    marks = df.groupby(keys, sort=True)["status"].agg(lambda s: "" if (s == "done").any() else sorted(s)[0])
    out["mark"] = marks.to_numpy()
    return out[cols + ["mark"]]


def is_resnet32(cells: pd.DataFrame) -> bool:
    return "resnet32" in " ".join(cells["model"].str.lower()) + " " + " ".join(cells["name"].str.lower())


def select_studies(grid: pd.DataFrame, fid: str) -> tuple[pd.DataFrame, str]:
    """F9 is the paper's ResNet32 grid; F1 the other grids. Without that split, both show every grid study."""
    studies = {s: g for s, g in grid.groupby("study", sort=True)}
    r32 = {s for s, g in studies.items() if is_resnet32(g)}
    want = r32 if fid == "F9" else set(studies) - r32
    if not want:
        return grid, "every grid study (no ResNet32 / non-ResNet32 split in this configuration)"
    return grid[grid["study"].isin(sorted(want))], ""


def _title(g: pd.DataFrame) -> str:
    return f"{g['name'].iloc[0]} ({g['dataset'].iloc[0]})"


def _heat(ax, g: pd.DataFrame, metric: str, norm: Normalize, ylabel: str = "λ_wd", title: str = ""):
    piv = (g.pivot_table(index="wd", columns="lr", values=metric, aggfunc="mean", dropna=False)
           .sort_index().sort_index(axis=1))
    im = ax.imshow(piv.to_numpy(float), origin="lower", cmap="viridis", aspect="auto", norm=norm)
    ax.set_xticks(range(piv.shape[1]), [f"{v:.2g}" for v in piv.columns])
    ax.set_yticks(range(piv.shape[0]), [f"{v:.2g}" for v in piv.index])
    ax.set_xlabel("learning rate")
    ax.set_ylabel(ylabel)
    vals = piv.to_numpy(float)
    best = np.unravel_index(np.nanargmax(vals), vals.shape) if np.isfinite(vals).any() else None
    marks = g.pivot_table(index="wd", columns="lr", values="mark", aggfunc="first").reindex_like(piv)
    if norm.vmin is None or norm.vmax is None:
        raise ValueError("a heatmap's colour scale needs both ends (color_scale sets them)")
    middle = (norm.vmin + norm.vmax) / 2  # the colour scale's, so a cell's text colour means the same in every panel
    for (i, j), v in np.ndenumerate(vals):
        mark = marks.iat[i, j] if isinstance(marks.iat[i, j], str) else ""
        if not math.isfinite(v) and mark:
            ax.text(j, i, "✕\n" + mark, ha="center", va="center", color="red", fontsize=7)
        elif math.isfinite(v):
            ax.text(j, i, f"{v:.1f}" + ("*" if (i, j) == best else ""), ha="center", va="center",
                    color="white" if v < middle else "black", fontsize=8)
    ax.set_title(_title(g) + title)
    return im


def color_scale(frames: list[pd.DataFrame], metric: str) -> Normalize:
    """One scale for every panel of a figure: the same colour is the same accuracy in each."""
    vals = pd.concat([pd.to_numeric(f[metric], errors="coerce") for f in frames], ignore_index=True).dropna()
    lo, hi = (float(vals.min()), float(vals.max())) if len(vals) else (0.0, 100.0)
    return Normalize(vmin=lo, vmax=hi if hi > lo else lo + 1.0)


def heatmaps(inp: Inputs, out_dir: Path, fid: str) -> FigureResult:
    reason = missing_reason(inp, "grid")
    if reason:
        return FigureResult(fid, reason)
    grid, note = select_studies(grid_frame(inp), fid)
    # beside each λ_wd grid, the lr × value grid of every other method the study sweeps (AWD's DoG: Fig. 1(c))
    others = {m: f[f["study"].isin(set(grid["study"]))] for m in methods(inp.suite_runs("grid")) if m != "fixed"
              for f in [grid_frame(inp, m)]}
    others.setdefault("awd", grid_frame(inp, "awd").iloc[0:0])
    panels = []
    for study, g in grid.groupby("study", sort=True):
        panels.append((g, "λ_wd", ""))
        for m, f in others.items():
            if (f["study"] == study).any():
                panels.append((f[f["study"] == study], style(m).param_label,
                               ": AWD" if m == "awd" else f": {style(m).name}"))
    fig, axes = new_figure(1, len(panels), width=3.6, height=3.2, layout="constrained")
    norm = color_scale([g for g, _, _ in panels], "val_acc")
    for ax, (g, ylabel, title) in zip(axes[0], panels):
        im = _heat(ax, g, "val_acc", norm, ylabel, title)
    fig.colorbar(im, ax=axes[0].tolist(), label="val acc (%)", shrink=0.9)
    data = pd.concat([grid.assign(method="fixed")] + [f.assign(method=m) for m, f in others.items()],
                     ignore_index=True)
    data = data.rename(columns={"wd": "wd_or_dog"})[["study", "name", "dataset", "model", "method", "lr",
                                                    "wd_or_dog", "val_acc", "test_acc"]]
    write(fig, data, out_dir, fid)
    return FigureResult(fid, note=note)


def one_d_searches(g: pd.DataFrame) -> pd.DataFrame:
    """Appendix C's procedure on one grid: search lr at the initial λ_wd guess, then λ_wd at that lr, then walk
    the diagonal (constant lr·λ_wd) through the result. Returns the cells of each search, tagged by panel."""
    wds = np.array(sorted(g["wd"].astype(float).unique()))
    # The paper's initial guess (λ_wd = 0.005, lr = 0.01): the grid value nearest it in log scale.
    wd0 = wds[np.argmin(np.abs(np.log(wds) - math.log(paper.FACTS["fig7_1d_search_wd"])))]
    a = g[np.isclose(g["wd"], wd0)].sort_values("lr")
    lr1 = float(a["lr"].iloc[int(np.nanargmax(a["val_acc"].to_numpy(float)))]) if a["val_acc"].notna().any() \
        else float(a["lr"].iloc[0])
    b = g[np.isclose(g["lr"], lr1)].sort_values("wd")
    wd1 = float(b["wd"].iloc[int(np.nanargmax(b["val_acc"].to_numpy(float)))]) if b["val_acc"].notna().any() \
        else float(b["wd"].iloc[0])
    prod = np.log(g["lr"].astype(float) * g["wd"].astype(float))
    c = g[np.isclose(prod, math.log(lr1 * wd1), atol=1e-6)].sort_values("lr")
    return pd.concat([a.assign(panel="lr_search"), b.assign(panel="wd_search"), c.assign(panel="diagonal")],
                     ignore_index=True)


def figure7(inp: Inputs, out_dir: Path) -> FigureResult:
    reason = missing_reason(inp, "grid")
    if reason:
        return FigureResult("F7", reason)
    grid, _ = select_studies(grid_frame(inp), "F1")
    studies = [g for _, g in grid.groupby("study", sort=True)]
    # One y scale per row: the three searches walk the same grid, so equal heights are equal accuracies.
    fig, axes = new_figure(len(studies), 3, width=3.2, height=2.8, sharey="row")
    parts = []
    for row, g in zip(axes, studies):
        s = one_d_searches(g)
        parts.append(s)
        for ax, (panel, xcol, title) in zip(row, (("lr_search", "lr", "(a) lr at λ_wd = {wd:.2g}"),
                                                   ("wd_search", "wd", "(b) λ_wd at lr = {lr:.2g}"),
                                                   ("diagonal", "lr", "(c) diagonal lr·λ_wd = {p:.2g}"))):
            p = s[s["panel"] == panel]
            ax.plot(p[xcol], p["val_acc"], "o-")
            ax.set_xscale("log")
            if len(p):
                value_ticks(ax, p[xcol])
            ax.set_xlabel("learning rate" if xcol == "lr" else "λ_wd")
            ax.set_ylabel("val acc (%)")
            ax.margins(x=0.15, y=0.2)
            first = p.iloc[0] if len(p) else {"wd": math.nan, "lr": math.nan}
            ax.set_title(f"{_title(g)}\n" + title.format(wd=first["wd"], lr=first["lr"],
                                                          p=float(first["lr"] * first["wd"])))
            if panel == "diagonal":
                accs = list(p["val_acc"])
                for i, (lr, wd, acc) in enumerate(zip(p["lr"], p["wd"], accs)):
                    # above a point its neighbours lie below, else under it: the label stays off the line; the end
                    # labels lean inwards, or they would run over the neighbouring panel
                    near = [accs[j] for j in (i - 1, i + 1) if 0 <= j < len(accs)]
                    above = not near or acc >= sum(near) / len(near)
                    ha = "left" if i == 0 and len(p) > 1 else "right" if i == len(p) - 1 and len(p) > 1 else "center"
                    ax.annotate(f"λ_wd {wd:.2g}", (lr, acc), textcoords="offset points",
                                xytext=(0, 7 if above else -13), ha=ha, fontsize=7)
    write(fig, pd.concat(parts, ignore_index=True)[["study", "name", "dataset", "panel", "lr", "wd", "val_acc"]],
          out_dir, "F7")
    return FigureResult("F7")
