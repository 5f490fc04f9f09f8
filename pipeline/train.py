"""DVC stage `train`: every training run of every suite, through the run store and the configured executor.

Phase 1 trains every run whose config params alone determine; phase 2 estimates DoG from each natural fixed-λ run's
trace (paper Fig. 2), pools the seeds' estimates of a study into one DoG (their mean: the paper uses one value,
0.016 / 0.018, for all its AWD seeds) and trains one AWD run per seed with it (Table 2); it also trains the extra
seeds (`best_seeds`) of each adversarial method's val-selected best value.
"""

from __future__ import annotations

import shutil

import numpy as np

from jobs.driver import run_units_report
from jobs.job import Unit
from pipeline import outcomes, pending
from pipeline.common import ARTIFACTS, executor_config, open_store, stage_args, unit_env, write_json
from pipeline.cost import check_budget, gpu_hours, train_flops
from pipeline.params import ParamsError, check_data, load_params
from pipeline.plan import TRAIN_FN, Planner, describe, for_stage, longest_job_s, run_estimate_s, unit_for
from pipeline.suites import RunSpec, adversarial_replicates, independent_runs, natural_awd

__all__ = ["TRAIN_FN", "Flow", "describe", "longest_job_s", "main", "phase2", "pooled_dog", "run_estimate_s",
           "unit_for"]  # unit_for and the estimates live in pipeline/plan.py; named here for their callers
OUT = ARTIFACTS / "train"
PHASE2_DESC = "train (AWD with estimated DoG)"  # the phase's job name: SLURM tests and users match it
EVAL_STAGE = {"autoattack": "attack", "prune": "prune"}  # early units' jobs are named for their stage


def read_dog_trace(store, unit, study) -> dict:
    """A committed run's stored DoG trace: its DoG estimate (paper Fig. 2, awd.dog_estimate.estimate_dog_from_epochs: the mean
    DoG until the epoch where the training loss plateaus) and the curve the figure draws."""
    from awd.dog_estimate import estimate_dog_from_epochs, running_mean

    trace = np.load(store.path("train", unit.key) / "dog_trace.npz")
    losses = trace["epoch_loss"]
    dog, plateau = estimate_dog_from_epochs(trace["epoch_dog"], trace["epoch_iters"], losses,
                                            study.plateau.window, study.plateau.rel_tol)
    curve = {
        "iteration": trace["iteration"].tolist(),
        "lambda": trace["lam"].tolist(),
        "dog": trace["dog"].tolist(),
        "dog_running_mean": running_mean(trace["dog"]).tolist(),
        "epoch_train_loss": losses.tolist(),
        "iters_per_epoch": int(trace["iters_per_epoch"]),
    }
    return {"dog": float(f"{dog:.4g}"), "plateau_epoch": int(plateau), "window": study.plateau.window,
            "rel_tol": study.plateau.rel_tol, "curve": curve}


def pooled_dog(estimates: list[dict], study: int) -> float:
    """One DoG for every AWD seed of a natural study: the mean of its seeds' estimates, 4 significant digits."""
    values = [e["dog"] for e in estimates if e["study"] == study]
    return float(f"{sum(values) / len(values):.4g}")


def check_configs(specs: list[RunSpec]) -> None:
    """Every run config must be one the training loop accepts, before a single job is submitted."""
    from awd.train_config import TrainConfig

    errors = []
    for spec in specs:
        try:
            TrainConfig.from_dict(spec.config)
        except (TypeError, ValueError) as err:
            errors.append(f"  {describe(spec)}: {err}")
    if errors:
        raise ParamsError(["train: invalid run configs (nothing was submitted):", *errors])


def record(spec: RunSpec, unit, metrics: dict | None, failure=None, env: dict | None = None) -> dict:
    rec = {"suite": spec.suite, "study": spec.study, "dataset": spec.dataset, "label": spec.label,
           "key": unit.key, "config": spec.config, "metrics": metrics, "status": outcomes.train_status(metrics),
           "env": env}
    return rec if failure is None else {**rec, **outcomes.failure_fields(failure)}


def export_unfit(store, records: list[dict], params) -> None:
    from awd.checkpoint import save_npz  # torch: imported by the stage, not by what only needs the unit keys (gc)
    from pipeline.units.data import load_prepared, load_sets, train_labels

    for rec in records:
        if rec["suite"] != "underfit" or rec["label"]["method"] != "awd" or not outcomes.usable(rec):
            continue
        entry = store.path("train", rec["key"])
        correct = np.load(entry / "train_correct.npy")
        preds = np.load(entry / "train_pred.npy") if (entry / "train_pred.npy").exists() else None
        train_set, _ = load_sets(rec["config"], params.data.root)
        prepared = load_prepared(ARTIFACTS / "prepare" / f"{rec['dataset']}.npz", rec["config"])
        labels = train_labels(prepared, train_set, rec["config"]).numpy()
        idx = prepared["train_idx"][~correct]
        study = params.suites.underfit[rec["study"]]
        keep = idx[: study.n_images]
        save_npz(OUT / "unfit" / f"{rec['key']}.npz", index=keep, image=train_set.x.numpy()[keep],
                 label=labels[keep], pred=(preds[~correct][: study.n_images] if preds is not None else labels[keep]),
                 train_acc=np.float64(correct.mean()), classes=np.array(train_set.classes))


