"""The tables in the paper's shape: one row per method (as the paper prints them), one column per metric (or per
pruning amount, per learning rate), each cell our mean ± std with the paper's value beside it.

They are pivots of the long tables (table_format.Table, the data behind `tables/*.csv`), so the two can never
disagree. Notes that hold for every row are said once per table; a note that holds for some rows is a lettered
footnote on those rows. Written as Markdown, CSV (numbers as printed) and LaTeX (booktabs, latex.py).
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from jobs.atomic import atomic_write_text
from pipeline.report.methods import style
from pipeline.report.table_format import METRICS, Table, common_note_parts, note_parts


@dataclass(frozen=True)
class Shape:
    labels: tuple[tuple[str, str], ...]  # (column header, long-table key; "method" is labelled with its value)
    columns: str  # "metric": one column per metric; otherwise the long-table key whose values become columns
    metrics: tuple[str, ...]  # the metrics shown, in order (one when `columns` is a key)


SHAPES = {  # the paper's Tables 2-6 and Figure 12 (a table), methods as its rows
    "T2": Shape((("dataset", "dataset"), ("method", "method"), ("lr", "lr")), "metric",
                ("val_acc", "test_acc", "weight_norm", "wd_term", "xent", "total_loss")),
    "T3": Shape((("dataset", "dataset"), ("selected by", "selection"), ("method", "method")), "metric",
                ("weight_norm", "nat_acc", "autoattack", "val_robust_acc")),
    "T4": Shape((("dataset", "dataset"), ("method", "run"), ("optimizer", "optimizer"), ("epochs", "epochs")),
                "metric", ("nat_acc", "autoattack", "val_robust_acc")),
    "T5": Shape((("dataset", "dataset"), ("method", "method"), ("lr", "lr")), "metric",
                ("weight_norm", "test_acc", "train_acc", "unfit")),
    "T6": Shape((("dataset", "dataset"), ("lr", "lr"), ("method", "method")), "pruned", ("acc",)),
    "F12": Shape((("dataset", "dataset"), ("method", "method")), "lr", ("weight_norm",)),
}
VALUE_KEY = "λ_wd / DoG"
FOOTNOTE_MARKS = "abcdefghijklmnopqrstuvwxyz"


@dataclass
class Cell:
    ours: float = math.nan
    ours_std: float = math.nan
    paper: float = math.nan
    paper_std: float = math.nan
    n: int = 0


@dataclass
class PaperTable:
    id: str
    title: str
    label_headers: list[str]
    columns: list[str]  # value column headers
    formats: list[str]  # the number format of each value column
    rows: list[tuple[list[str], list[Cell], str]] = field(default_factory=list)  # (labels, cells, footnote mark)
    footnotes: list[str] = field(default_factory=list)  # footnote i has mark FOOTNOTE_MARKS[i]
    notes: list[str] = field(default_factory=list)
    missing: str | None = None

    @property
    def mark_at(self) -> int:
        """The label column a footnote mark goes on: the method's."""
        return self.label_headers.index("method") if "method" in self.label_headers else len(self.label_headers) - 1

    @property
    def has_paper(self) -> bool:
        return any(self.paper_in(j) for j in range(len(self.columns)))

    def paper_in(self, j: int) -> bool:
        """Whether value column j gets a paper column beside it: only where the paper prints that number."""
        return any(math.isfinite(cells[j].paper) for _, cells, _ in self.rows)

    def row_n(self, cells: list[Cell]) -> str:
        ns = sorted({c.n for c in cells if c.n})
        return "—" if not ns else str(ns[0]) if len(ns) == 1 else f"{ns[0]}–{ns[-1]}"

    def n_varies(self) -> bool:
        return len({self.row_n(cells) for _, cells, _ in self.rows if self.row_n(cells) != "—"}) > 1

    def to_markdown(self, heading: bool = True) -> str:
        head = f"# {self.id}: {self.title}\n\n" if heading else ""
        if self.missing:
            return head + f"_{self.missing}_\n" + "".join(f"\n{n}\n" for n in self.notes)
        cols = list(self.label_headers) + (["n"] if self.n_varies() else [])
        for j, c in enumerate(self.columns):
            cols += [f"{c}: ours", "paper"] if self.paper_in(j) else [c]
        align = ["---"] * len(self.label_headers) + ["---:"] * (len(cols) - len(self.label_headers))
        lines = ["| " + " | ".join(cols) + " |", "|" + "|".join(align) + "|"]
        for labels, cells, mark in self.rows:
            out = list(labels)
            if mark:
                out[self.mark_at] += f"<sup>{mark}</sup>"
            if self.n_varies():
                out.append(self.row_n(cells))
            for j, (cell, f) in enumerate(zip(cells, self.formats)):
                out.append(pm(cell.ours, cell.ours_std, f))
                if self.paper_in(j):
                    out.append(pm(cell.paper, cell.paper_std, f))
            lines.append("| " + " | ".join(x.replace("|", "\\|") for x in out) + " |")
        foot = [f"<sup>{FOOTNOTE_MARKS[i]}</sup> {text}" for i, text in enumerate(self.footnotes)]
        return head + "\n".join(lines) + "\n" + "".join(f"\n{n}\n" for n in foot + self.notes)

    def to_csv(self) -> str:
        """Numbers rounded as printed, one per cell: ours, its std, the paper's, its std, per value column."""
        records = []
        for labels, cells, mark in self.rows:
            rec: dict = dict(zip(self.label_headers, labels))
            rec["n"] = self.row_n(cells)
            for j, (name, c, f) in enumerate(zip(self.columns, cells, self.formats)):
                rec[name] = rounded(c.ours, f)
                rec[f"{name} std"] = rounded(c.ours_std, f)
                if self.paper_in(j):
                    rec[f"{name} paper"] = rounded(c.paper, f)
                    rec[f"{name} paper std"] = rounded(c.paper_std, f)
            rec["footnote"] = self.footnotes[FOOTNOTE_MARKS.index(mark)] if mark else ""
            records.append(rec)
        buf = io.StringIO()
        pd.DataFrame(records).to_csv(buf, index=False, lineterminator="\n")
        return buf.getvalue()

    def write(self, out_dir: Path) -> None:
        from pipeline.report.latex import to_latex

        out_dir = Path(out_dir)
        atomic_write_text(out_dir / f"{self.id}.md", self.to_markdown())
        atomic_write_text(out_dir / f"{self.id}.csv", self.to_csv())
        atomic_write_text(out_dir / f"{self.id}.tex", to_latex(self))


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def pm(mean, std, f: str) -> str:
    if not _finite(mean):
        return "—"
    return f.format(mean) + (f" ± {f.format(std)}" if _finite(std) else "")


