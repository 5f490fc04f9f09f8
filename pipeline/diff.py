"""`awd-bench diff [A] [B]`: the result tables of two revisions side by side, old | new | Δ | paper.

    awd-bench diff                  # HEAD vs the workspace
    awd-bench diff A                # A vs the workspace
    awd-bench diff A B [--all] [--out FILE] [--figures DIR]

A and B are git revisions (a commit, branch, tag, `HEAD~2`) or `dvc exp` names. Each table (T2–T6, F12) is read
from the CSV the renderer writes (`results/tables/<T>.csv`; `git show REV:results/tables/<T>.csv` for a revision),
matched row by row on its label columns, and shown where any of its numbers changed (every row with `--all`).
Markdown on stdout and, with `--out`, in a file. `--figures DIR` redraws the grid (F1, F9) and learning-rate (F5,
F11) curves of both revisions overlaid, from `results/plots/<F>.csv`.
"""

from __future__ import annotations

import argparse
import io
import math
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

TABLES = ("T2", "T3", "T4", "T5", "T6", "F12")
FIGURES = {  # figure -> (x, y, the columns naming one curve, the panel columns)
    "F1": ("lr", "val_acc", ("method", "wd_or_dog"), ("dataset", "name", "method")),
    "F9": ("lr", "val_acc", ("method", "wd_or_dog"), ("dataset", "name", "method")),
    "F5": ("lr", "mean", ("method",), ("dataset", "panel")),
    "F11": ("lr", "mean", ("method",), ("dataset", "panel")),
}
VALUES = ("ours", "ours_std", "ci_low", "ci_high", "n", "paper", "paper_std", "diff", "note")
COMPARED = ("ours", "ours_std", "ci_low", "ci_high", "n")  # a row is "changed" when one of these differs
SELECTED = "λ_wd / DoG"  # which value a selection picked: shown, not matched on (T3's best value may move)
WORKSPACE = "workspace"
RESULTS = "results"


class DiffError(RuntimeError):
    pass


@dataclass(frozen=True)
class Revision:
    """A git commit (`sha`) or the working tree (`sha` None) and what the user called it."""

    name: str
    sha: str | None
    root: Path

    @property
    def label(self) -> str:
        return self.name if self.sha is None or self.sha.startswith(self.name) else f"{self.name} ({self.sha[:7]})"

    def read(self, rel: str) -> str | None:
        if self.sha is None:
            path = self.root / rel
            return path.read_text(encoding="utf-8") if path.is_file() else None
        proc = subprocess.run(["git", "show", f"{self.sha}:{rel}"], cwd=self.root, capture_output=True)
        return proc.stdout.decode("utf-8") if proc.returncode == 0 else None


def _git(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)


def resolve(name: str | None, root: Path) -> Revision:
    """A git revision, a `dvc exp` name (refs/exps/.../<name>), or the workspace."""
    if name is None or name == WORKSPACE:
        return Revision(WORKSPACE, None, root)
    proc = _git(root, "rev-parse", "--verify", "--quiet", f"{name}^{{commit}}")
    if proc.returncode == 0:
        return Revision(name, proc.stdout.strip(), root)
    refs = _git(root, "for-each-ref", "--format=%(refname) %(objectname)", "refs/exps").stdout.split("\n")
    found = [line.split() for line in refs if line and line.split()[0].rsplit("/", 1)[-1] == name]
    if len(found) == 1:
        return Revision(name, found[0][1], root)
    if len(found) > 1:
        raise DiffError(f"diff: {name!r} names {len(found)} dvc experiments ({', '.join(r for r, _ in found)}); "
                        "give one of their commits instead")
    raise DiffError(f"diff: {name!r} is neither a git revision of {root} nor a `dvc exp` name "
                    "(see `git log`, `dvc exp list --all-commits`); use 'workspace' for the working tree")


def read_csv(rev: Revision, rel: str) -> pd.DataFrame | None:
    text = rev.read(rel)
    if text is None:
        return None
    return pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)


def title(rev_new: Revision, rev_old: Revision, tid: str) -> str:
    for rev in (rev_new, rev_old):
        text = rev.read(f"{RESULTS}/tables/{tid}.md")
        if text and text.startswith("# "):
            return text.splitlines()[0][2:]
    return tid


