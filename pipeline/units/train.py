"""One training run: the unit behind every cell of every suite."""

from __future__ import annotations

from pathlib import Path

from pipeline.units.data import load_prepared, load_sets, train_labels

# Keys of a unit's config that say where inputs live, not what is computed: never part of the cache key.
LOCATION_KEYS = ("_prepared", "_data_root")


def run_config(config: dict) -> dict:
    return {k: v for k, v in config.items() if k not in LOCATION_KEYS}


def train_unit(config: dict, workdir: Path, store=None) -> dict:
    from awd.train import TrainConfig, make_train_data, train

    run = run_config(config)
    cfg = TrainConfig.from_dict(run)
    train_set, test_set = load_sets(run, config["_data_root"])
    prepared = load_prepared(config["_prepared"], run)
    labels = train_labels(prepared, train_set, run)
    data = make_train_data(train_set, test_set, prepared["train_idx"], prepared["val_idx"], labels=labels)
    return train(cfg, data, Path(workdir))
