"""What every evaluation unit starts from: a committed training run's model and the test set it is scored on."""

from __future__ import annotations

from awd.data import dataset_info
from pipeline.units.data import load_sets


def trained_model(config: dict, store):
    """The run `config["train_key"]` names, loaded from the store in eval mode, with its TrainConfig."""
    from awd.train import TrainConfig, load_model

    train_cfg = TrainConfig.from_dict(config["train_config"])
    if not store.is_done("train", config["train_key"], verify="changed"):  # never evaluate a damaged model.pt
        why = store.damage("train", config["train_key"], verify="changed") or "no manifest"
        raise RuntimeError(f"train/{config['train_key']} is not done or was damaged ({why}); recompute it with "
                           "`dvc repro -f -s train`")
    num_classes, in_channels, _ = dataset_info(train_cfg.dataset)
    model = load_model(store.path("train", config["train_key"]), train_cfg, num_classes, in_channels)
    return model.eval(), train_cfg


def load_test_set(train_cfg, config: dict):
    _, test = load_sets({"dataset": train_cfg.dataset}, config["_data_root"])
    return test
