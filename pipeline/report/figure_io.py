"""Shared plumbing for the figures: Agg backend, fixed style and dpi, atomic PNG + long-format CSV output."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from jobs.store import atomic_write_bytes, atomic_write_text  # noqa: E402

DPI = 100


@dataclass
class FigureResult:
    id: str
    missing: str | None = None  # why no figure was drawn
    note: str = ""  # what the figure shows in this configuration, for the report


def save_figure(fig, path: Path, dpi: int = DPI) -> None:
    """PNG without software/time metadata, so that a rerun writes identical bytes; atomically."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
    atomic_write_bytes(path, buf.getvalue())


def new_figure(nrows: int, ncols: int, width: float = 4.0, height: float = 3.2):
    # Library defaults, not the user's matplotlibrc: the committed PNGs must not depend on who ran aggregate.
    matplotlib.rc_file_defaults()
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False)
    return fig, axes


def write(fig, data: pd.DataFrame, out_dir: Path, fid: str, tight: bool = True) -> None:
    out_dir = Path(out_dir)
    if tight:
        fig.tight_layout()
    save_figure(fig, out_dir / f"{fid}.png", dpi=DPI)
    plt.close(fig)
    buf = io.StringIO()
    data.to_csv(buf, index=False, float_format="%.6g", lineterminator="\n")
    atomic_write_text(out_dir / f"{fid}.csv", buf.getvalue())


def remove_stale(out_dir: Path, fid: str) -> None:
    """A figure that is not drawn this time must not leave last run's file behind as if it were current."""
    for ext in ("png", "csv"):
        p = Path(out_dir) / f"{fid}.{ext}"
        if p.exists():
            p.unlink()
