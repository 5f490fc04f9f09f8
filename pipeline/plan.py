"""The one place that builds units from params: a training run's unit, a trained model's AutoAttack blocks and
pruning unit, and the estimate-only evaluations the dry run costs before any model exists.

The train, attack and prune stages, the dry run, `store push|pull|gc` and the rehearsal all build through a
`Planner`, so that a unit built early (the train stage hands a model's evaluations on as soon as it is trained) has
the very key the later stage collects. A dress rehearsal swaps each unit's function for a timed stand-in: it passes
`stand_in` (pipeline/rehearsal/swap.py); `for_stage` supplies the one a rehearsal's settings name.
"""

from __future__ import annotations

import typing as tp
from functools import cache
from pathlib import Path

from awd.methods import plugin_modules
from jobs.job import Unit
from pipeline.common import ARTIFACTS, make_unit
from pipeline.cost import BUNDLED, DEFAULT_TFLOPS, TEST_SIZE, estimate_s, train_flops
from pipeline.suites import ATTACKED_SUITES, PRUNED_SUITES, RunSpec, natural_fixed
from pipeline.trained_runs import base_eval_config

TRAIN_FN = "pipeline.units.train:train_unit"
AA_FN = "pipeline.units.autoattack:autoattack_unit"
PRUNE_FN = "pipeline.units.prune:prune_unit"

# (kind, fn, config) -> (fn, config): what a rehearsal runs instead of a unit's real function
StandIn = tp.Callable[[str, str, dict], tuple[str, dict]]


def describe(spec: RunSpec) -> str:
    label = ",".join(f"{k}={v}" for k, v in spec.label.items())
    return f"{spec.suite}[{spec.study}] {spec.dataset} {label}"


def run_estimate_s(config: dict, executor=None) -> float:
    tflops = executor.for_kind("train").tflops if executor is not None else DEFAULT_TFLOPS
    return train_flops(config) / (tflops * 1e12)


def longest_job_s(units: list) -> float:
    """The longest job among a model's evaluation units (a group's units run one after another in one job)."""
    jobs: dict = {}
    for i, unit in enumerate(units):
        jobs[unit.group or i] = jobs.get(unit.group or i, 0.0) + (unit.estimate_s or 0.0)
    return max(jobs.values(), default=0.0)


@cache
def test_size(dataset: str, data_root: str, n_test) -> int:
    """Examples AutoAttack sees: the test set on disk, capped by autoattack.n_test (a bundled dataset's size is
    known without loading it, and without importing scikit-learn in every attack stage)."""
    if dataset in BUNDLED:
        return known_test_size(dataset, n_test)
    from awd.data import load_dataset

    total = int(load_dataset(dataset, data_root, download=False, train=False).y.numel())
    return total if n_test is None else min(int(n_test), total)


def known_test_size(dataset: str, n_test) -> int:
    """`test_size` from the dataset's known size, before (or without) the test set on disk."""
    return TEST_SIZE[dataset] if n_test is None else min(int(n_test), TEST_SIZE[dataset])


def aa_version(aa) -> dict:
    """The AutoAttack version of a block's config, with the attack list only for `custom` (so that the other
    versions' keys stay those of before the option)."""
    return {"version": aa.version, **({"attacks": list(aa.attacks or ())} if aa.version == "custom" else {})}


def _blocks(params, n: int) -> list[tuple[int, int, int, tuple[int, int]]]:
    """(start, stop, its shard's index, the shard's bounds) of every AutoAttack block of `n` test examples."""
    from awd.blocks import block_bounds, shard_bounds

    aa = params.autoattack
    shards = shard_bounds(n, aa.shards, aa.block_size)
    return [(start, stop, *next((i, b) for i, b in enumerate(shards) if b[0] <= start < b[1]))
            for start, stop in block_bounds(n, aa.block_size)]


