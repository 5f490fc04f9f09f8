"""The one hook between the pipeline and a rehearsal: `stand_ins(settings)` is the `stand_in` a
`pipeline.plan.Planner` applies to every unit it builds, swapping the unit's function for the matching stand-in and
adding the stand-in's plan. `from_environment` gives it to the stage drivers (`pipeline.plan.for_stage`) when
$AWD_REHEARSAL names a rehearsal's settings: dvc repro starts each stage as its own process, so the environment is
how the rehearsal reaches them; nothing else reads it.

The plan (`_rehearsal` in the unit config) enters the unit key along with the stand-in module's code digest, so a
stand-in's key never equals a real unit's key; the rehearsal also runs on its own store in a throwaway copy.
"""

from __future__ import annotations

import json
import math
import os
import zlib
from collections.abc import Callable
from functools import cache
from pathlib import Path

ENV = "AWD_REHEARSAL"  # path of the rehearsal's settings.json (written by pipeline.rehearsal.run)
STANDIN = "pipeline.rehearsal.standin"
FNS = {"train": "train_unit", "autoattack": "autoattack_unit", "prune": "prune_unit"}
FAULTS_BY_KIND = {"train": ("diverge", "exit", "timeout"), "autoattack": ("exit",), "prune": ("exit",)}


@cache
def settings(path: str) -> dict:
    try:
        with open(path) as f:
            values = json.load(f)
    except (OSError, ValueError) as e:
        raise ValueError(f"${ENV}={path!r}: cannot read the rehearsal settings: {e}") from None
    missing = {"minutes_per_gpu_hour", "tflops", "seed", "rates"} - set(values)
    if missing:
        raise ValueError(f"${ENV}={path!r}: settings lack {sorted(missing)}")
    return values


def sim_seconds(kind: str, config: dict, tflops: float) -> float:
    """The dry run's cost model (pipeline.dry_run) for one unit, in GPU seconds at `tflops`."""
    from pipeline.cost import AA_FORWARDS_PER_IMAGE, TEST_SIZE, run_forward_flops, train_flops

    if kind == "train":
        flops = train_flops(config)
    elif kind == "autoattack":
        flops = AA_FORWARDS_PER_IMAGE * (int(config["stop"]) - int(config["start"])) * run_forward_flops(
            config["train_config"])
    elif kind == "prune":
        test = TEST_SIZE[config["train_config"]["dataset"]]
        flops = (1 + len(config["amounts"])) * test * run_forward_flops(config["train_config"])
    else:
        raise ValueError(f"rehearsal: no stand-in for unit kind {kind!r}; known: {sorted(FNS)}")
    return flops / (tflops * 1e12)


def draw(seed: int, kind: str, config: dict, what: str) -> float:
    """A seeded number in [0, 1) per (unit, question): the same faults land on the same units in every run."""
    text = json.dumps({k: v for k, v in config.items() if not k.startswith("_")}, sort_keys=True, default=str)
    return (zlib.crc32(f"{seed}|{kind}|{what}|{text}".encode()) & 0xFFFFFFFF) / 2 ** 32


def plan(kind: str, config: dict, values: dict) -> dict:
    sim = sim_seconds(kind, config, float(values["tflops"]))
    seconds = sim / 3600 * float(values["minutes_per_gpu_hour"]) * 60
    steps = int(config["epochs"]) if kind == "train" else max(1, math.ceil(
        (int(config["stop"]) - int(config["start"])) / int(config["block_size"]))) if kind == "autoattack" else 1
    fault, fault_step = None, None
    for name in FAULTS_BY_KIND[kind]:
        rate = float(values["rates"].get(name, 0.0))
        if rate > 0 and draw(values["seed"], kind, config, name) < rate:
            fault = name
            fault_step = int(draw(values["seed"], kind, config, name + "-step") * steps * 0.8 + steps * 0.1)
            break
    return {"seconds": seconds, "sim_seconds": sim, "steps": steps, "fault": fault, "fault_step": fault_step}


def stand_in(kind: str, fn: str, config: dict, values: dict) -> tuple[str, dict]:
    """(stand-in fn, config with its `_rehearsal` plan) for a real unit's (kind, fn, config), under `values` (the
    rehearsal's settings)."""
    if kind not in FNS:
        raise ValueError(f"rehearsal: no stand-in for unit kind {kind!r} (fn {fn}); known: {sorted(FNS)}")
    return f"{STANDIN}:{FNS[kind]}", dict(config, _rehearsal=plan(kind, config, values))


def stand_ins(path: str | Path) -> Callable[[str, str, dict], tuple[str, dict]]:
    """The stand-in swap of the rehearsal whose settings.json is at `path` (read now: a bad file fails at once)."""
    values = settings(str(Path(path).resolve()))
    return lambda kind, fn, config: stand_in(kind, fn, config, values)


def from_environment() -> Callable[[str, str, dict], tuple[str, dict]] | None:
    """The swap of the rehearsal that started this process (its $AWD_REHEARSAL), or None outside a rehearsal."""
    path = os.environ.get(ENV)
    return stand_ins(path) if path else None
