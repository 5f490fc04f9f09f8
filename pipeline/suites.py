"""Params -> the training runs of every suite (one RunSpec per cell of every study)."""

from __future__ import annotations

from dataclasses import dataclass, field

from awd.train_config import TrainConfig, value_key
from pipeline.params import SUITE_NAMES, method_path, plugin_param, sweep_match
from pipeline.run_config import base_run_config

# Suites whose runs are adversarially trained and therefore AutoAttacked on the test set.
ATTACKED_SUITES = ("adversarial", "variants")
# Suites whose runs are pruned (Table 6, Figure 5).
PRUNED_SUITES = ("lr_sensitivity",)


@dataclass(frozen=True)
class RunSpec:
    suite: str
    study: int
    dataset: str
    label: dict = field(hash=False)
    config: dict = field(hash=False)


def _studies(params, suite: str):
    return list(enumerate(getattr(params.suites, suite, None) or []))


# Settings a run does not use are pinned to TrainConfig's defaults, so that e.g. an SGD run's key ignores asam_rho
# and identical cells of different suites share one trained run.
_DEFAULT = {k: f.default for k, f in TrainConfig.model_fields.items()}


def _with_method(params, base: dict, method: str, value: float, **extra) -> dict:
    """`method` is a params name: a built-in, or a plugin named in params.methods (its run config names the class
    by package.module:Class, and its value goes into `wd`)."""
    config = dict(base, **extra)
    config["wd_method"] = method_path(method, params.methods)
    config["wd"] = config["dog"] = 0.0
    if method != "none":
        config[value_key(method)] = float(value)
    if config["wd_method"] != method and plugin_param(config["wd_method"]) == "dog":  # the plugin's class says where
        config["wd"], config["dog"] = 0.0, float(value)
    if config["optimizer"] == "sgd":
        config.update({k: _DEFAULT[k] for k in ("asam_rho", "asam_eta", "asam_awd_grad")})
    if method != "awd":
        config["awd_ema"] = _DEFAULT["awd_ema"]
    if method != "adadecay":
        config["adadecay_alpha"] = _DEFAULT["adadecay_alpha"]
    return config


def _methods(study):
    """(method, value) pairs of a study that compares methods, in the order params lists them."""
    return [(method, v) for method, values in study.methods.items() for v in values]


def natural_fixed(params) -> list[RunSpec]:
    specs = []
    for i, study in _studies(params, "natural"):
        base = base_run_config(params, study, adversarial=False)
        for seed in study.seeds:
            config = _with_method(params, base, "fixed", study.wd, seed=int(seed))
            specs.append(RunSpec("natural", i, study.dataset, {"method": "fixed", "value": study.wd, "seed": seed}, config))
    return specs


def natural_awd(params, fixed: RunSpec, dog: float) -> RunSpec:
    """The AWD run that uses the DoG estimated from `fixed`'s trace (Table 2)."""
    study = params.suites.natural[fixed.study]
    base = base_run_config(params, study, adversarial=False)
    seed = fixed.label["seed"]
    config = _with_method(params, base, "awd", dog, seed=int(seed))
    return RunSpec("natural", fixed.study, fixed.dataset, {"method": "awd", "value": dog, "seed": seed}, config)


