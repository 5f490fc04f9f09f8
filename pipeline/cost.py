"""GPU-hours (or CPU-hours) of units, for the dry run, the spending guard and the driver's first estimates.

Cost model (rough, stated so it can be argued with): forward FLOPs per image are counted on the real model
on the meta device (2 per multiply-add of every convolution and linear layer, as torch's FlopCounterMode counts
them: tests/unit/test_cost.py checks the two agree); a training step costs 3x a forward (+3x per PGD step, x2 under
ASAM); validation costs a forward (+3x per PGD-val step) per held-out image; AutoAttack (standard) costs about
3,000 forward-equivalents per test image; pruning one forward per test image per amount (and unpruned); the GPU
sustains DEFAULT_TFLOPS unless told otherwise (`tflops` in executor.yaml); a CPU core what `cpu_flops_per_core`
measures on this machine. The cost model is where estimates start: once units of a shape (model, dataset, attack
steps, ...) have run, the driver and the guard use their measured throughput instead (jobs/throughput.py; the cost
models below say what a shape is and where a unit's measurement comes from).
"""

from __future__ import annotations

import collections
import json
import os
from functools import cache
from typing import TypeGuard

from awd.train_config import first_validated_epoch
from pipeline.flops import forward_flops

TRAIN_SIZE = {"digits": 1437, "cifar10": 50000, "cifar100": 50000}
TEST_SIZE = {"digits": 360, "cifar10": 10000, "cifar100": 10000}
BUNDLED = ("digits",)  # shipped with scikit-learn: its sizes are fixed, known without loading it
AA_FORWARDS_PER_IMAGE = 3000
DEFAULT_TFLOPS = 100.0
CONFIRM_ENV = "AWD_CONFIRM_GPU_HOURS"


def run_forward_flops(config: dict) -> float:
    """forward_flops of a run config's model (model_kw as canonical JSON, so the cache sees equal configs as one)."""
    return forward_flops(config["model"], config["dataset"], json.dumps(config["model_kw"], sort_keys=True))


def train_flops(config: dict) -> float:
    fwd = run_forward_flops(config)
    n_train = TRAIN_SIZE[config["dataset"]]
    n_val = round(n_train * config["val_fraction"])
    steps = config["train_steps"] if config["adversarial"] else 0
    per_image = 3 * fwd * (1 + steps) * (2 if config["optimizer"] == "asam" else 1)
    epochs = config["epochs"]
    # clean validation every epoch; PGD validation of adversarial runs after the first val_from_fraction of them
    attacked = epochs + 1 - first_validated_epoch(epochs, config.get("val_from_fraction", 0.0)) \
        if config["adversarial"] else 0
    return epochs * (n_train - n_val) * per_image + n_val * fwd * (epochs + 3 * config["val_steps"] * attacked)


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
    """Seconds the unit should take on one GPU at the executor's `tflops` for the unit's kind: the stage's first
    figure (longest chains first). The driver replaces it with what `estimator` says (measured, or assumed on the
    executor's hardware) before sizing any --time."""
    tflops = executor.for_kind(unit.kind).tflops if executor is not None else DEFAULT_TFLOPS
    return unit_flops(unit) / (tflops * 1e12)


def gpu_hours(flops: float, tflops: float = DEFAULT_TFLOPS) -> float:
    return flops / (tflops * 1e12) / 3600


# -- the CPU a local campaign would run on ---------------------------------------------------------------------------
CPU_BENCH_S = 0.3  # long enough for a stable figure, short enough for every stage start
# FLOPs of that conv's forward and backward (input and weight gradients: 3 forwards of 2 per multiply-add), as torch's
# FlopCounterMode counts them (tests/unit/test_cost.py), written out: the counter's dispatch mode imports torch._dynamo
CPU_BENCH_FLOPS = 3 * 2 * 64 * 32 * 16 * 16 * 32 * 3 * 3


@cache
def cpu_flops_per_core() -> float:
    """FLOP/s one core of this machine sustains on a convolution's forward and backward pass (what training is
    made of), measured once per process with one torch thread."""
    import time

    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        conv = torch.nn.Conv2d(32, 32, 3, padding=1)
        x = torch.randn(64, 32, 16, 16, requires_grad=True)
        conv(x).sum().backward()  # warm-up
        flops, n, start = CPU_BENCH_FLOPS, 0, time.perf_counter()
        while n < 2 or time.perf_counter() - start < CPU_BENCH_S:
            conv(x).sum().backward()
            n += 1
        return flops * n / (time.perf_counter() - start)
    finally:
        torch.set_num_threads(threads)


@cache
def _local_gpus_visible() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def on_cpus(cfg) -> bool:
    """Whether `cfg` (one kind's settings) runs units on CPUs: local or debug without a GPU in sight."""
    return cfg.kind != "slurm" and not cfg.local_gpus and not _local_gpus_visible()


def device_word(cfg) -> str:
    return "CPU" if on_cpus(cfg) else "GPU"


