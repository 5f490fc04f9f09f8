"""Comparison tables (ours beside the paper's) and their Markdown / CSV renderings.

Every table is long-format: one row per (row keys, metric) with our mean ± std over runs and, for n ≥ 2, the
95 % t interval of the mean, the paper's number and the difference. Long rows keep the CSV one-value-per-cell and the git diffs line-local.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from jobs.atomic import atomic_write_text
from pipeline.report.stats import t_interval

VALUE_COLUMNS = ["metric", "ours", "ours_std", "ci_low", "ci_high", "n", "paper", "paper_std", "diff", "note"]

METRICS = {  # id -> (Markdown label, format)
    "val_acc": ("val acc (%)", "{:.2f}"),
    "val_robust_acc": ("val PGD-20 robust acc (%)", "{:.2f}"),
    "test_acc": ("test acc (%)", "{:.2f}"),
    "train_acc": ("train acc (%)", "{:.2f}"),
    "unfit": ("unfit train examples (%)", "{:.2f}"),
    "nat_acc": ("nat acc (%)", "{:.2f}"),
    "autoattack": ("AutoAttack acc (%)", "{:.2f}"),
    "weight_norm": ("‖W‖₂", "{:.2f}"),
    "wd_term": ("0.0005·‖W‖²/2", "{:.4f}"),
    "xent": ("X-ent", "{:.4f}"),
    "total_loss": ("total loss", "{:.4f}"),
    "acc": ("test acc (%)", "{:.2f}"),
    "best_val_test_acc": ("test acc, best-val checkpoint (%)", "{:.2f}"),
    "dog_estimate": ("DoG estimate (per seed)", "{:.4g}"),
}


PERCENT = {"val_acc", "val_robust_acc", "test_acc", "train_acc", "unfit", "nat_acc", "autoattack", "acc",
           "best_val_test_acc"}


def bounds_of(metric: str, keys: dict) -> tuple[float, float] | None:
    """The range a row's quantity can take: an accuracy in [0, 100], a difference of two (an `a − b` row) in
    [-100, 100]; None when unbounded. Its interval is cut to it (no [99.03, 100.41])."""
    if metric not in PERCENT:
        return None
    return (-100.0, 100.0) if any("−" in str(v) for v in keys.values()) else (0.0, 100.0)


def stats(values) -> tuple[float, float, int]:
    """Mean, sample std (ddof=1; NaN for a single run) and count of the finite values."""
    v = pd.to_numeric(pd.Series(list(values), dtype=object), errors="coerce").to_numpy(float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return math.nan, math.nan, 0
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else math.nan, int(v.size)


def fmt_hyper(values) -> str:
    """Distinct hyper-parameter values (lr, λ_wd, DoG) as compact text, e.g. '0.0005' or '0.0158, 0.0163'."""
    vals = sorted({float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))})
    return ", ".join(f"{v:.4g}" for v in vals) if vals else "—"


@dataclass
class Table:
    id: str
    title: str
    keys: list[str]
    rows: list[dict] = field(default_factory=list)
    missing: str | None = None  # why there is nothing to show
    notes: list[str] = field(default_factory=list)

    def add(self, keys: dict, metric: str, values, paper_row: dict | None = None, paper_field: str | None = None,
            comparable: bool = True, note: str = "", paper_std_field: str | None = None) -> None:
        mean, std, n = stats(values)
        ci = t_interval(list(values), bounds=bounds_of(metric, keys))
        paper = paper_row.get(paper_field or metric) if paper_row else None
        paper_std = paper_row.get(paper_std_field) if (paper_row and paper_std_field) else None
        diff = mean - paper if (comparable and paper is not None and n) else math.nan
        self.rows.append({**{k: keys[k] for k in self.keys}, "metric": metric, "ours": mean, "ours_std": std,
                          "ci_low": ci.low, "ci_high": ci.high, "n": n, "paper": math.nan if paper is None else float(paper),
                          "paper_std": math.nan if paper_std is None else float(paper_std), "diff": diff,
                          "note": note})

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=self.keys + VALUE_COLUMNS)

    def to_csv(self) -> str:
        buf = io.StringIO()
        self.frame().to_csv(buf, index=False, float_format="%.6g", lineterminator="\n")
        return buf.getvalue()

    def markdown_body(self) -> str:
        if self.missing:  # the notes still say which runs diverged or failed
            return f"_{self.missing}_\n" + "".join(f"\n{n}\n" for n in self.notes)
        common = common_note_parts(self.rows)  # said once under the table, not on every row
        # a Δ column with no number in any row (no dataset is the paper's) says nothing: left out (the CSV keeps it)
        has_diff = any(isinstance(r["diff"], float) and math.isfinite(r["diff"]) for r in self.rows)
        head = self.keys + ["metric", "ours (mean ± std [95% CI])", "n", "paper"] \
            + (["Δ (ours − paper)"] if has_diff else []) + ["note"]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for r in self.rows:
            label, f = METRICS.get(r["metric"], (r["metric"], "{:.4g}"))
            cells = [str(r[k]) for k in self.keys] + [
                label, _pm(r["ours"], r["ours_std"], f) + _ci(r["ci_low"], r["ci_high"], f),
                str(r["n"]) if r["n"] else "—",
                _pm(r["paper"], r["paper_std"], f)] + ([_signed(r["diff"], f)] if has_diff else []) + [
                "; ".join(p for p in note_parts(r["note"]) if p not in common)]
            lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
        notes = "".join(f"\n{n}\n" for n in ([f"For every row: {'; '.join(common)}."] if common else []) + self.notes)
        return "\n".join(lines) + "\n" + notes

    def to_markdown(self) -> str:
        return f"# {self.id}: {self.title}\n\n{self.markdown_body()}"

    def write(self, out_dir: Path) -> None:
        atomic_write_text(Path(out_dir) / f"{self.id}.md", self.to_markdown())
        atomic_write_text(Path(out_dir) / f"{self.id}.csv", self.to_csv())


def note_parts(note) -> list[str]:
    """A row's note is `; `-joined parts (e.g. `paper: CIFAR-100; datasets differ, no Δ; paper λ_wd=0.0005`)."""
    return [p.strip() for p in str(note or "").split("; ") if p.strip()]


def common_note_parts(rows: list[dict]) -> list[str]:
    """The note parts to say once per table: those every row with both our number and a paper value carries (what
    the paper's numbers are; a paired difference or a paper-only baseline has nothing for them to qualify), or
    every row's."""
    referenced = [r for r in rows if _finite(r.get("paper")) and r.get("n")]
    rows = referenced if len(referenced) >= 2 else rows
    if len(rows) < 2:
        return []
    first, *rest = [note_parts(r["note"]) for r in rows]
    return [p for p in first if all(p in other for other in rest)]


def _finite(x) -> bool:
    return x is not None and isinstance(x, (int, float)) and math.isfinite(x)


def _pm(mean, std, f) -> str:
    if not _finite(mean):
        return "—"
    return f.format(mean) + (f" ± {f.format(std)}" if _finite(std) else "")


def _ci(low, high, f) -> str:
    return f" [{f.format(low)}, {f.format(high)}]" if _finite(low) and _finite(high) else ""


def _signed(x, f) -> str:
    if not _finite(x):
        return "—"
    return ("+" if x >= 0 else "−") + f.format(abs(x))