# -- tables ----------------------------------------------------------------------------------------------------------
def _num(text: str) -> float | None:
    try:
        v = float(text)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(v) else v


def _g(v: float | None) -> str:
    return "—" if v is None else f"{v:.4g}"


def cell(row: dict | None) -> str:
    """`mean ± std [ci_low, ci_high] (n=3)` with the parts this row has."""
    if row is None:
        return "—"
    ours = _num(row.get("ours", ""))
    if ours is None:
        return row.get("ours") or "—"
    text = _g(ours)
    std, lo, hi, n = (_num(row.get(k, "")) for k in ("ours_std", "ci_low", "ci_high", "n"))
    if std is not None:
        text += f" ± {_g(std)}"
    if lo is not None and hi is not None:
        text += f" [{_g(lo)}, {_g(hi)}]"
    if n is not None:
        text += f" (n={n:g})"
    if row.get(SELECTED) not in (None, "", "—"):
        text += f" @ {row[SELECTED]}"
    return text


def delta(old: dict | None, new: dict | None) -> str:
    if old is None:
        return "added"
    if new is None:
        return "removed"
    a, b = _num(old.get("ours", "")), _num(new.get("ours", ""))
    if a is None or b is None:
        return "—"
    text = f"{b - a:+.4g}"
    intervals = [(_num(r.get("ci_low", "")), _num(r.get("ci_high", ""))) for r in (old, new)]
    if all(lo is not None and hi is not None for lo, hi in intervals):
        (lo0, hi0), (lo1, hi1) = intervals
        text += " (95% CIs overlap)" if lo1 <= hi0 and lo0 <= hi1 else " (95% CIs disjoint)"  # type: ignore[operator]
    return text


def paper(row: dict) -> str:
    p, s = _num(row.get("paper", "")), _num(row.get("paper_std", ""))
    if p is None:
        return "—"
    return f"{_g(p)} ± {_g(s)}" if s is not None else _g(p)


def _key_columns(frames: list[pd.DataFrame]) -> list[str]:
    cols = [c for c in frames[0].columns if c not in VALUES and c != SELECTED]
    for f in frames:
        if f.duplicated(subset=[c for c in cols if c in f.columns]).any():
            return [c for c in frames[0].columns if c not in VALUES]  # the selected value is part of the label
    return cols


def diff_table(old: pd.DataFrame | None, new: pd.DataFrame | None, show_all: bool) -> tuple[list[str], list, int]:
    """(label columns, rows [(label values, old row, new row)], number of rows compared)."""
    frames = [f for f in (old, new) if f is not None]
    if not frames:
        return [], [], 0
    keys = _key_columns(frames)
    index = lambda f: {tuple(r.get(k, "") for k in keys): r for r in f.to_dict("records")} if f is not None else {}  # noqa: E731
    a, b = index(old), index(new)
    order = list(a) + [k for k in b if k not in a]
    rows = []
    for k in order:
        ra, rb = a.get(k), b.get(k)
        changed = ra is None or rb is None or any(ra.get(c) != rb.get(c) for c in (*COMPARED, SELECTED))
        if changed or show_all:
            rows.append((k, ra, rb))
    return keys, rows, len(order)


def _md_escape(text: str) -> str:
    return str(text).replace("|", "\\|")


def render_table(tid: str, heading: str, keys: list[str], rows: list, total: int, old: Revision,
                 new: Revision, show_all: bool) -> str:
    if total == 0:
        return f"## {heading}\n\nIn neither revision.\n"
    changed = sum(1 for _, ra, rb in rows
                  if ra is None or rb is None or any(ra.get(c) != rb.get(c) for c in (*COMPARED, SELECTED)))
    if not rows:
        return f"## {heading}\n\nNo cell changed ({total} rows).\n"
    head = [*keys, f"old: {old.label}", f"new: {new.label}", "Δ (new − old)", "paper"]
    lines = [f"## {heading}", "",
             "| " + " | ".join(map(_md_escape, head)) + " |", "|" + "---|" * len(head)]
    for k, ra, rb in rows:
        ref = rb if rb is not None else ra
        lines.append("| " + " | ".join(_md_escape(x) for x in (*k, cell(ra), cell(rb), delta(ra, rb), paper(ref)))
                     + " |")
    lines += ["", f"{changed} of {total} rows changed" + (" (every row shown)." if show_all else ".")]
    return "\n".join(lines) + "\n"


