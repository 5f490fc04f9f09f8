"""DVC stage `aggregate`: stage artifacts -> results/ (paper-shaped tables, the long tables behind them, figures +
plot data, metrics.json and headline.json (pipeline/report/metric_keys.py), README.md).

    python -m pipeline.aggregate [--params params.yaml] [--artifacts artifacts] [--out results]

Deterministic: same artifacts give byte-identical files (sorted rows, fixed float formats, no timestamps, PNGs
without software metadata), so committed results only change when the numbers do.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from jobs.atomic import atomic_write_text
from pipeline import outcomes
from pipeline.report import inputs
from pipeline.report.claims import all_claims
from pipeline.report.curves import figure2, figure3, lr_figure, noisy_bars
from pipeline.report.figure_io import FigureResult, drop_duplicates, remove_stale
from pipeline.report.heatmaps import figure7, heatmaps
from pipeline.report.metric_keys import dvc_metrics, write
from pipeline.report.paper_tables import paper_tables
from pipeline.report.readme import metrics, readme
from pipeline.report.tables import all_tables
from pipeline.report.unfit_images import unfit_grid


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
    drop_duplicates(out, plots_dir)
    return out


TABLE_SUITES = {"T2": ("natural",), "T3": ("adversarial",), "T4": ("variants", "adversarial"), "T5": ("underfit",),
                "T6": ("lr_sensitivity",), "F12": ("lr_sensitivity",)}


def unfinished(artifacts: Path) -> list[outcomes.Mark]:
    read = lambda stage, name: inputs._read_json(Path(artifacts) / stage / name, [])  # noqa: E731
    return outcomes.summary(read("train", "runs.json"), read("attack", "results.json"),
                            read("prune", "results.json"))


def mark_unfinished(tables: dict, marks: list[outcomes.Mark]) -> None:
    """A diverged or failed run counts in no mean (n says how many did): its rows and the table's notes say so."""
    for tid, table in tables.items():
        mine = [m for m in marks if m.suite in TABLE_SUITES.get(tid, ())]
        lines = [m.line for m in mine]
        outcomes.mark_rows(table.rows, table.keys, mine)
        if lines:
            table.notes.append("Not in the means above:\n\n" + "\n".join(f"- {line}" for line in lines))


def unfinished_section(marks: list[outcomes.Mark]) -> str:
    if not marks:
        return ""
    return ("\n## Diverged and failed runs\n\nDiverged runs are results (the loss became non-finite; the paper's "
            "grids have such cells) and are never retried. Failed units are retried by the next `dvc repro`.\n\n"
            + "\n".join(f"- {m.line}" for m in marks) + "\n")


def aggregate(params: Path, artifacts: Path, out: Path) -> dict:
    out = Path(out)
    inp = inputs.load(Path(artifacts), Path(params))
    marks = unfinished(Path(artifacts))
    tables = all_tables(inp)
    mark_unfinished(tables, marks)
    for t in tables.values():
        t.write(out / "tables")
    shaped = paper_tables(tables)
    for p in shaped.values():
        p.write(out / "paper")
    figs = figures(inp, out / "plots")
    claims = all_claims(inp)
    m = metrics(inp, tables, claims)
    m["runs_diverged"] = sum(mark.status == outcomes.DIVERGED for mark in marks)
    m["units_failed"] = sum(mark.status == outcomes.FAILED for mark in marks)
    written = dvc_metrics(m)
    write(out, written)
    text = readme(inp, shaped, figs, Path(params).as_posix(), m, claims) + unfinished_section(marks)
    atomic_write_text(out / "README.md", text)
    failed = [mark.line for mark in marks if mark.status == outcomes.FAILED]
    if failed:
        print(f"aggregate: the tables and figures are complete except for {len(failed)} failed cells (marked "
              "'failed'); run `dvc repro` again to retry exactly those units:\n"
              + "\n".join(f"  {line}" for line in failed), file=sys.stderr, flush=True)
    return written


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--artifacts", default="artifacts")
    ap.add_argument("--out", default="results")
    a = ap.parse_args(argv)
    aggregate(Path(a.params), Path(a.artifacts), Path(a.out))
    print(f"aggregate: wrote {a.out}/README.md, paper/, tables/, plots/, metrics.json, headline.json")


if __name__ == "__main__":
    main()
