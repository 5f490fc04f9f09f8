"""DVC stage `aggregate`: stage artifacts -> results/ (tables, plots + plot data, metrics.json, README.md).

    python -m pipeline.aggregate [--params params.yaml] [--artifacts artifacts] [--out results]

Deterministic: same artifacts give byte-identical files (sorted rows, fixed float formats, no timestamps, PNGs
without software metadata), so committed results only change when the numbers do.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pipeline import atomic_io, inputs
from pipeline.plot_common import FigureResult, remove_stale
from pipeline.plots import figure2, figure3, lr_figure, noisy_bars
from pipeline.plots_grid import figure7, heatmaps
from pipeline.plots_images import unfit_grid
from pipeline.claims import all_claims
from pipeline.report import metrics, readme
from pipeline.tables import all_tables


def figures(inp: inputs.Inputs, plots_dir: Path) -> dict[str, FigureResult]:
    builders = {
        "F1": lambda: heatmaps(inp, plots_dir, "F1"),
        "F2": lambda: figure2(inp, plots_dir),
        "F3": lambda: figure3(inp, plots_dir),
        "F4": lambda: noisy_bars(inp, plots_dir, "F4", "cifar100"),
        "F5": lambda: lr_figure(inp, plots_dir, "F5", "cifar100"),
        "F6": lambda: unfit_grid(inp, plots_dir, "F6", max_images=16),
        "F7": lambda: figure7(inp, plots_dir),
        "F8": lambda: noisy_bars(inp, plots_dir, "F8", "cifar10"),
        "F9": lambda: heatmaps(inp, plots_dir, "F9"),
        "F10": lambda: unfit_grid(inp, plots_dir, "F10", max_images=64),
        "F11": lambda: lr_figure(inp, plots_dir, "F11", None),
    }
    out = {}
    for fid, build in builders.items():
        res = build()
        if res.missing:
            remove_stale(plots_dir, fid)
        out[fid] = res
    return out


def aggregate(params: Path, artifacts: Path, out: Path) -> dict:
    out = Path(out)
    inp = inputs.load(Path(artifacts), Path(params))
    tables = all_tables(inp)
    for t in tables.values():
        t.write(out / "tables")
    figs = figures(inp, out / "plots")
    claims = all_claims(inp)
    m = metrics(inp, tables, claims)
    atomic_io.write_json(out / "metrics.json", m)
    atomic_io.write_text(out / "README.md", readme(inp, tables, figs, Path(params).as_posix(), m, claims))
    return m


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--artifacts", default="artifacts")
    ap.add_argument("--out", default="results")
    a = ap.parse_args(argv)
    aggregate(Path(a.params), Path(a.artifacts), Path(a.out))
    print(f"aggregate: wrote {a.out}/README.md, tables/, plots/, metrics.json")


if __name__ == "__main__":
    main()
