"""Figures 6 and 10: the training examples the under-fitting (AWD) model does not fit, titled label/prediction."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.report.classnames import class_name
from pipeline.report.figure_io import FigureResult, new_figure, write
from pipeline.report.inputs import Inputs
from pipeline.report.tables import method_key, missing_reason

NCOLS = 8


def _runs_to_show(inp: Inputs) -> list[tuple[str, str, str]]:
    """(dataset, method, key) of the runs whose unfit examples are shown: AWD's per dataset (the paper's figure),
    or every underfit run of a dataset that has no AWD run."""
    df = inp.suite_runs("underfit")
    out = []
    for ds, g in df.groupby("dataset", sort=True):
        pick = g[g["method"] == "awd"]
        pick = pick if len(pick) else g
        out += sorted(((str(ds), str(m), str(k)) for m, k in zip(pick["method"], pick["key"])),
                      key=lambda x: (x[0], method_key(x[1]), x[2]))
    return out


def _name(z: dict, dataset: str, index) -> str:
    """The run's own class names when the underfit stage stored them, else the known dataset's."""
    classes = z.get("classes")
    if classes is not None and 0 <= int(index) < len(classes):
        return str(classes[int(index)])
    return class_name(dataset, index)


def unfit_grid(inp: Inputs, out_dir: Path, fid: str, max_images: int) -> FigureResult:
    reason = missing_reason(inp, "underfit")
    if reason:
        return FigureResult(fid, reason)
    shown = [(ds, m, k, z) for ds, m, k in _runs_to_show(inp)
             if (z := inp.unfit(k)) is not None and len(z.get("index", [])) > 0]
    if not shown:
        return FigureResult(fid, "No unfit examples in artifacts/train/unfit (every training example was fit, "
                                 "or the underfit stage has not run).")
    counts = [min(len(z["index"]), max_images) for *_, z in shown]
    ncols = min(NCOLS, max(counts))  # as wide as the longest row of images, not always NCOLS
    nrows = sum(math.ceil(n / ncols) for n in counts)
    # Each run's caption sits above its first row; a figure narrower than the caption would cut it.
    fig, axes = new_figure(nrows, ncols, width=max(1.3, 4.6 / ncols), height=1.6)
    # Fixed spacing rather than tight_layout, which cannot fit the titles of tiny image axes.
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.02, top=1 - 0.4 / nrows, wspace=0.3, hspace=0.7)
    for ax in axes.flat:
        ax.axis("off")
        ax.set_anchor("W")  # images flush left, under their caption, however wide the figure
    rows, r0 = [], 0
    for ds, m, key, z in shown:
        n = min(len(z["index"]), max_images)
        for i in range(n):
            ax = axes[r0 + i // ncols][i % ncols]
            img = np.asarray(z["image"][i])
            if img.shape[0] == 1:
                ax.imshow(img[0], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
            else:
                ax.imshow(np.transpose(img, (1, 2, 0)), interpolation="nearest")
            label, pred = (_name(z, ds, z["label"][i]), _name(z, ds, z["pred"][i]))
            ax.set_title(f"{label} / {pred}", fontsize=8)
            rows.append({"dataset": ds, "method": m, "key": key, "index": int(z["index"][i]),
                         "label": int(z["label"][i]), "pred": int(z["pred"][i]), "label_name": label,
                         "pred_name": pred})
        axes[r0][0].text(0.0, 1.4, f"{ds}, {m}: {n} of {len(z['index'])} stored unfit examples (label / prediction)",
                         transform=axes[r0][0].transAxes, fontsize=8, ha="left")
        r0 += math.ceil(n / ncols)
    write(fig, pd.DataFrame(rows, columns=["dataset", "method", "key", "index", "label", "pred", "label_name",
                                           "pred_name"]), out_dir, fid, tight=False)
    return FigureResult(fid)
