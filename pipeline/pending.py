"""Pending marks: how `dvc status` and `dvc repro` see work that lives in the run store (docs/design.md, "What
`dvc status` knows").

`pending/<stage>.txt` (tracked in git) is a dependency of the train, attack and prune stages. DVC hashes a stage's
dependencies after its command, so each of those stages ends by writing its own mark: the fixed "nothing pending"
text when every unit it needs is done (then its hash is the one dvc.lock holds and the stage is up to date), or
the list of its failed units. A list written by the stage itself would be hashed as it stands, so a later stage,
`pending` (this module's `main`), appends one line to every mark that lists something: the mark now differs from
what dvc.lock recorded, `dvc status` shows the stage under "changed deps: modified: pending/<stage>.txt", and the
next `dvc repro` runs it again, which retries exactly the failed units and rewrites the mark. The stages still exit
0, so later stages and every table are made meanwhile, with the failed cells marked.

The same line goes, with the list of keys, on the mark of a stage whose unit lists name an entry the run store
lacks (deleted, quarantined, never pulled): `pending` checks this whenever it runs, and so does `python -m
pipeline.repro` (`make repro`, `awd-bench repro`) before calling DVC, since DVC hashes no file of the store.
"""

from __future__ import annotations

import json
import typing as tp
from pathlib import Path

from jobs.atomic import atomic_write_text
from jobs.store import RunStore
from pipeline.common import ARTIFACTS, open_store

MARKS = Path("pending")
STAGES = ("train", "attack", "prune")
# the unit list each stage writes: (the kind of its units, its path)
LISTS: dict[str, tuple[str, Path]] = {"train": ("train", ARTIFACTS / "train" / "runs.json"),
                                      "attack": ("autoattack", ARTIFACTS / "attack" / "units.json"),
                                      "prune": ("prune", ARTIFACTS / "prune" / "units.json")}
NOTED = ("-- noted by the `pending` stage: until this is done, `dvc status` lists the stage as changed and the next "
         "`dvc repro` runs it again\n")
SHOWN = 20  # keys listed on a mark; the count says how many there are


def mark_path(stage: str, root: Path = Path(".")) -> Path:
    return root / MARKS / f"{stage}.txt"


def clean_text(stage: str) -> str:
    """The mark of a stage with nothing pending: the text git holds and dvc.lock's hash."""
    return (f"{stage}: nothing pending; every unit this stage needs is done in the run store.\n"
            "This file is a dependency of the stage, rewritten by it (pipeline/pending.py).\n")


def failed_text(stage: str, lines: tp.Sequence[str]) -> str:
    if not lines:
        return clean_text(stage)
    return (f"{stage}: {len(lines)} units FAILED after their retries; the next `dvc repro` retries exactly these:\n"
            + "".join(f"  {line}\n" for line in lines))


def write_mark(stage: str, failures: tp.Sequence[tp.Any], root: Path = Path(".")) -> None:
    """The end of a stage: its mark, from the `jobs.driver.Failure`s of its units (none: the clean text)."""
    path = mark_path(stage, root)
    path.parent.mkdir(exist_ok=True)
    atomic_write_text(path, failed_text(stage, [f.line() for f in failures]))


def noted(text: str) -> bool:
    return text.endswith(NOTED)


def note(stage: str, missing: tp.Sequence[str] = (), store: str = "", root: Path = Path(".")) -> str | None:
    """Makes the stage's mark differ from what its own run recorded when it lists failed units, or when `missing`
    (keys its unit lists name that the store lacks) is not empty; returns what it noted, None when nothing."""
    path = mark_path(stage, root)
    try:
        text = path.read_text()
    except FileNotFoundError:
        text = clean_text(stage)
    if noted(text):
        return None
    if missing:
        shown = ", ".join(missing[:SHOWN]) + (" ..." if len(missing) > SHOWN else "")
        text = (f"{stage}: {len(missing)} entries its last run used are missing from the run store {store} "
                f"(deleted, quarantined or never pulled); the next `dvc repro` recomputes them "
                f"(`awd-bench store pull` first brings back what the DVC remote has): {shown}\n")
    elif text == clean_text(stage):
        return None
    atomic_write_text(path, text + NOTED)
    return text.splitlines()[0]


def listed_keys(stage: str, root: Path = Path(".")) -> tuple[str, list[str]] | None:
    """(kind, keys) the stage's last run lists as done, or None without a readable list (nothing promised)."""
    kind, rel = LISTS[stage]
    try:
        data = json.loads((root / rel).read_text())
    except (OSError, ValueError):
        return None
    if stage == "train":  # a failed run has no entry; a diverged one has
        keys = [r["key"] for r in data if isinstance(r, dict) and r.get("status") in ("done", "diverged")]
    else:
        keys = list(data.get(kind, [])) if isinstance(data, dict) else []
    return kind, sorted({k for k in keys if isinstance(k, str)})


def missing_entries(store: RunStore, stage: str, root: Path = Path(".")) -> list[str]:
    """Keys a stage with a clean mark lists that the store does not hold done (sizes checked, as `is_done`)."""
    listed = listed_keys(stage, root)
    if listed is None:
        return []
    kind, keys = listed
    return [f"{kind}/{key[:12]}" for key in keys if not store.is_done(kind, key)]


def check(root: Path = Path("."), store: RunStore | None = None, say: tp.Callable[[str], None] = print) -> list[str]:
    """Notes every stage whose mark lists failures or whose promised entries the store lacks; returns the stages
    noted. A mark already noted is left as it is (this runs before every `make repro` and as a stage)."""
    store = store or open_store()
    out = []
    for stage in STAGES:
        text = mark_path(stage, root).read_text() if mark_path(stage, root).exists() else clean_text(stage)
        missing = missing_entries(store, stage, root) if text == clean_text(stage) else []
        what = note(stage, missing, str(store.root), root)
        if what is not None:
            say(f"pending: {stage} is changed for DVC until this is done: {what}")
            out.append(stage)
    return out


def main() -> int:
    check()
    return 0


if __name__ == "__main__":
    from pipeline.common import run_entry_point

    run_entry_point(main)
