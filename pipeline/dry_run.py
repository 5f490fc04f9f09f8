"""What `dvc repro` would train and evaluate for the current params, with a GPU-hour estimate; submits nothing.

    python -m pipeline.dry_run [--params params.yaml] [--tflops 100] [--list]

Cost model (rough, stated so it can be argued with): forward FLOPs per image are counted on the real model
(torch's FlopCounterMode on the meta device); a training step costs 3x a forward (+3x per PGD step, x2 under
ASAM); validation costs a forward (+3x per PGD-val step) per held-out image; AutoAttack (standard) costs about
3,000 forward-equivalents per test image; the GPU sustains `--tflops`.
"""

from __future__ import annotations

import argparse
import json
from functools import lru_cache

from pipeline.params import check_data, load_params
from pipeline.suites import ATTACKED_SUITES, PRUNED_SUITES, independent_runs, natural_fixed

TRAIN_SIZE = {"digits": 1437, "cifar10": 50000, "cifar100": 50000}
TEST_SIZE = {"digits": 360, "cifar10": 10000, "cifar100": 10000}
AA_FORWARDS_PER_IMAGE = 3000


@lru_cache(maxsize=None)
def forward_flops(model: str, dataset: str, model_kw: str) -> float:

    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from awd.data import dataset_info
    from awd.models import build_model

    num_classes, channels, size = dataset_info(dataset)
    with torch.device("meta"):
        net = build_model(model, num_classes, in_channels=channels, **json.loads(model_kw))
        x = torch.zeros(1, channels, size, size)
    counter = FlopCounterMode(display=False)
    with counter:
        net(x)
    return float(counter.get_total_flops())


def run_forward_flops(config: dict) -> float:
    """forward_flops of a run config's model (model_kw as canonical JSON, so the cache sees equal configs as one)."""
    return forward_flops(config["model"], config["dataset"], json.dumps(config["model_kw"], sort_keys=True))


def train_flops(config: dict) -> float:
    fwd = run_forward_flops(config)
    n_train = TRAIN_SIZE[config["dataset"]]
    n_val = round(n_train * config["val_fraction"])
    steps = config["train_steps"] if config["adversarial"] else 0
    per_image = 3 * fwd * (1 + steps) * (2 if config["optimizer"] == "asam" else 1)
    val = fwd * (1 + (3 * config["val_steps"] if config["adversarial"] else 0))
    return config["epochs"] * ((n_train - n_val) * per_image + n_val * val)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--tflops", type=float, default=100.0, help="sustained TFLOP/s per GPU (default 100)")
    parser.add_argument("--list", action="store_true", help="list every pending unit")
    args = parser.parse_args()

    from pipeline.common import open_store
    from pipeline.train import unit_for

    params = load_params(args.params)
    check_data(params)
    store = open_store()
    specs = independent_runs(params)
    pending, cached, seen = [], 0, set()
    for spec in specs:
        unit = unit_for(spec, params)
        if unit.key in seen:
            continue
        seen.add(unit.key)
        if store.is_done("train", unit.key):
            cached += 1
        else:
            pending.append((spec, unit))
    n_awd = len(natural_fixed(params))
    flops = sum(train_flops(s.config) for s, _ in pending)
    flops += sum(train_flops(dict(s.config, wd_method="awd")) for s in natural_fixed(params))
    attacked = {u.key: s for s, u in pending if s.suite in ATTACKED_SUITES}
    n_test = params.autoattack.n_test
    aa_flops = sum(
        AA_FORWARDS_PER_IMAGE * (TEST_SIZE[s.dataset] if n_test is None else min(n_test, TEST_SIZE[s.dataset]))
        * run_forward_flops(s.config)
        for s in attacked.values()
    )
    pruned = sum(1 for s, _ in pending if s.suite in PRUNED_SUITES)
    hours = lambda f: f / (args.tflops * 1e12) / 3600  # noqa: E731
    print(f"params: {args.params}")
    print(f"train:  {len(pending)} runs to train, {cached} cached; + {n_awd} natural AWD runs after the DoG estimate"
          f" (cached ones are skipped then)")
    print(f"attack: >= {len(attacked)} models to AutoAttack ({params.autoattack.shards} shards each)")
    print(f"prune:  >= {pruned} models to prune at {list(params.prune.amounts)}")
    print(f"estimate: {hours(flops):.2f} GPU-hours training + {hours(aa_flops):.2f} GPU-hours AutoAttack "
          f"at {args.tflops:g} TFLOP/s sustained (upper bound: natural AWD runs counted as pending)")
    if args.list:
        for spec, unit in pending:
            print(f"  {unit.key[:12]}  {unit.label}")
    print("nothing was submitted")


if __name__ == "__main__":
    main()