class Planner:
    """Units of one params file for one executor (its estimates); `stand_in` swaps every unit for a rehearsal's."""

    def __init__(self, params, executor=None, stand_in: StandIn | None = None):
        self.params, self.executor, self.stand_in = params, executor, stand_in

    def unit(self, kind: str, fn: str, config: dict, label: str = "", modules: tuple[str, ...] = ()) -> Unit:
        if self.stand_in is not None:  # the stand-in's plan enters the key: never a real unit's key
            fn, config = self.stand_in(kind, fn, config)
        return make_unit(kind, fn, config, label, modules)

    def train_unit(self, spec: RunSpec, estimate: bool = True) -> Unit:
        """The run's unit; `estimate=False` for its key alone (gc, store push|pull): the estimate builds the model."""
        prepared = (ARTIFACTS / "prepare" / f"{spec.dataset}.npz").resolve()
        config = dict(spec.config, _prepared=str(prepared), _data_root=str(Path(self.params.data.root).resolve()))
        unit = self.unit("train", TRAIN_FN, config, describe(spec), plugin_modules(spec.config["wd_method"]))
        if estimate:  # the driver submits the longest chains first (with time_safety_factor it also sizes --time)
            unit.estimate_s = run_estimate_s(spec.config, self.executor)
        return unit

    def attack_units(self, rec: dict, n: int | None = None) -> list[Unit]:
        """The AutoAttack blocks of one trained model (a runs.json record, or the train stage's record of a model it
        has just trained). The stored unit is one block; a shard's blocks run as one job (`group`, not in the key).
        `n`: the examples attacked, when known without reading the test set (`known_test_size`)."""
        aa, adv, root = self.params.autoattack, self.params.adversarial, self.params.data.root
        n = test_size(rec["dataset"], root, aa.n_test) if n is None else n
        units = []
        for start, stop, _, (s0, s1) in _blocks(self.params, n):
            config = dict(base_eval_config(rec, root), eps=adv.eps, **aa_version(aa), seed=aa.seed,
                          batch_size=aa.batch_size, block_size=aa.block_size, start=start, stop=stop)
            unit = self.unit("autoattack", AA_FN, config, f"AA {rec['suite']} {rec['label']} [{start},{stop})")
            unit.group = f"{rec['key']}[{s0},{s1})"
            unit.estimate_s = estimate_s(unit, self.executor)
            units.append(unit)
        return units

    def prune_unit(self, rec: dict) -> Unit:
        """The pruning unit of one trained model (global non-iterative L1 at every params.prune amount)."""
        config = dict(base_eval_config(rec, self.params.data.root), amounts=list(self.params.prune.amounts))
        unit = self.unit("prune", PRUNE_FN, config, f"prune {rec['suite']} {rec['label']}")
        unit.estimate_s = estimate_s(unit, self.executor)
        return unit

    def evaluations(self, spec: RunSpec, unit: Unit) -> list[Unit]:
        """What the attack and prune stages will compute from this trained run, with the keys they collect."""
        rec = {"key": unit.key, "suite": spec.suite, "dataset": spec.dataset, "label": spec.label,
               "config": spec.config}
        out = self.attack_units(rec) if spec.suite in ATTACKED_SUITES else []
        return out + ([self.prune_unit(rec)] if spec.suite in PRUNED_SUITES else [])

    def estimated_evaluations(self, spec: RunSpec, unit: Unit) -> list[Unit]:
        """`evaluations`' shapes for the cost model alone, before the model (or the test set on disk) exists: the
        blocks of the dataset's known test size, grouped by shard; keys are placeholders, never stored."""
        params, run, out = self.params, spec.config, []
        if spec.suite in ATTACKED_SUITES:
            aa = params.autoattack
            for start, stop, shard, _ in _blocks(params, known_test_size(spec.dataset, aa.n_test)):
                config = {"train_config": run, "eps": params.adversarial.eps, **aa_version(aa),
                          "batch_size": aa.batch_size, "block_size": aa.block_size, "start": start, "stop": stop}
                out.append(Unit("autoattack", f"{unit.key}-aa{start}", AA_FN, config, group=f"{unit.key}-{shard}"))
        if spec.suite in PRUNED_SUITES:
            out.append(Unit("prune", f"{unit.key}-prune", PRUNE_FN,
                            {"train_config": run, "amounts": list(params.prune.amounts)}))
        return out

    def estimated_phase2(self, pending: list[RunSpec]) -> list[tuple[RunSpec, Unit]]:
        """Phase 2's training runs for the cost model, before what they depend on is known: every natural fixed-λ
        run's AWD run (its DoG is not estimated yet: the same cost) and the extra seeds of each pending adversarial
        sweep's method (the val-selected best is not known yet: any of its runs costs the same)."""
        later = [(s, Unit("train", f"awd-after-{i}", TRAIN_FN, dict(s.config, wd_method="awd")))
                 for i, s in enumerate(natural_fixed(self.params))]
        sweeps = {(s.study, s.label["method"]): s for s in pending if s.suite == "adversarial" and "seed" not in s.label}
        later += [(s, Unit("train", f"seed-after-{study}-{method}-{seed}", TRAIN_FN, dict(s.config, seed=int(seed))))
                  for (study, method), s in sweeps.items()
                  for seed in self.params.suites.adversarial[study].best_seeds]
        return later


def for_stage(params, executor=None) -> Planner:
    """The planner a stage driver uses: with the stand-ins of a dress rehearsal when one runs this stage (dvc repro
    starts the stage as its own process, so the rehearsal names its settings in the environment it passes on)."""
    from pipeline.rehearsal.swap import from_environment

    return Planner(params, executor, stand_in=from_environment())


def unit_for(spec: RunSpec, params, executor=None, estimate: bool = True) -> Unit:
    """A training run's real unit (no stand-in): its key is what `gc` and `store push|pull` look for."""
    return Planner(params, executor).train_unit(spec, estimate)
