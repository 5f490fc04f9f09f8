"""The trained runs an evaluation stage works on, read from the train stage's record."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from jobs.job import Unit
from pipeline.common import ARTIFACTS, read_json


def trained_runs(suites: tuple[str, ...]) -> list[dict]:
    """Every recorded run of `suites`, once per (suite, key), whatever its status (see pipeline.outcomes.usable)."""
    path = ARTIFACTS / "train" / "runs.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run `dvc repro train` first")
    seen, runs = set(), []
    for rec in read_json(path):
        if rec["suite"] in suites and (rec["suite"], rec["key"]) not in seen:
            seen.add((rec["suite"], rec["key"]))
            runs.append(rec)
    return runs


def check_trained(store, plan: Sequence[tuple[dict, Unit]], stage: str) -> None:
    """Every trained model an evaluation stage is about to load (for a (record, unit) whose unit is not done) must
    be a done, undamaged store entry (checksums of what changed since commit); otherwise the stage stops before
    submitting anything, naming each run and what is wrong with it. Nothing is moved here: the train stage, which
    recomputes them, quarantines damaged entries."""
    from jobs.store import StoreError

    needed = {rec["key"]: rec for rec, unit in plan if not store.is_done(unit.kind, unit.key)}
    bad = []
    for key, rec in needed.items():
        if not store.is_done("train", key, verify="changed"):
            why = store.damage("train", key, verify="changed")
            bad.append(f"  {rec['suite']} {rec['label']} (train/{key}): {'damaged: ' + why if why else 'not done'}")
    if bad:
        raise StoreError(f"{stage}: {len(bad)} trained run(s) are missing from the run store {store.root} or were "
                         "damaged; recompute them with `dvc repro -f -s train`, then rerun:\n" + "\n".join(bad))


def base_eval_config(rec: dict, data_root: str) -> dict:
    return {"train_key": rec["key"], "train_config": rec["config"], "_data_root": str(Path(data_root).resolve())}
