"""The trained runs an evaluation stage works on, read from the train stage's record."""

from __future__ import annotations

from pathlib import Path

from pipeline.common import ARTIFACTS, read_json


def trained_runs(suites: tuple[str, ...]) -> list[dict]:
    path = ARTIFACTS / "train" / "runs.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run `dvc repro train` first")
    seen, runs = set(), []
    for rec in read_json(path):
        if rec["suite"] in suites and (rec["suite"], rec["key"]) not in seen:
            seen.add((rec["suite"], rec["key"]))
            runs.append(rec)
    return runs


def base_eval_config(rec: dict, data_root: str) -> dict:
    return {"train_key": rec["key"], "train_config": rec["config"], "_data_root": str(Path(data_root).resolve())}