def device_hours(unit_seconds: float, cfg) -> float:
    """Hours of the device a unit holds for `unit_seconds`: the CPU threads of a local job, or the job's GPUs."""
    from jobs.throughput import job_cpus

    slots = job_cpus(cfg) if on_cpus(cfg) else max(1, cfg.gpus_per_job()) if cfg.kind == "slurm" else 1
    return unit_seconds * slots / 3600


# -- what the driver learns from (jobs/throughput.py) ----------------------------------------------------------------
class _Model:
    """The cost model of one unit kind: shape, assumed seconds, and the seconds and work a unit measured."""

    kind, per = "", ""

    def fields(self, config: dict) -> dict:
        raise NotImplementedError

    def work(self, config: dict) -> float:
        raise NotImplementedError

    def shape(self, unit):
        from jobs.throughput import Shape

        if "_rehearsal" in unit.config:  # a stand-in's speed is the rehearsal's compression, not the cluster's
            return None
        try:
            return Shape(self.fields(unit.config), self.per, float(self.work(unit.config)))
        except (KeyError, TypeError):  # a unit of this kind that is not the pipeline's: it keeps its own estimate
            return None

    def assumed_s(self, unit, cfg) -> float:
        if on_cpus(cfg):
            from jobs.throughput import job_cpus

            return unit_flops(unit) / (cpu_flops_per_core() * job_cpus(cfg))
        return unit_flops(unit) / (cfg.tflops * 1e12)

    def assumption(self, cfg) -> str:
        if on_cpus(cfg):
            return f"{cpu_flops_per_core() / 1e9:.0f} GFLOP/s per CPU core (measured on this machine)"
        return f"{cfg.tflops:g} TFLOP/s per GPU"

    def measured(self, unit, result: dict, meta: dict):
        seconds = meta.get("seconds")
        return (float(seconds), self.work(unit.config)) if _number(seconds) else None

    def progress(self, unit, read):
        return None


def _number(x) -> TypeGuard[int | float]:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and x > 0


def _model_fields(run: dict) -> dict:
    return {"model": run["model"], "model_kw": json.dumps(run["model_kw"], sort_keys=True), "dataset": run["dataset"]}


class TrainModel(_Model):
    kind, per = "train", "epoch"

    def fields(self, config: dict) -> dict:
        adv = bool(config["adversarial"])
        return {**_model_fields(config), "attack_steps": config["train_steps"] if adv else 0,
                "val_attack_steps": config["val_steps"] if adv else 0, "optimizer": config["optimizer"],
                "batch_size": config["batch_size"], "val_fraction": config["val_fraction"],
                "bf16": config.get("bf16", False), "channels_last": config.get("channels_last", False)}

    def work(self, config: dict) -> float:
        return config["epochs"]

    def measured(self, unit, result: dict, meta: dict):
        # the run's own epoch times, summed over every attempt (meta.seconds is the last attempt's alone)
        seconds, epochs = result.get("seconds"), result.get("epochs_run")
        return (float(seconds), float(epochs)) if _number(seconds) and _number(epochs) else None

    def progress(self, unit, read):
        rows = read("history.json")  # rewritten at every epoch end (awd/train.py)
        if not isinstance(rows, list) or not rows:
            return None
        times = [r.get("seconds") for r in rows if isinstance(r, dict)]
        return (float(sum(times)), float(len(times))) if times and all(map(_number, times)) else None


class AutoAttackModel(_Model):
    kind, per = "autoattack", "example"

    def fields(self, config: dict) -> dict:
        run = config["train_config"]
        return {**_model_fields(run), "adversarial": bool(run["adversarial"]), "version": config["version"],
                "eps": config["eps"], "batch_size": config["batch_size"]}

    def work(self, config: dict) -> float:
        return config["stop"] - config["start"]


class PruneModel(_Model):
    kind, per = "prune", "example"  # test examples x (unpruned + each amount)

    def fields(self, config: dict) -> dict:
        return _model_fields(config["train_config"])

    def work(self, config: dict) -> float:
        return (1 + len(config["amounts"])) * TEST_SIZE[config["train_config"]["dataset"]]


def _register() -> None:
    from jobs.throughput import register

    for model in (TrainModel(), AutoAttackModel(), PruneModel()):
        register(model.kind, model)


_register()


# -- the spending guard ----------------------------------------------------------------------------------------------
CLUSTER_GUIDE = "docs/cluster.md"


def estimator(store, executor):
    from jobs.throughput import Estimator

    return Estimator(store.root, executor)


def breakdown(units, reasons: dict, executor, est) -> list[str]:
    """One line per (kind, reason): how many units, how many device-hours, how many estimates are measured; the
    most expensive first."""
    groups: dict = collections.defaultdict(lambda: [0, 0.0, 0])
    word = device_word(executor)
    for unit in units:
        e = est.estimate(unit)
        g = groups[(unit.kind, reasons.get(unit.key, "pending"))]
        g[0] += 1
        g[1] += device_hours(e.seconds if e else unit.estimate_s or 0.0, executor.for_kind(unit.kind))
        g[2] += bool(e and e.source == "measured")
    return [f"{n:6d} {kind} units  {h:10.2f} {word}-h  {reason}" + (f" ({m} measured)" if m else "")
            for (kind, reason), (n, h, m) in sorted(groups.items(), key=lambda kv: -kv[1][1])]


