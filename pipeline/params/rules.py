"""`validate`: the schema, then the rules across sections (nesterov per effective train block, best_seeds,
from_sweep rows), and the variants' effective optimizer and epochs folded in."""

from __future__ import annotations

import itertools

from pydantic import ValidationError

from awd.train_config import explain, run_problems
from jobs import bounded_yaml
from pipeline import limits
from pipeline.params.fields import ParamsError, problem_lines
from pipeline.params.schema import Params
from pipeline.run_config import merge_train


def _nesterov_problems(params: Params) -> list[tuple[str, str]]:
    p = [("train.nesterov", m) for k, m in run_problems(params.train) if k == "nesterov"]
    for suite, i, study in params.studies():
        merged, path = merge_train(params.train, study.train), f"suites.{suite}[{i}].train"
        if {"nesterov", "momentum"} & set(study.train):  # else it is the global train block's, reported once
            p += [(f"{path}.nesterov", m) for k, m in run_problems(merged) if k == "nesterov"]
        for j, run in enumerate(getattr(study, "runs", ())):
            if {"nesterov", "momentum"} & set(run.train):
                p += [(f"suites.{suite}[{i}].runs[{j}].train.nesterov", m)
                      for k, m in run_problems(merge_train(merged, run.train)) if k == "nesterov"]
    return p


def _best_seed_problems(params: Params) -> list[tuple[str, str]]:
    p = []
    for i, study in enumerate(params.suites.adversarial):
        own = merge_train(params.train, study.train)["seed"]
        if own in study.best_seeds:
            p.append((f"suites.adversarial[{i}].best_seeds", f"seed {own} is the sweep's own seed (train.seed); "
                                                             "best_seeds are the extra seeds"))
    return p


SWEEP_MATCH_RTOL = 0.02  # a Table 4 row names a swept value to 3 significant digits (0.022 for 0.0218102)


def sweep_match(adversarial_studies, dataset: str, method: str, value: float):
    """(index of the adversarial study on `dataset`, the swept value of `method` nearest `value`), or None when no
    swept value lies within SWEEP_MATCH_RTOL of it."""
    for i, study in enumerate(adversarial_studies):
        swept = study.methods.get(method, ())
        if study.dataset != dataset or not swept:
            continue
        nearest = limits.nearest_value(swept, value)
        if abs(nearest - value) <= SWEEP_MATCH_RTOL * abs(nearest):
            return i, nearest
    return None


def _from_sweep_problems(params: Params) -> list[tuple[str, str]]:
    p, adversarial = [], params.suites.adversarial
    for i, study in enumerate(params.suites.variants):
        for j, run in enumerate(study.runs):
            if not run.from_sweep:
                continue
            path = f"suites.variants[{i}].runs[{j}]"
            if sweep_match(adversarial, study.dataset, run.method, run.value) is None:
                swept = [st.methods.get(run.method, ()) for st in adversarial if st.dataset == study.dataset]
                p.append((f"{path}.value", f"from_sweep: no adversarial study on {study.dataset} sweeps a "
                          f"{run.method} value within {SWEEP_MATCH_RTOL:.0%} of {run.value:g}; swept values: "
                          f"{limits.listing(itertools.chain(*swept), sum(map(len, swept)))}"))
            optimizer = run.optimizer or study.train.get("optimizer")
            if optimizer not in (None, "sgd"):
                p.append((f"{path}.optimizer", f"from_sweep: the adversarial sweep trains with sgd, not {optimizer}"))
    return p


def _resolve_variants(params: Params) -> Params:
    """Fold each variant run's optimizer and epochs into its overrides, and give it its effective ones."""
    studies = []
    for study in params.suites.variants:
        runs = []
        for run in study.runs:
            overrides = dict(run.train)
            overrides.update({k: getattr(run, k) for k in ("optimizer", "epochs") if getattr(run, k) is not None})
            effective = merge_train(merge_train(params.train, study.train), overrides)
            value = run.value if run.value is not None else (run.values[0] if run.values else 0.0)
            runs.append(run.model_copy(update={"optimizer": effective["optimizer"], "epochs": effective["epochs"],
                                               "train": overrides, "value": value, "values": run.values or ()}))
        studies.append(study.model_copy(update={"runs": tuple(runs)}))
    suites = params.suites.model_copy(update={"variants": tuple(studies)})
    return params.model_copy(update={"suites": suites})


# --- API ------------------------------------------------------------------------------------------------------------


def validate(raw, source: str = "params.yaml") -> Params:
    """Check a parsed config; raise ParamsError listing every problem, one per line."""
    if not isinstance(raw, dict):
        got = "an empty file" if raw is None else type(raw).__name__
        raise ParamsError(problem_lines(source, [("", f"the file must be a mapping with keys "
                                               f"{', '.join(Params.model_fields)}, got {got}")]))
    try:
        bounded_yaml.check_data(raw, str(source))  # the caps of a file's reader, for data from elsewhere
        plugins = raw.get("methods") if isinstance(raw.get("methods"), dict) else {}
        params = Params.model_validate(raw, context={"plugins": plugins, **limits.grid_budget()})
    except bounded_yaml.SettingsFileError as e:
        raise ParamsError([str(e)]) from None
    except ValidationError as e:
        raise ParamsError(problem_lines(source, explain(e, Params))) from None
    problems = limits.runs_problems(params.studies()) or (  # the cheap count first: the rest walks every run
        _nesterov_problems(params) + _best_seed_problems(params) + _from_sweep_problems(params))
    if problems:
        raise ParamsError(problem_lines(source, problems))
    params = _resolve_variants(params)
    params._source = str(source)
    return params