def rounded(x, f: str):
    return float(f.format(x)) if _finite(x) else None


def method_label(row: dict) -> str:
    """How the paper names a row: `λ_wd = 0.0005`, `DoG = 0.196`; a paired difference says what it pairs."""
    m = str(row["method"])
    if "−" in m:
        return " − ".join(_short(part.strip()) for part in m.split("−"))
    value = str(row.get(VALUE_KEY, "—"))
    return f"{style(m).param_label} = {value}" if value not in ("—", "") else style(m).label


def _short(method: str) -> str:
    return "AWD" if method == "awd" else style(method).label.split(" (")[0]


def _label(row: dict, key: str) -> str:
    return method_label(row) if key == "method" else str(row[key])


def _column_header(shape: Shape, value: str) -> str:
    if shape.columns == "metric":
        return METRICS.get(value, (value, ""))[0]
    return f"lr = {value}" if shape.columns == "lr" else str(value)


def paper_shape(table: Table) -> PaperTable:
    shape = SHAPES[table.id]
    # the title without the interval: these cells are mean ± std, as the paper prints them
    out = PaperTable(table.id, table.title.replace(" [95% CI]", ""), [h for h, _ in shape.labels], [], [],
                     missing=table.missing)
    if table.missing:
        out.notes = list(table.notes)
        return out
    shown = [r for r in table.rows if r["metric"] in shape.metrics]
    if shape.columns == "metric":
        present = {r["metric"] for r in shown}
        columns = [m for m in shape.metrics if m in present]
        col_of = lambda r: r["metric"]  # noqa: E731
    else:
        columns = list(dict.fromkeys(str(r[shape.columns]) for r in shown))
        col_of = lambda r: str(r[shape.columns])  # noqa: E731
    out.columns = [_column_header(shape, c) for c in columns]
    out.formats = [METRICS.get(c if shape.columns == "metric" else shape.metrics[0], ("", "{:.4g}"))[1]
                   for c in columns]
    common = common_note_parts(table.rows)
    grouped: dict[tuple, dict] = {}
    for r in shown:
        key = tuple(_label(r, k) for _, k in shape.labels)
        entry = grouped.setdefault(key, {"cells": {}, "notes": []})
        entry["cells"][col_of(r)] = Cell(r["ours"], r["ours_std"], r["paper"], r["paper_std"], int(r["n"] or 0))
        entry["notes"] += [p for p in note_parts(r["note"]) if p not in common and p not in entry["notes"]]
    for key, entry in grouped.items():
        mark = ""
        if entry["notes"]:
            text = "; ".join(entry["notes"])
            if text not in out.footnotes:
                out.footnotes.append(text)
            mark = FOOTNOTE_MARKS[out.footnotes.index(text) % len(FOOTNOTE_MARKS)]
        out.rows.append((list(key), [entry["cells"].get(c, Cell()) for c in columns], mark))
    out.notes = _notes(table, out, common, shape)
    return out


def _notes(table: Table, out: PaperTable, common: list[str], shape: Shape) -> list[str]:
    notes = []
    ns = {out.row_n(cells) for _, cells, _ in out.rows} - {"—"}
    if ns == {"1"}:
        notes.append("Ours: one run per row (no std).")
    elif len(ns) == 1:
        notes.append(f"Ours: mean ± std over n = {ns.pop()} runs per row.")
    else:
        notes.append("Ours: mean ± std over the n runs of each row (a single run has no std).")
    if common:
        notes.append("For every row: " + "; ".join(common) + ".")
    left_out = [m for m in dict.fromkeys(r["metric"] for r in table.rows) if m not in shape.metrics]
    if left_out:
        names = ", ".join(METRICS.get(m, (m, ""))[0] for m in left_out)
        notes.append(f"Not a column here (the paper has none): {names}; see `tables/{table.id}.csv`.")
    shown = {p for r in table.rows if r["metric"] in shape.metrics for p in note_parts(r["note"])}
    for r in table.rows:  # what only a left-out metric's rows say (Table 2's per-seed DoG estimates)
        own = [p for p in note_parts(r["note"]) if p not in common and p not in shown]
        if r["metric"] in left_out and own:
            label = ", ".join(_label(r, k) for _, k in shape.labels if k in ("dataset", "method", "run"))
            notes.append(f"{METRICS.get(r['metric'], (r['metric'], ''))[0]} ({label}): {'; '.join(own)}.")
    notes += table.notes
    notes.append(f"95 % intervals and Δ = ours − paper for every row: `tables/{table.id}.csv`.")
    return notes


def paper_tables(tables: dict[str, Table]) -> dict[str, PaperTable]:
    return {tid: paper_shape(t) for tid, t in tables.items() if tid in SHAPES}