def _budget(executor) -> tuple[float, str, str]:
    """(hours, device word, the key that sets it) of the guard for `executor`."""
    from jobs.executor_config import DEFAULT_SLURM_BUDGET_GPU_HOURS

    if on_cpus(executor):
        return executor.cpu_budget(), "CPU", "budget_cpu_hours"
    hours = executor.gpu_budget()
    return (DEFAULT_SLURM_BUDGET_GPU_HOURS if hours is None else hours), "GPU", "budget_gpu_hours"


def estimates_note(units, est, executor) -> str:
    """How many of the units' estimates are measured and what the others assume, in words."""
    found = [est.estimate(u) for u in units]
    measured = sum(1 for e in found if e is not None and e.source == "measured")
    assumed = f"cost model at {_Model().assumption(executor)}"
    if not measured:
        return f"estimates: {assumed}"
    return f"estimates: {measured} measured, {len(found) - measured} from the {assumed}"


def check_budget(units, store, executor, desc: str, extra_gpu_hours: float = 0.0,
                 tflops: float | None = None) -> None:
    """Refuses (SystemExit, before anything is submitted) when the stage's new work exceeds the executor's budget:
    GPU-hours, or CPU-hours for a campaign on this machine's CPUs (the paper's settings without executor.yaml),
    unless $AWD_CONFIRM_GPU_HOURS ($AWD_CONFIRM_CPU_HOURS) is at least that much. Each unit's estimate is measured
    where the store has samples of its shape (jobs/throughput.py), the cost model's otherwise (at `tflops` when
    given, else the executor's). `extra_gpu_hours` (at DEFAULT_TFLOPS) is the work that follows from these units."""
    from jobs.driver import dry_run
    from jobs.why import pending_reasons

    if tflops is not None:
        executor = executor.replace(tflops=tflops)
    pending = dry_run(units, store)
    if not pending:  # nothing new to pay for (and no CPU benchmark, nor torch's import to look for GPUs)
        return
    budget, word, key = _budget(executor)
    est = estimator(store, executor)
    hours = sum(device_hours(e.seconds if (e := est.estimate(u)) else u.estimate_s or 0.0,
                             executor.for_kind(u.kind)) for u in pending)
    extra_flops = extra_gpu_hours * 3600 * DEFAULT_TFLOPS * 1e12
    extra = (extra_flops / cpu_flops_per_core() if word == "CPU" else extra_flops / (executor.tflops * 1e12)) / 3600
    hours += extra
    if hours <= budget:
        return
    env = f"AWD_CONFIRM_{word}_HOURS"
    confirmed = os.environ.get(env, "")
    try:
        if confirmed and float(confirmed) >= hours:
            return
    except ValueError:
        raise SystemExit(f"{desc}: ${env}={confirmed!r} is not a number of {word}-hours") from None
    lines = breakdown(pending, pending_reasons(pending, store.root), executor, est)
    if extra:
        lines.append(f"{'':6} (later)      {extra:10.2f} {word}-h  runs that follow from these (upper bound)")
    note = estimates_note(pending, est, executor)
    if word == "CPU":
        cores = os.cpu_count() or 1
        source = "executor.yaml" if _has_file() else "no executor.yaml: the default"
        raise SystemExit(
            f"{desc}: the new work is about {hours:.1f} CPU-hours (some {hours / cores / 24:.1f} days on this "
            f"machine's {cores} cores) with executor kind {executor.kind} ({source}), over the local budget of "
            f"{budget:g} CPU-hours ({key} in executor.yaml); {note}; nothing was submitted:\n" + "\n".join(lines)
            + f"\nThese settings are a campaign for a cluster: see the cluster guide ({CLUSTER_GUIDE}) for "
            "executor.yaml (kind: slurm, partition, GPUs) and `awd-bench dry-run` for its bill. To run it here "
            f"anyway: rerun with {env}={int(hours) + 1}, or raise {key} in executor.yaml. `python -m "
            "pipeline.dry_run --list` lists every pending unit.")
    raise SystemExit(
        f"{desc}: the new work is about {hours:.1f} GPU-hours ({note}), over the budget of {budget:g} GPU-hours "
        f"({key} in executor.yaml); nothing was submitted:\n" + "\n".join(lines)
        + f"\nTo go ahead: rerun with {env}={int(hours) + 1}, or raise {key} in executor.yaml. "
        "`python -m pipeline.dry_run --list` lists every pending unit.")


def _has_file() -> bool:
    from jobs.executors import DEFAULT_FILE, ENV_FILE

    return bool(os.environ.get(ENV_FILE)) or os.path.isfile(DEFAULT_FILE)