class Flow:
    """The train stage's dataflow (jobs.driver's `follow`): a unit is submitted as soon as its inputs exist.

    When a training run is done, its AutoAttack blocks and pruning unit are handed on at once (early units of the
    later stages, built by the same functions those stages use, so they carry the keys those stages collect); when
    every seed's fixed-λ run of a natural study is final, the study's AWD runs with the pooled DoG; when every sweep
    run of an adversarial study's method is final, the extra seeds of its val-selected best value. The phase-2
    records are still derived from the results afterwards by the staged code (`phase2`); this only makes them run
    sooner, never differently.
    """

    def __init__(self, params, store, executor, specs: list[RunSpec], units: list, planner: Planner | None = None):
        self.params, self.store, self.executor = params, store, executor
        self.plan = planner or Planner(params, executor)
        self.by_key: dict[str, list[RunSpec]] = {}
        self.results: dict[str, dict | None] = {}
        self.natural: dict[int, list[tuple[RunSpec, Unit]]] = {}
        self.sweeps: dict[tuple[int, str], list[tuple[RunSpec, Unit]]] = {}
        for spec, unit in zip(specs, units):
            self.by_key.setdefault(unit.key, []).append(spec)
            if spec.suite == "natural":
                self.natural.setdefault(spec.study, []).append((spec, unit))
            if spec.suite == "adversarial" and "seed" not in spec.label:
                self.sweeps.setdefault((spec.study, spec.label["method"]), []).append((spec, unit))
        self.fired: set[tuple] = set()
        self.phase2_keys: set[str] = set()
        self.evals = {unit.key: self.evaluations(spec, unit) for spec, unit in zip(specs, units)}
        for spec, unit in zip(specs, units):
            unit.tail_s = self.tail_s(spec, unit)

    def tail_s(self, spec: RunSpec, unit) -> float:
        """What waits on this run once it is done: its longest evaluation job; for a natural fixed-λ run also its
        study's AWD run; for an adversarial sweep run also the extra seeds of the best value, which start when the
        whole sweep is final (each as long as this run) and are then evaluated."""
        tail = longest_job_s(self.evals[unit.key])
        if spec.suite == "natural" and spec.label["method"] == "fixed":
            tail = max(tail, run_estimate_s(dict(spec.config, wd_method="awd"), self.executor))
        if (spec.suite == "adversarial" and "seed" not in spec.label
                and self.params.suites.adversarial[spec.study].best_seeds):
            tail += unit.estimate_s or 0.0
        return tail

    def evaluations(self, spec: RunSpec, unit) -> list:
        return self.plan.evaluations(spec, unit)

    def early_gpu_hours(self) -> float:
        """GPU-hours of the evaluations of this stage's phase-1 runs that are not done (the spending guard)."""
        from pipeline.cost import unit_flops

        return gpu_hours(sum(unit_flops(u) for units in self.evals.values() for u in units
                             if not self.store.is_done(u.kind, u.key)))

    def __call__(self, unit, result: dict | None) -> list:
        if unit.kind != "train":
            return []
        self.results[unit.key] = result
        out = []
        if outcomes.train_status(result) == outcomes.DONE:
            out += self.evals.get(unit.key) or [u for spec in self.by_key.get(unit.key, [])
                                                for u in self.evaluations(spec, unit)]
        for spec in self.by_key.get(unit.key, []):
            if spec.suite == "natural" and spec.label["method"] == "fixed":
                out += self.natural_ready(spec.study)
            elif spec.suite == "adversarial" and "seed" not in spec.label:
                out += self.replicates_ready(spec.study, spec.label["method"])
        return out

    def _final(self, runs: list[tuple[RunSpec, Unit]]) -> bool:
        return all(u.key in self.results for _, u in runs)

    def natural_ready(self, study: int) -> list:
        runs = self.natural.get(study, [])
        if ("natural", study) in self.fired or not self._final(runs):
            return []
        self.fired.add(("natural", study))
        done = [(s, u) for s, u in runs if outcomes.train_status(self.results[u.key]) == outcomes.DONE]
        estimates = [{"study": study, **read_dog_trace(self.store, u, self.params.suites.natural[study])}
                     for _, u in done]
        return self.phase2_units([natural_awd(self.params, s, pooled_dog(estimates, study)) for s, _ in done])

    def replicates_ready(self, study: int, method: str) -> list:
        runs = self.sweeps.get((study, method), [])
        if ("adversarial", study, method) in self.fired or not self._final(runs):
            return []
        self.fired.add(("adversarial", study, method))
        specs = [s for s, _ in runs]
        metrics = {i: m for i, (_, u) in enumerate(runs)
                   if (m := self.results[u.key]) is not None and outcomes.train_status(m) == outcomes.DONE}
        return self.phase2_units(adversarial_replicates(self.params, specs, metrics))

    def phase2_units(self, specs: list[RunSpec]) -> list:
        units = [self.plan.train_unit(s) for s in specs]
        for spec, unit in zip(specs, units):
            self.by_key.setdefault(unit.key, []).append(spec)
            self.evals[unit.key] = self.evaluations(spec, unit)
            unit.tail_s = longest_job_s(self.evals[unit.key])
        self.phase2_keys.update(u.key for u in units)
        return units

    def desc_of(self, unit) -> str:
        """Jobs keep the names of the stage (and phase) their units belong to, wherever they were submitted from."""
        if unit.kind != "train":
            return EVAL_STAGE[unit.kind]
        return PHASE2_DESC if unit.key in self.phase2_keys else "train"


