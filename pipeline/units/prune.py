"""One pruning sweep of one trained model: test accuracy after global L1 pruning at each amount."""

from __future__ import annotations

from pathlib import Path

from pipeline.units.trained_model import load_test_set, trained_model


def prune_unit(config: dict, workdir: Path, store) -> dict:
    from awd.evaluate import accuracy
    from awd.prune import global_l1, sparsity

    model, train_cfg = trained_model(config, store)
    test = load_test_set(train_cfg, config)
    rows = [{"amount": 0.0, "acc": accuracy(model, test.x, test.y), "sparsity": sparsity(model)}]
    for amount in config["amounts"]:
        pruned = global_l1(model, amount)
        rows.append({"amount": float(amount), "acc": accuracy(pruned, test.x, test.y), "sparsity": sparsity(pruned)})
    return {"rows": rows}
