"""Read the upstream stage artifacts (formats: docs/design.md, "Stage artifacts") into flat pandas frames."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from ruamel.yaml import YAML

from pipeline import outcomes
from pipeline.report import methods
from pipeline.report.methods import ORDER as METHOD_ORDER  # noqa: F401  (the renderer's method order)

RUN_ACC_COLUMNS = ("val_acc", "val_robust_acc", "test_acc", "train_acc", "best_val_val_acc", "best_val_test_acc")


def load_suites(params_path: Path) -> dict[str, list[dict]]:
    """The `suites:` block of a params file: suite name -> list of studies (absent suites are absent keys)."""
    with open(params_path) as f:
        cfg = YAML(typ="safe").load(f) or {}  # as DVC reads params (YAML 1.2; duplicate keys are errors)
    suites = cfg.get("suites") or {}
    return {name: list(studies or []) for name, studies in suites.items()}


def _read_json(path: Path, default):
    if not path.exists():
        return default
    with open(path) as f:
        return json.load(f)


def _run_row(rec: dict) -> dict:
    label, cfg, metrics = rec.get("label") or {}, rec.get("config") or {}, rec.get("metrics") or {}
    status = outcomes.status_of(rec)
    if status != outcomes.DONE:  # a diverged or failed run counts in no mean; its cell is marked instead
        metrics = {"status": status, "diverged_epoch": metrics.get("diverged_epoch"), "log": rec.get("log")}
    row = {
        "suite": rec["suite"], "study": int(rec.get("study", 0)), "dataset": rec["dataset"], "key": rec["key"],
        # Fields a suite leaves out of its label come from the resolved run config (e.g. natural runs' lr).
        "method": label.get("method", cfg.get("wd_method", "fixed")),
        "value": label.get("value", cfg.get("dog") if cfg.get("wd_method") == "awd" else cfg.get("wd")),
        "lr": label.get("lr", cfg.get("lr")),
        "wd": label.get("wd", cfg.get("wd")),
        "seed": label.get("seed", cfg.get("seed")),
        "optimizer": label.get("optimizer", cfg.get("optimizer", "sgd")),
        "name": label.get("name"),
        "rate": label.get("rate"),
        "model": cfg.get("model"),
        "epochs": cfg.get("epochs"),
        # an extra seed of an adversarial best value (not part of the sweep the selection is made on)
        "replicate": rec["suite"] == "adversarial" and "seed" in label,
        "from_sweep": bool(label.get("from_sweep", False)),
        "wd_method": cfg.get("wd_method"),  # a plugin's package.module:Class (pipeline/report/methods.py)
    }
    row.update({k: v for k, v in metrics.items() if k not in row})
    return row


def _to_percent(frames: list[tuple[pd.DataFrame, tuple[str, ...]]]) -> None:
    # Upstream accuracies are fractions in [0, 1] (awd.evaluate.accuracy, awd.autoattack.merge_autoattack); the
    # tables are in percent like the paper.
    for df, names in frames:
        for c in names:
            if c in df.columns:
                df[c] = pd.to_numeric(df[c], errors="coerce") * 100.0


@dataclass
class Inputs:
    root: Path
    suites: dict[str, list[dict]]
    runs: pd.DataFrame
    attacks: pd.DataFrame
    prune: pd.DataFrame
    dog_estimates: list[dict] = field(default_factory=list)
    unfit_train_acc: dict[str, float] = field(default_factory=dict)
    environments: list[tuple[dict, int]] = field(default_factory=list)  # (env, number of results), most first
    aa_correct: dict[str, np.ndarray] = field(default_factory=dict)  # key -> per-example AutoAttack outcome

    def in_params(self, suite: str) -> bool:
        return bool(self.suites.get(suite))

    def suite_runs(self, suite: str) -> pd.DataFrame:
        return self.runs[self.runs["suite"] == suite] if len(self.runs) else self.runs

    def trace(self, key: str) -> dict | None:
        data = _read_json(self.root / "train" / "traces" / f"{key}.json", None)
        return {k: np.asarray(v, dtype=float) for k, v in data.items()} if data else None

    def unfit(self, key: str) -> dict | None:
        path = self.root / "train" / "unfit" / f"{key}.npz"
        if not path.exists():
            return None
        with np.load(path) as z:
            return {k: z[k] for k in z.files}


def _environments(artifacts: Path) -> list[tuple[dict, int]]:
    """Distinct environments (meta.env of the store entries) behind the train, attack and prune records."""
    envs: list[dict] = [r.get("env") for r in _read_json(artifacts / "train" / "runs.json", [])]
    envs += [e for r in _read_json(artifacts / "attack" / "results.json", []) for e in r.get("env") or [None]]
    envs += [r.get("env") for r in _read_json(artifacts / "prune" / "results.json", []) if r.get("amount") == 0.0]
    counts = Counter(json.dumps(e, sort_keys=True) for e in envs if e)
    return [(json.loads(e), n) for e, n in counts.most_common()]


def load(artifacts: Path, params_path: Path) -> Inputs:
    artifacts = Path(artifacts)
    runs = pd.DataFrame([_run_row(r) for r in _read_json(artifacts / "train" / "runs.json", [])])
    if runs.empty:
        runs = pd.DataFrame(columns=["suite", "study", "dataset", "key", "method", "value", "lr", "seed", "wd_method"])
    methods.register_plugins({m: w for m, w in zip(runs["method"], runs["wd_method"])
                              if isinstance(w, str) and ":" in w})
    attack_records = _read_json(artifacts / "attack" / "results.json", [])
    attacks = pd.DataFrame(attack_records, columns=["key", "suite", "dataset", "robust_acc", "clean_acc", "n"])
    attacks = attacks.drop_duplicates("key")  # a run shared by two suites (Table 4's sweep rows) is one model
    prune_rows = []
    for r in _read_json(artifacts / "prune" / "results.json", []):
        if "amount" not in r:  # skipped (model diverged or failed) or failed: no accuracy to show
            continue
        label = r.get("label") or {}
        prune_rows.append({"key": r["key"], "suite": r["suite"], "dataset": r["dataset"],
                           "lr": label.get("lr"), "method": label.get("method"), "value": label.get("value"),
                           "seed": label.get("seed"), "amount": float(r["amount"]), "acc": r["acc"],
                           "sparsity": r.get("sparsity")})
    prune = pd.DataFrame(prune_rows, columns=["key", "suite", "dataset", "lr", "method", "value", "seed",
                                              "amount", "acc", "sparsity"])
    inputs = Inputs(root=artifacts, suites=load_suites(params_path), runs=runs, attacks=attacks, prune=prune,
                    dog_estimates=_read_json(artifacts / "train" / "dog_estimates.json", []),
                    environments=_environments(artifacts),
                    aa_correct={r["key"]: np.frombuffer(r["correct"].encode(), dtype=np.uint8) == ord("1")
                                for r in attack_records if r.get("correct")})

    unfit = pd.DataFrame(columns=["key", "train_acc"])
    if len(runs):
        rows = []
        for key in sorted(runs.loc[runs["suite"] == "underfit", "key"]):
            z = inputs.unfit(key)
            if z is not None and "train_acc" in z:
                rows.append({"key": key, "train_acc": float(np.asarray(z["train_acc"]).reshape(-1)[0])})
        unfit = pd.DataFrame(rows, columns=["key", "train_acc"])

    _to_percent([(runs, RUN_ACC_COLUMNS), (attacks, ("robust_acc", "clean_acc")), (prune, ("acc",)),
                 (unfit, ("train_acc",))])
    inputs.unfit_train_acc = dict(zip(unfit["key"], unfit["train_acc"]))
    if len(runs):
        aa = attacks.drop(columns=["suite", "dataset"]).rename(
            columns={"robust_acc": "aa_acc", "clean_acc": "aa_clean_acc", "n": "aa_n"})
        inputs.runs = runs.merge(aa, on="key", how="left")
    return inputs