def phase2(params, store, specs: list[RunSpec], units: list, results: dict) -> tuple[list[RunSpec], list[dict]]:
    """The runs that follow from phase 1's results (the natural AWD runs, the adversarial extra seeds) and the DoG
    estimates, in their canonical order: what runs.json and dog_estimates.json record."""
    estimates, natural, out = [], [], []
    # phase 1's natural-suite runs are exactly its fixed-λ runs, the ones the DoG is estimated from
    for spec, unit in ((s, u) for s, u in zip(specs, units) if s.suite == "natural"):
        if outcomes.train_status(results.get(unit.key)) != outcomes.DONE:
            continue  # diverged or failed (runs.json says which): no trace, so no DoG and no AWD run from it
        est = read_dog_trace(store, unit, params.suites.natural[spec.study])
        write_json(OUT / "traces" / f"{unit.key}.json", est.pop("curve"))
        estimates.append({"dataset": spec.dataset, "study": spec.study, "seed": spec.label["seed"],
                          "from_key": unit.key, **est})
        natural.append(spec)
    for e in estimates:
        e["pooled_dog"] = pooled_dog(estimates, e["study"])
    for spec in natural:
        out.append(natural_awd(params, spec, pooled_dog(estimates, spec.study)))
    out += adversarial_replicates(params, specs, {i: results[u.key] for i, u in enumerate(units)
                                                  if outcomes.train_status(results.get(u.key)) == outcomes.DONE})
    return out, estimates


def main() -> None:
    args = stage_args(__doc__)
    params = load_params(args.params)
    check_data(params)
    executor = executor_config()
    store = open_store()

    planner = for_stage(params, executor)
    specs = independent_runs(params)
    check_configs(specs)
    units = [planner.train_unit(s) for s in specs]
    flow = Flow(params, store, executor, specs, units, planner)
    check_budget(units, store, executor, "train", extra_gpu_hours=gpu_hours(sum(
        train_flops(dict(s.config, wd_method="awd")) for s, u in zip(specs, units)
        if s.suite == "natural" and not store.is_done("train", u.key)))  # their AWD runs follow (phase 2)
        + flow.early_gpu_hours())  # and the evaluations submitted as soon as each model is trained
    # one driver for the whole DAG: phase 2 and the later stages' units start as soon as their inputs exist
    report = run_units_report(units, store, executor, desc="train", follow=flow, awaited=("train",),
                              desc_of=flow.desc_of)
    results, failures = report.results, {f.unit.key: f for f in report.failures}

    shutil.rmtree(OUT, ignore_errors=True)
    (OUT / "traces").mkdir(parents=True)
    (OUT / "unfit").mkdir(parents=True)
    phase2_specs, estimates = phase2(params, store, specs, units, results)
    phase2_units = [planner.train_unit(s) for s in phase2_specs]
    missing = [u for u in phase2_units if u.key not in results and u.key not in failures]
    if missing:  # a safety net: the flow hands on every phase-2 run; this finds them all done (or failed) already
        check_budget(missing, store, executor, PHASE2_DESC)
        report2 = run_units_report(missing, store, executor, desc=PHASE2_DESC)
        results.update(report2.results)
        failures.update({f.unit.key: f for f in report2.failures})
    for spec, unit in zip(phase2_specs, phase2_units):
        if spec.suite == "natural" and outcomes.train_status(results.get(unit.key)) == outcomes.DONE:
            curve = read_dog_trace(store, unit, params.suites.natural[spec.study])["curve"]
            write_json(OUT / "traces" / f"{unit.key}.json", curve)

    records = [record(s, u, results.get(u.key), failures.get(u.key), unit_env(store, u) if u.key in results else None)
               for s, u in zip(specs + phase2_specs, units + phase2_units)]
    write_json(OUT / "dog_estimates.json", estimates)
    export_unfit(store, records, params)
    write_json(OUT / "runs.json", records)
    diverged = sum(r["status"] == outcomes.DIVERGED for r in records)
    print(f"train: {len(records)} runs ({len({r['key'] for r in records})} distinct) recorded in {OUT}/runs.json"
          + (f"; {diverged} diverged (a result: marked in the tables, never retried)" if diverged else ""))
    failed = [failures[u.key] for u in units + phase2_units if u.key in failures]
    outcomes.report("train", failed, len(units) + len(phase2_units))
    pending.write_mark("train", failed)  # a dependency: what `dvc status` compares (pipeline/pending.py)


if __name__ == "__main__":
    from pipeline.common import run_entry_point

    run_entry_point(main)
