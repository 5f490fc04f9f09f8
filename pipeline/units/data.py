"""Rebuild a run's data from the prepared split artifact; shared by every unit kind."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from awd.data import ArrayDataset, load_dataset


def noise_tag(rate: float, seed: int) -> str:
    return f"{float(rate):g}_s{int(seed)}"


def load_prepared(path: str | Path, config: dict) -> dict:
    """The split (and noisy labels) a run config asks for, checked against the artifact's own settings."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"prepared split {path} is missing: run `dvc repro prepare` first")
    with np.load(path) as z:
        prepared = {k: z[k] for k in z.files}
    for key in ("val_fraction", "split_seed"):
        if float(prepared[key]) != float(config[key]):
            raise ValueError(
                f"{path}: prepared with {key}={prepared[key]!r} but the run asks for {config[key]!r}; "
                "rerun the prepare stage"
            )
    rate = float(config.get("noise_rate", 0.0))
    if rate > 0:
        name = f"noisy_{noise_tag(rate, config['noise_seed'])}"
        if name not in prepared:
            raise ValueError(f"{path} has no noisy labels {name} (has {sorted(prepared)}); rerun the prepare stage")
    return prepared


def train_labels(prepared: dict, train_set: ArrayDataset, config: dict) -> torch.Tensor:
    if config["noise_rate"] > 0:
        return torch.as_tensor(prepared[f"noisy_{noise_tag(config['noise_rate'], config['noise_seed'])}"],
                               dtype=torch.int64)
    return train_set.y


def load_sets(config: dict, data_root: str | Path) -> tuple[ArrayDataset, ArrayDataset]:
    return (
        load_dataset(config["dataset"], data_root, download=False, train=True),
        load_dataset(config["dataset"], data_root, download=False, train=False),
    )
