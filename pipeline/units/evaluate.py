"""Evaluations of a trained run: AutoAttack shards and pruning sweeps."""

from __future__ import annotations

from pathlib import Path

import torch

from awd.data import dataset_info
from pipeline.units.data import load_sets


def _trained_model(config: dict, store):
    from awd.train import TrainConfig, load_model

    train_cfg = TrainConfig.from_dict(config["train_config"])
    if not store.is_done("train", config["train_key"], verify="changed"):  # never evaluate a damaged model.pt
        raise RuntimeError(f"train/{config['train_key']} is not done or was damaged (see {store.root}/_quarantine/"
                           "train/); recompute it with `dvc repro -f -s train`")
    num_classes, in_channels, _ = dataset_info(train_cfg.dataset)
    model = load_model(store.path("train", config["train_key"]), train_cfg, num_classes, in_channels)
    return model.eval(), train_cfg


def _test_set(train_cfg, config: dict):
    _, test_set = load_sets({"dataset": train_cfg.dataset}, config["_data_root"])
    return test_set


def autoattack_unit(config: dict, workdir: Path, store) -> dict:
    from awd.attacks import autoattack, save_shard
    from awd.data import to_float

    model, train_cfg = _trained_model(config, store)
    test = _test_set(train_cfg, config)
    n = test.y.numel() if config["n_test"] is None else min(int(config["n_test"]), test.y.numel())
    x, y = to_float(test.x[:n]), test.y[:n]
    device = "cuda" if torch.cuda.is_available() else "cpu"
    shard = autoattack(
        model.to(device), x, y, eps=config["eps"], version=config["version"], seed=config["seed"],
        batch_size=config["batch_size"], block_size=config["block_size"], state_path=Path(workdir) / "autoattack_state.json",
        start=config["start"], stop=min(config["stop"], n), device=device,
    )
    save_shard(shard, Path(workdir) / "shard.pt")
    return {
        "start": int(shard["start"]), "stop": int(shard["stop"]),
        "robust_correct": int(shard["correct"].sum()), "clean_correct": int(shard["clean_correct"].sum()),
        "n": int(shard["n"]),
    }


def prune_unit(config: dict, workdir: Path, store) -> dict:
    from awd.evaluate import accuracy
    from awd.prune import global_l1, sparsity

    model, train_cfg = _trained_model(config, store)
    test = _test_set(train_cfg, config)
    rows = [{"amount": 0.0, "acc": accuracy(model, test.x, test.y), "sparsity": sparsity(model)}]
    for amount in config["amounts"]:
        pruned = global_l1(model, amount)
        rows.append({"amount": float(amount), "acc": accuracy(pruned, test.x, test.y), "sparsity": sparsity(pruned)})
    return {"rows": rows}
