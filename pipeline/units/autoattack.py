"""One AutoAttack block of one trained model: the stored unit of AutoAttack work.

A block ([start, stop) on block_size boundaries, seed `seed + start // block_size`) computes the same thing however
blocks are grouped into jobs, so `autoattack.shards` (the grouping) is not part of its key.
"""

from __future__ import annotations

from pathlib import Path

import torch

from pipeline.units.trained_model import load_test_set, trained_model


def autoattack_unit(config: dict, workdir: Path, store) -> dict:
    from awd.autoattack import autoattack, save_shard
    from awd.data import to_float

    model, train_cfg = trained_model(config, store)
    test = load_test_set(train_cfg, config)
    start, stop = int(config["start"]), int(config["stop"])
    if stop > test.y.numel():
        raise ValueError(f"AutoAttack block [{start}, {stop}) ends past the test set ({test.y.numel()} examples)")
    x, y = to_float(test.x[:stop]), test.y[:stop]
    device = "cuda" if torch.cuda.is_available() else "cpu"
    shard = autoattack(
        model.to(device), x, y, eps=config["eps"], version=config["version"], attacks=config.get("attacks"),
        seed=config["seed"],
        batch_size=config["batch_size"], block_size=config["block_size"],
        state_path=Path(workdir) / "autoattack_state.json", start=start, stop=stop, device=device,
    )
    save_shard(shard, Path(workdir) / "shard.pt")
    return {
        "start": int(shard["start"]), "stop": int(shard["stop"]),
        "robust_correct": int(shard["correct"].sum()), "clean_correct": int(shard["clean_correct"].sum()),
        "n": int(shard["n"]), "correct": "".join("1" if c else "0" for c in shard["correct"].tolist()),
    }
