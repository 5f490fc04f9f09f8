"""Shared plumbing for the figures: Agg backend, one style, atomic vector (PDF) + PNG (200 dpi) + long-format CSV.

A figure that would repeat another one on this configuration (same plot data, same drawing) is written once: see
`drop_duplicates`.
"""

from __future__ import annotations

import io
import typing as tp
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import FixedLocator, NullFormatter, NullLocator  # noqa: E402
from matplotlib.typing import RcKeyType  # noqa: E402

from jobs.atomic import atomic_write_bytes, atomic_write_text  # noqa: E402

DPI = 200  # a raster copy sharp enough for slides and print previews; the PDF is the one for papers
IMAGE_EXTS = ("pdf", "png")
# Readable at the size a two-column paper prints a figure; the library defaults (10 pt everywhere) are kept for
# anything not named here, never the user's matplotlibrc.
STYLE: dict[RcKeyType, tp.Any] = {
    "font.size": 9, "axes.titlesize": 9, "axes.labelsize": 9, "xtick.labelsize": 8, "ytick.labelsize": 8,
    "legend.fontsize": 8, "legend.framealpha": 0.9, "figure.titlesize": 10, "axes.spines.top": False,
    "axes.spines.right": False,
}
# F9/F8/F11/F10 draw the appendix's datasets with the code of F1/F4/F5/F6; on a configuration without those
# datasets they fall back to the same studies and would be the same picture twice.
DUPLICATE_OF = {"F9": "F1", "F8": "F4", "F11": "F5", "F10": "F6"}


@dataclass
class FigureResult:
    id: str
    missing: str | None = None  # why no figure was drawn
    note: str = ""  # what the figure shows in this configuration, for the report
    same_as: str | None = None  # drawn once under this id: the same plot data on this configuration


def save_figure(fig, path: Path, fmt: str, dpi: int = DPI) -> None:
    """One image format, without software/time metadata, so that a rerun writes identical bytes; atomically."""
    buf = io.BytesIO()
    metadata = {"Software": None} if fmt == "png" else {"Creator": None, "Producer": None, "CreationDate": None}
    fig.savefig(buf, format=fmt, dpi=dpi, metadata=metadata)
    atomic_write_bytes(path, buf.getvalue())


def new_figure(nrows: int, ncols: int, width: float = 4.0, height: float = 3.2, sharey: bool | tp.Literal["none", "all", "row", "col"] = False,
               layout: str | None = None):
    # Library defaults plus STYLE, not the user's matplotlibrc: the committed files must not depend on who ran it.
    matplotlib.rc_file_defaults()
    matplotlib.rcParams.update(STYLE)
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False, sharey=sharey,
                             layout=layout)
    return fig, axes


def value_ticks(ax, values, axis: str = "x", fmt: str = "{:g}", rotate: bool = False) -> None:
    """Ticks at the values that were run, labelled plainly: on a log axis spanning less than a few decades,
    matplotlib labels minor ticks (2×10⁻³, 3×10⁻³, …) and they run into each other."""
    values = sorted({float(v) for v in values})
    target = ax.xaxis if axis == "x" else ax.yaxis
    target.set_major_locator(FixedLocator(values))
    target.set_minor_locator(NullLocator())
    target.set_minor_formatter(NullFormatter())
    labels = [fmt.format(v) for v in values]
    if axis == "x":
        ax.set_xticks(values, labels, rotation=45 if rotate else 0, ha="right" if rotate else "center")
    else:
        ax.set_yticks(values, labels)


def write(fig, data: pd.DataFrame, out_dir: Path, fid: str, tight: bool = True) -> None:
    out_dir = Path(out_dir)
    buf = io.StringIO()
    data.to_csv(buf, index=False, float_format="%.6g", lineterminator="\n")
    csv = buf.getvalue()
    # A duplicate's images are never kept (drop_duplicates), so they are not rendered: the aggregate stage draws
    # its originals first, and rendering is most of its time
    original = out_dir / f"{DUPLICATE_OF[fid]}.csv" if fid in DUPLICATE_OF else None
    if original is None or not original.is_file() or original.read_text() != csv:
        if tight and fig.get_layout_engine() is None:
            fig.tight_layout()
        for fmt in IMAGE_EXTS:
            save_figure(fig, out_dir / f"{fid}.{fmt}", fmt)
    plt.close(fig)
    atomic_write_text(out_dir / f"{fid}.csv", csv)


def remove_stale(out_dir: Path, fid: str, exts: tuple[str, ...] = (*IMAGE_EXTS, "svg", "csv")) -> None:
    """A figure that is not drawn this time must not leave last run's file behind as if it were current."""
    for ext in exts:
        p = Path(out_dir) / f"{fid}.{ext}"
        if p.exists():
            p.unlink()


def drop_duplicates(figures: dict[str, FigureResult], out_dir: Path) -> None:
    """Where a figure's plot data equals the one it would duplicate (DUPLICATE_OF), its images are removed and it
    points at the other; its CSV stays, for `dvc plots` and `awd-bench diff --figures`."""
    for fid, original in DUPLICATE_OF.items():
        a, b = figures.get(fid), figures.get(original)
        if a is None or b is None or a.missing or b.missing:
            continue
        mine, theirs = Path(out_dir) / f"{fid}.csv", Path(out_dir) / f"{original}.csv"
        if mine.is_file() and theirs.is_file() and mine.read_bytes() == theirs.read_bytes():
            remove_stale(out_dir, fid, exts=(*IMAGE_EXTS, "svg"))
            a.same_as = original