def diff_markdown(old: Revision, new: Revision, show_all: bool = False) -> str:
    parts = [f"# Results diff: {old.label} → {new.label}", "",
             "Cells: mean ± std [95% CI] (n) @ the λ_wd / DoG the row uses; Δ is the difference of the means. "
             "Paper: the paper's value for the row.", ""]
    for tid in TABLES:
        rel = f"{RESULTS}/tables/{tid}.csv"
        a, b = read_csv(old, rel), read_csv(new, rel)
        keys, rows, total = diff_table(a, b, show_all)
        parts.append(render_table(tid, title(new, old, tid), keys, rows, total, old, new, show_all))
    return "\n".join(parts)


# -- figures ---------------------------------------------------------------------------------------------------------
def draw_figures(old: Revision, new: Revision, out_dir: Path) -> list[Path]:
    """Each lr/grid figure of both revisions overlaid (old dashed, new solid), one panel per grid/method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for fid, (x, y, series, panels) in FIGURES.items():
        frames = {rev.label: read_csv(rev, f"{RESULTS}/plots/{fid}.csv") for rev in (old, new)}
        have = {k: f for k, f in frames.items() if f is not None and len(f)}
        if not have:
            continue
        both = pd.concat([f.assign(_rev=k) for k, f in have.items()], ignore_index=True)
        for col in (x, y):
            both[col] = pd.to_numeric(both[col], errors="coerce")
        groups = list(both.groupby(list(panels), sort=True))
        fig, axes = plt.subplots(1, len(groups), figsize=(4.2 * len(groups), 3.4), squeeze=False)
        colours: dict = {}
        for ax, (panel, frame) in zip(axes[0], groups):
            for (rev, *sid), curve in frame.groupby(["_rev", *series], sort=True):
                name = " ".join(map(str, sid))
                colour = colours.setdefault(name, f"C{len(colours) % 10}")
                curve = curve.sort_values(x)
                ax.plot(curve[x], curve[y], color=colour, marker="o", ms=3,
                        linestyle="--" if rev == old.label else "-", alpha=0.6 if rev == old.label else 1.0,
                        label=f"{name} ({'old' if rev == old.label else 'new'})")
            ax.set_xscale("log")
            ax.set_xlabel(x)
            ax.set_ylabel(y)
            ax.set_title(" ".join(map(str, panel if isinstance(panel, tuple) else (panel,))), fontsize=9)
            ax.legend(fontsize=6)
        fig.suptitle(f"{fid}: {old.label} (dashed) vs {new.label} (solid)", fontsize=10)
        fig.tight_layout()
        path = out_dir / f"{fid}_diff.png"
        fig.savefig(path, dpi=110, metadata={"Software": None})
        plt.close(fig)
        written.append(path)
    return written


def _repo_root() -> Path:
    proc = _git(Path.cwd(), "rev-parse", "--show-toplevel")
    if proc.returncode != 0:
        raise DiffError(f"diff: {Path.cwd()} is not inside a git repository")
    return Path(proc.stdout.strip())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("old", nargs="?", default="HEAD", help="git revision or dvc exp name (default HEAD)")
    ap.add_argument("new", nargs="?", default=WORKSPACE, help="git revision, dvc exp name or 'workspace' (default)")
    ap.add_argument("--all", action="store_true", help="every row, not only the changed ones")
    ap.add_argument("--out", type=Path, help="also write the Markdown to this file")
    ap.add_argument("--figures", type=Path, metavar="DIR", help="redraw F1, F9, F5, F11 with both revisions overlaid")
    a = ap.parse_args(argv)
    try:
        root = _repo_root()
        old, new = resolve(a.old, root), resolve(a.new, root)
        text = diff_markdown(old, new, a.all)
        figs = draw_figures(old, new, a.figures) if a.figures else []
    except DiffError as e:
        print(f"ERROR: {e}", file=sys.stderr)
        return 2
    if figs:
        text += "\nFigures (old dashed, new solid): " + ", ".join(p.as_posix() for p in figs) + "\n"
    sys.stdout.write(text)
    if a.out:
        from jobs.atomic import atomic_write_text

        atomic_write_text(a.out, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
