"""GPU-hours of units, for the dry run and the spending guard.

Cost model (rough, stated so it can be argued with): forward FLOPs per image are counted on the real model
(torch's FlopCounterMode on the meta device); a training step costs 3x a forward (+3x per PGD step, x2 under
ASAM); validation costs a forward (+3x per PGD-val step) per held-out image; AutoAttack (standard) costs about
3,000 forward-equivalents per test image; pruning one forward per test image per amount (and unpruned); the GPU
sustains DEFAULT_TFLOPS unless told otherwise.
"""

from __future__ import annotations

import collections
import json
import os
from functools import cache

TRAIN_SIZE = {"digits": 1437, "cifar10": 50000, "cifar100": 50000}
TEST_SIZE = {"digits": 360, "cifar10": 10000, "cifar100": 10000}
AA_FORWARDS_PER_IMAGE = 3000
DEFAULT_TFLOPS = 100.0
CONFIRM_ENV = "AWD_CONFIRM_GPU_HOURS"


@cache
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


def unit_flops(unit) -> float:
    """FLOPs of one pipeline unit (train, autoattack block or prune sweep)."""
    if unit.kind == "train":
        return train_flops(unit.config)
    run = unit.config["train_config"]
    if unit.kind == "autoattack":
        return AA_FORWARDS_PER_IMAGE * (unit.config["stop"] - unit.config["start"]) * run_forward_flops(run)
    if unit.kind == "prune":
        return (1 + len(unit.config["amounts"])) * TEST_SIZE[run["dataset"]] * run_forward_flops(run)
    raise ValueError(f"no cost model for unit kind {unit.kind!r}")


def estimate_s(unit, executor=None) -> float:
    """Seconds the unit should take on one GPU (the driver submits the longest first; with `time_safety_factor`
    set it also sizes the job's --time), at the executor's `tflops` for the unit's kind."""
    tflops = executor.for_kind(unit.kind).tflops if executor is not None else DEFAULT_TFLOPS
    return unit_flops(unit) / (tflops * 1e12)


def gpu_hours(flops: float, tflops: float = DEFAULT_TFLOPS) -> float:
    return flops / (tflops * 1e12) / 3600


def breakdown(units, reasons: dict, tflops: float = DEFAULT_TFLOPS) -> list[str]:
    """One line per (kind, reason): how many units, how many GPU-hours; the most expensive first."""
    groups: dict = collections.defaultdict(lambda: [0, 0.0])
    for unit in units:
        g = groups[(unit.kind, reasons.get(unit.key, "pending"))]
        g[0] += 1
        g[1] += gpu_hours(unit_flops(unit), tflops)
    return [f"{n:6d} {kind} units  {h:10.2f} GPU-h  {reason}"
            for (kind, reason), (n, h) in sorted(groups.items(), key=lambda kv: -kv[1][1])]


def check_budget(units, store, executor, desc: str, extra_gpu_hours: float = 0.0,
                 tflops: float = DEFAULT_TFLOPS) -> None:
    """Refuses (SystemExit, before anything is submitted) when the stage's new work exceeds the executor's
    budget_gpu_hours, unless $AWD_CONFIRM_GPU_HOURS is at least that much. No guard on local and debug."""
    from jobs.driver import dry_run
    from jobs.why import pending_reasons

    budget = executor.gpu_budget()
    if budget is None:
        return
    pending = dry_run(units, store)
    hours = sum(gpu_hours(unit_flops(u), tflops) for u in pending) + extra_gpu_hours
    if hours <= budget:
        return
    confirmed = os.environ.get(CONFIRM_ENV, "")
    try:
        if confirmed and float(confirmed) >= hours:
            return
    except ValueError:
        raise SystemExit(f"{desc}: ${CONFIRM_ENV}={confirmed!r} is not a number of GPU-hours") from None
    lines = breakdown(pending, pending_reasons(pending, store.root), tflops)
    if extra_gpu_hours:
        lines.append(f"{'':6} (later)      {extra_gpu_hours:10.2f} GPU-h  runs that follow from these (upper bound)")
    raise SystemExit(
        f"{desc}: the new work is about {hours:.1f} GPU-hours at {tflops:g} TFLOP/s, over the budget of "
        f"{budget:g} GPU-hours (budget_gpu_hours in executor.yaml); nothing was submitted:\n" + "\n".join(lines)
        + f"\nTo go ahead: rerun with {CONFIRM_ENV}={int(hours) + 1}, or raise budget_gpu_hours in executor.yaml. "
        "`python -m pipeline.dry_run --list` lists every pending unit.")
