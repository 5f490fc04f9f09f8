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


def _rgb(image) -> np.ndarray:
    """An example as (height, width, 3) uint8 pixels (as stored: C x H x W), one channel as grey."""
    img = np.asarray(image).astype(np.uint8)
    return np.transpose(np.repeat(img, 3, axis=0) if img.shape[0] == 1 else img, (1, 2, 0))


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
    images = [[_rgb(z["image"][i]) for i in range(n)] for (*_, z), n in zip(shown, counts)]
    side = max(max(img.shape[:2]) for run in images for img in run)
    # One image of all the examples on a white canvas, captions as text over it: an axes per example (64 in F10)
    # made this figure most of the aggregate stage's time. Units of the layout: one example's side.
    gap, title, caption, margin = 0.35, 0.55, 0.6, 0.15
    cell_w, cell_h = 1 + gap, 1 + title
    height = sum(caption + math.ceil(n / ncols) * cell_h for n in counts) + margin
    width = max(ncols * cell_w - gap, 4.6 / 1.3) + 2 * margin  # wide enough for a run's caption
    canvas = np.full((round(height * side), round(width * side), 3), 255, dtype=np.uint8)
    texts, rows, top = [], [], 0.0
    for (ds, m, key, z), n, run in zip(shown, counts, images):
        texts.append((margin, top + caption * 0.55, f"{ds}, {m}: {n} of {len(z['index'])} stored unfit examples "
                                                  "(label / prediction)", "left"))
        top += caption
        for i, img in enumerate(run):
            x, y = margin + (i % ncols) * cell_w, top + (i // ncols) * cell_h + title
            r0, c0 = round(y * side), round(x * side)
            canvas[r0:r0 + img.shape[0], c0:c0 + img.shape[1]] = img
            label, pred = (_name(z, ds, z["label"][i]), _name(z, ds, z["pred"][i]))
            texts.append((x + 0.5 * img.shape[1] / side, y - 0.12, f"{label} / {pred}", "center"))
            rows.append({"dataset": ds, "method": m, "key": key, "index": int(z["index"][i]),
                         "label": int(z["label"][i]), "pred": int(z["pred"][i]), "label_name": label,
                         "pred_name": pred})
        top += math.ceil(n / ncols) * cell_h
    inch = 1.3 / cell_w  # an example about as large as before (1.3 in a column)
    fig, axes = new_figure(1, 1, width=width * inch, height=height * inch)
    ax = axes[0][0]
    ax.set_position((0.0, 0.0, 1.0, 1.0))
    ax.axis("off")
    ax.imshow(canvas, extent=(0, width, height, 0), interpolation="none", aspect="auto")
    for x, y, text, ha in texts:
        ax.text(x, y, text, fontsize=8, ha=ha, va="bottom")
    ax.set_xlim(0, width)
    ax.set_ylim(height, 0)
    write(fig, pd.DataFrame(rows, columns=["dataset", "method", "key", "index", "label", "pred", "label_name",
                                           "pred_name"]), out_dir, fid, tight=False)
    return FigureResult(fid)