def independent_runs(params) -> list[RunSpec]:
    """Every run whose config is known from params alone (all but the natural suite's AWD runs)."""
    specs = natural_fixed(params)
    for i, study in _studies(params, "grid"):
        base = base_run_config(params, study, adversarial=False)
        for lr in study.lrs:
            for seed in _seeds(study):
                for method, value in _methods(study):  # AWD too: Fig. 1(c) / footnote 2, AWD over lr × DoG
                    label = ({"name": study.name, "lr": lr, "wd": value} if method == "fixed" else
                             {"name": study.name, "lr": lr, "method": method, "value": value})
                    specs.append(RunSpec("grid", i, study.dataset, {**label, **seed},
                                         _with_method(params, base, method, value, lr=float(lr), **seed)))
    for i, study in _studies(params, "adversarial"):
        base = base_run_config(params, study, adversarial=True)
        for method, value in _methods(study):
            specs.append(RunSpec("adversarial", i, study.dataset, {"method": method, "value": value},
                                 _with_method(params, base, method, value)))
    for i, study in _studies(params, "variants"):
        for run in study.runs:
            if run.from_sweep:  # Table 4's SGD rows are Table 3's runs: the same config, so the same key
                j, value = sweep_match(params.suites.adversarial, study.dataset, run.method, run.value)
                config = _with_method(params, base_run_config(params, params.suites.adversarial[j], adversarial=True),
                                      run.method, value)
                label = {"name": run.name, "method": run.method, "value": value, "optimizer": "sgd",
                         "from_sweep": True}
                # the sweep's seed is its run; another is the run an extra seed of the sweep's best would be
                specs += [RunSpec("variants", i, study.dataset, {**label, **seed}, dict(config, **seed))
                          for seed in _seeds(study)]
                continue
            base = base_run_config(params, study, adversarial=True, overrides=run.overrides())
            for seed in _seeds(study):
                for value in run.candidates():  # several: the starred rows' re-tuning, best by val PGD-20
                    label = {"name": run.name, "method": run.method, "value": value, "optimizer": run.optimizer}
                    specs.append(RunSpec("variants", i, study.dataset, {**label, **seed},
                                         _with_method(params, base, run.method, value, optimizer=run.optimizer,
                                                      **seed)))
    for i, study in _studies(params, "noisy"):
        base = base_run_config(params, study, adversarial=False)
        for rate in study.rates:
            for seed in _seeds(study):
                for method, value in _methods(study):
                    config = _with_method(params, base, method, value, noise_rate=float(rate),
                                          noise_seed=int(study.noise_seed) if rate > 0 else 0, **seed)
                    specs.append(RunSpec("noisy", i, study.dataset,
                                         {"rate": rate, "method": method, "value": value, **seed}, config))
    for i, study in _studies(params, "lr_sensitivity"):
        base = base_run_config(params, study, adversarial=False)
        for lr in study.lrs:
            for seed in study.seeds:
                for method, value in _methods(study):
                    label = {"lr": lr, "method": method, "value": value, "seed": seed}
                    config = _with_method(params, base, method, value, lr=float(lr), seed=int(seed))
                    specs.append(RunSpec("lr_sensitivity", i, study.dataset, label, config))
    for i, study in _studies(params, "underfit"):
        base = base_run_config(params, study, adversarial=False)
        for seed in _seeds(study):
            for method, value in _methods(study):
                specs.append(RunSpec("underfit", i, study.dataset, {"method": method, "value": value, **seed},
                                     _with_method(params, base, method, value, **seed)))
    return specs


def _seeds(study) -> list[dict]:
    """The seed override (and label entry) of each run of a study with an optional `seeds:`; unset, one run with
    the train section's seed and no seed in its label or config (so the keys stay those of before the field)."""
    if "seeds" not in study.model_fields_set:
        return [{}]
    return [{"seed": int(s)} for s in study.seeds]


def best_by_val(specs: list[RunSpec], metrics: dict[int, dict]) -> dict[tuple, RunSpec]:
    """(study, method) -> the spec with the highest val PGD-20 robust accuracy (ties: smaller value), the same
    rule as the results' Table 3. `metrics[i]` are the metrics of specs[i]."""
    best: dict[tuple, tuple] = {}
    for i, spec in enumerate(specs):
        acc = metrics[i].get("val_robust_acc")
        rank = (-(acc if acc is not None else -1.0), spec.label["value"])
        tag = (spec.study, spec.label["method"])
        if tag not in best or rank < best[tag][0]:
            best[tag] = (rank, spec)
    return {tag: spec for tag, (_, spec) in best.items()}


def adversarial_replicates(params, specs: list[RunSpec], metrics: dict[int, dict]) -> list[RunSpec]:
    """The extra seeds (`best_seeds`) of each method's val-selected best sweep value: the compared best runs get
    n >= 2 without re-running the whole sweep per seed. `metrics`: index in `specs` -> metrics of the runs that
    finished (diverged and failed runs left out)."""
    sweep = [(s, metrics[i]) for i, s in enumerate(specs)  # a diverged or failed run is never the best
             if s.suite == "adversarial" and "seed" not in s.label and i in metrics]
    best = best_by_val([s for s, _ in sweep], dict(enumerate(m for _, m in sweep)))
    out = []
    for (study, _method), spec in sorted(best.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        for seed in params.suites.adversarial[study].best_seeds:
            label = dict(spec.label, seed=int(seed))
            out.append(RunSpec("adversarial", study, spec.dataset, label, dict(spec.config, seed=int(seed))))
    return out


def datasets_used(params) -> list[str]:
    return sorted({study.dataset for suite in SUITE_NAMES for _, study in _studies(params, suite)})


def noise_settings(params, dataset: str) -> list[tuple[float, int]]:
    """(rate, seed) pairs of label noise the noisy studies of `dataset` train on."""
    pairs = {(float(r), int(s.noise_seed)) for _, s in _studies(params, "noisy") if s.dataset == dataset
             for r in s.rates}
    return sorted(p for p in pairs if p[0] > 0)
