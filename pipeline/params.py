"""params.yaml and configs/*.yaml: load, validate, expand grids, build run-config bases.

The schema is pydantic models composed from `awd.train_config.TrainConfig`: the `train:` section and the data and
adversarial sections take their fields, ranges and defaults from it. Sections: `train` and `suites` are required;
`data`, `adversarial`, `autoattack`, `prune` and `methods` may be omitted. Every suite is optional: an absent, empty
or null suite is not run. In `train` only model, epochs, batch_size and lr are required. A study's `train:` block
overrides any train key for that study; overriding `model` without `model_kw` resets `model_kw` to `{}`.

A study that compares weight-decay methods lists them as `methods: {fixed: <grid>, awd: <grid>, <plugin>: <grid>}`;
`wds:`/`dogs:` (`wd:`/`dog:`) are shorthands for `fixed`/`awd`. A plugin method is named in the top-level
`methods:` section: `methods: {sgdw: "examples.sgdw:SGDW"}`.

Grid values are a list of numbers or `{geomspace: [start, stop, num]}` / `{linspace: [start, stop, num]}`,
expanded to floats rounded to 6 significant digits with exact endpoints.

Errors: every problem of a file at once, one line each `file: dotted.key: what is allowed, got what`, raised as one
`ParamsError`. Executor settings are not params (executor.yaml / $AWD_EXECUTOR, read by `jobs/`). No torch here.
Size caps (file, values, depth, lists: jobs/bounded_yaml.py; grids, seeds, runs: pipeline/limits.py) are checked
before anything of that size is built.
"""

from __future__ import annotations

import functools
import itertools
import re
import sys
from pathlib import Path
from typing import Annotated, ClassVar

from pydantic import (
    AfterValidator,
    BeforeValidator,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    WrapValidator,
    create_model,
    model_validator,
)
from ruamel.yaml.error import YAMLError

from awd.checks import is_int, number_problem, range_text
from awd.train_config import (
    DATASET_NAMES,
    METHODS,
    MODEL_NAMES,
    OPTIMIZERS,
    PLUGIN_PATH,
    Choice,
    Flag,
    Int,
    Model,
    Num,
    Real,
    Text,
    TrainConfig,
    did_you_mean,
    explain,
    method_value_problem,
    problems_error,
    run_problems,
)
from jobs import bounded_yaml
from pipeline import limits
from pipeline.limits import show

__all__ = [
    "ParamsError", "Params", "load_params", "validate", "resolve_train", "base_run_config", "check_data",
    "check_method", "sweep_match", "to_dict", "RUN_CONFIG_KEYS", "DATASET_NAMES", "MODEL_NAMES", "METHODS",
    "OPTIMIZERS", "SUITE_NAMES",
]

AUTOATTACK_VERSIONS = ("standard", "plus", "rand")
RUN_CONFIG_KEYS = tuple(TrainConfig.model_fields)  # docs/design.md "Run config", in that order
SIGNIFICANT_DIGITS = 6

# Natural runs get these constants so that editing the adversarial section never changes their cache keys.
# Steps are 1, the least TrainConfig accepts; with adversarial false nothing reads them.
NEUTRAL_ADVERSARIAL = {"adversarial": False, "eps": 0.0, "step_size": 0.0, "train_steps": 1, "val_steps": 1,
                       "bn_mode": "train"}


class ParamsError(ValueError):
    """Every problem of one config file, one per line: `<file>: <dotted.key[0]>: <what is wrong and allowed>`."""

    def __init__(self, lines: list[str]):
        self.lines = list(lines)
        super().__init__("\n".join(self.lines))


def _lines(source, problems) -> list[str]:
    return [f"{source}: {key or '<top level>'}: {msg}" for key, msg in problems]


# --- field types ----------------------------------------------------------------------------------------------------

def _type(key: str):
    """A TrainConfig field's type with its rule: the very objects TrainConfig validates with."""
    info = TrainConfig.model_fields[key]
    return Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation


Epochs, NoiseSeed = _type("epochs"), _type("noise_seed")


def _bounds(name: str) -> dict:
    """The range of a TrainConfig field, to apply to a grid of its values."""
    [num] = [m for m in TrainConfig.model_fields[name].metadata if isinstance(m, Num)]
    return {k: getattr(num, k) for k in ("gt", "ge", "lt", "le") if getattr(num, k) is not None}


def _check(problems_of):
    """A wrap validator from `problems_of(value, context) -> (normalised value, [(key suffix, message)])`."""
    def check(value, handler, info):
        out, problems = problems_of(value, info.context)
        if problems:
            raise problems_error(problems)
        return out
    return WrapValidator(check)


def _round(x: float) -> float:
    """Grid values are rounded so that a value and the cache key built from it do not depend on float noise."""
    return float(f"{x:.{SIGNIFICANT_DIGITS}g}")


def expand_grid(value, bounds: dict, context=None):
    """(values, problems) of a grid: a list of numbers or {geomspace|linspace: [start, stop, num]}, sized first."""
    if isinstance(value, dict):
        if len(value) != 1 or next(iter(value)) not in ("geomspace", "linspace"):
            keys = ", ".join(map(show, value)) or "none"
            return None, [("", f"a computed grid needs exactly one key, geomspace or linspace; got keys {keys}")]
        (kind, spec), = value.items()
        if not isinstance(spec, list) or len(spec) != 3:
            return None, [(f".{kind}", f"must be [start, stop, num], got {show(spec)}")]
        ends = {"gt": 0} if kind == "geomspace" else {}
        problems = [(f".{kind}[{i}]", p) for i, p in enumerate((
            number_problem(spec[0], **ends), number_problem(spec[1], **ends),
            number_problem(spec[2], integer=True, ge=1))) if p]
        if problems or (problems := limits.grid_points_problem(kind, int(spec[2]), context)):
            return None, [(f".{kind}[2]", problems)] if isinstance(problems, str) else problems
        start, stop, num = float(spec[0]), float(spec[1]), int(spec[2])
        at = (lambda t: start + (stop - start) * t) if kind == "linspace" else (lambda t: start * (stop / start) ** t)
        values = [start] if num == 1 else [at(i / (num - 1)) for i in range(num - 1)] + [stop]  # exact endpoint
        bad = [v for v in values if number_problem(v, **bounds)]
        if bad:
            return None, [(f".{kind}", f"{kind} gives {show(bad[0])}; values must be {range_text(**bounds)}")]
        rounded = [_round(v) for v in values]
        name = lambda i: f"{kind} value #{i}"  # noqa: E731
        where = lambda i: f".{kind}"  # noqa: E731
    else:
        if not isinstance(value, list):
            return None, [("", "must be a list of numbers or {geomspace|linspace: [start, stop, num]}, got "
                               f"{show(value)}")]
        if not value:
            return None, [("", "empty grid: give at least one value")]
        if too_many := limits.grid_points_problem("a list", len(value), context):
            return None, [("", too_many)]
        problems = [(f"[{i}]", p) for i, v in enumerate(value) if (p := number_problem(v, **bounds))]
        if problems:
            return None, problems
        rounded = [_round(v) for v in value]
        name = lambda i: f"{{here}}[{i}]"  # noqa: E731
        where = lambda i: f"[{i}]"  # noqa: E731
    for i, first in limits.duplicates(rounded)[:1]:
        shown = show(value[i]) if isinstance(value, list) else show(rounded[i])
        return None, [(where(i), f"duplicate grid value {shown} (same as {name(first)} after "
                                 f"rounding to {SIGNIFICANT_DIGITS} significant digits)")]
    return tuple(rounded), []


def Grid(**bounds):  # noqa: N802 - used as a type
    return Annotated[tuple[float, ...], _check(lambda v, context: expand_grid(v, bounds, context))]


def _seeds(value, allow_empty: bool):
    if allow_empty and value == []:
        return (), []
    if not isinstance(value, list) or not value:
        return None, [("", f"must be a non-empty list of integer seeds, got {show(value)}")]
    if len(value) > limits.MAX_SEEDS:
        return None, [("", f"a list of {len(value)} seeds; at most {limits.MAX_SEEDS} allowed")]
    problems = [(f"[{i}]", p) for i, v in enumerate(value) if (p := number_problem(v, integer=True, ge=0))]
    first: dict = {}
    problems += [(f"[{i}]", f"duplicate seed {show(v)}; seeds must be unique") for i, v in enumerate(value)
                 if is_int(v) and first.setdefault(v, i) != i]
    return tuple(int(v) for v in value), problems


Seeds = Annotated[tuple[int, ...], _check(lambda v, _: _seeds(v, allow_empty=False))]
ExtraSeeds = Annotated[tuple[int, ...], _check(lambda v, _: _seeds(v, allow_empty=True))]


def _section(name: str, keys, *, required=(), partial=False, hints=None, **extra):
    """A pydantic model of TrainConfig's `keys` (their types, ranges and defaults), plus `extra` fields."""
    fields = {}
    for key in keys:
        info = TrainConfig.model_fields[key]
        default = ... if key in required else None if partial else info.get_default(call_default_factory=True)
        fields[key] = (_type(key), default)
    model = create_model(name, __base__=Model, **fields, **extra)
    model.hints = dict(hints or {})
    return model


# --- sections -------------------------------------------------------------------------------------------------------

_EXECUTOR_HINT = ("executor settings are not params: put them in executor.yaml (or the file $AWD_EXECUTOR names), "
                  "read by jobs/executors.py; they never enter a run's cache key")
# Run-config keys that are not train keys, and where they are set.
_ELSEWHERE = {
    **{k: f"{k!r} is set per study (methods / wds / dogs / wd / dog), not in train" for k in
       ("wd", "wds", "dog", "dogs", "wd_method", "methods")},
    "dataset": "the dataset is set per study (suites.<suite>[i].dataset), not in train",
    **{k: f"{k!r} belongs in the top-level adversarial section, not in train"
       for k in ("eps", "step_size", "train_steps", "val_steps", "bn_mode", "adversarial")},
    **{k: f"{k!r} belongs in the top-level data section, not in train" for k in ("val_fraction", "split_seed")},
    **{k: f"{k!r} is set by the noisy suite (rates, noise_seed), not in train" for k in ("noise_rate", "noise_seed")},
    "executor": _EXECUTOR_HINT,
}
TRAIN_KEYS = tuple(k for k in RUN_CONFIG_KEYS if k not in _ELSEWHERE)
TRAIN_REQUIRED = ("model", "epochs", "batch_size", "lr")

TrainSection = _section("TrainSection", TRAIN_KEYS, required=TRAIN_REQUIRED, hints=_ELSEWHERE)
TrainOverrides = _section("TrainOverrides", TRAIN_KEYS, partial=True, hints=_ELSEWHERE)
FullTrain = Annotated[TrainSection, AfterValidator(lambda m: m.model_dump())]
Overrides = Annotated[TrainOverrides, AfterValidator(lambda m: m.model_dump(exclude_unset=True))]

DataParams = _section("DataParams", ("val_fraction", "split_seed"), root=(Text, "data/raw"), download=(Flag, False))
# Only adversarial runs read this section, so eps and step_size are also > 0 here (TrainConfig: [0, 1], 0 when natural).
_ATTACK = {k: (Real(**{**{b: v for b, v in _bounds(k).items() if b != "ge"}, "gt": 0}),
               TrainConfig.model_fields[k].default) for k in ("eps", "step_size")}
AdversarialParams = _section("AdversarialParams", ("train_steps", "val_steps", "bn_mode"), **_ATTACK)


class AutoAttackParams(Model):
    version: Choice(AUTOATTACK_VERSIONS, "autoattack version") = "standard"
    n_test: Int(ge=1) | None = None  # pydantic evaluates the annotation
    shards: Int(ge=1) = 1
    batch_size: Int(ge=1) = 500
    block_size: Int(ge=1) = 500  # examples attacked together with one seed; part of the result, so of the key
    seed: Int(ge=0) = 0

    @model_validator(mode="after")
    def _shards_fit(self):
        if self.n_test is not None and self.shards > self.n_test:
            raise problems_error([(".shards", f"{self.shards} shards for n_test={self.n_test} examples would "
                                              "leave empty shards; must be <= n_test")])
        return self


class PruneParams(Model):
    amounts: Grid(gt=0, lt=1) = (0.4, 0.5, 0.6, 0.7, 0.8, 0.9)  # awd.prune: a fraction of the weights


class Plateau(Model):
    window: Int(ge=1)
    rel_tol: Real(gt=0, lt=1)


# --- studies --------------------------------------------------------------------------------------------------------


def _plugins(info: ValidationInfo) -> dict:
    """The top-level `methods:` section, passed by `validate` as context so that studies can check names."""
    return (info.context or {}).get("plugins", {})


def _none_is_empty(v):
    return () if v is None else v


class Study(Model):
    noun: ClassVar[str] = "studies"
    dataset: Choice(DATASET_NAMES, "dataset")
    train: Overrides = {}


class Compared(Study):
    """A study comparing weight-decay methods. `methods` maps each method's params name to its values; after
    validation it always holds them, whichever form was written, and the shorthands mirror fixed/awd."""

    SHORTHANDS: ClassVar[dict[str, str]] = {}  # shorthand key -> method
    REQUIRED: ClassVar[tuple[str, ...]] = ()  # shorthands required when `methods` is not given
    SCALAR: ClassVar[bool] = False  # the shorthands are one value (wd/dog), not a grid
    methods: dict[str, Grid()] = {}

    @model_validator(mode="after")
    def _methods(self, info: ValidationInfo):
        short = {k: m for k, m in self.SHORTHANDS.items() if getattr(self, k) is not None}
        both = "/".join(self.SHORTHANDS.values())
        if self.methods and short:
            raise problems_error([(".methods", f"give either methods or {'/'.join(self.SHORTHANDS)} (the "
                                               f"shorthands for {both}), not both; methods can list {both} too")])
        if "methods" in self.model_fields_set and not self.methods:
            raise problems_error([(".methods", "empty: list at least one method and its values")])
        missing = [k for k in self.REQUIRED if k not in short]
        if not self.methods and missing:
            raise problems_error([("", f"missing required key(s): {', '.join(missing)} (or list "
                                       "methods: {name: values})")])
        if self.methods:
            values = dict(self.methods)
            where = {m: f".methods.{m}" for m in values}
        else:
            values = {m: _as_tuple(getattr(self, k)) for k, m in short.items()}
            where = {m: f".{k}" for k, m in short.items()}
        scalar = self.SCALAR and not self.methods
        problems = [(f".methods.{m}", e) for m in self.methods if (e := check_method(m, _plugins(info)))]
        problems += [(where[m] if scalar else f"{where[m]}[{i}]", p) for m, vals in values.items()
                    for i, v in enumerate(vals) if (p := method_value_problem(m, v))]
        if problems:
            raise problems_error(problems)
        mirror = {k: values[m][0] if self.SCALAR else values[m] for k, m in self.SHORTHANDS.items() if m in values}
        return self.model_copy(update={"methods": values, **mirror})


def _as_tuple(v) -> tuple:
    return v if isinstance(v, tuple) else (v,)


class NaturalStudy(Study):
    wd: Real()
    seeds: Seeds
    plateau: Plateau

    @model_validator(mode="after")
    def _fixed_value(self):
        problem = method_value_problem("fixed", self.wd)
        if problem:
            raise problems_error([(".wd", problem)])
        return self


class _Grids(Compared):
    SHORTHANDS: ClassVar[dict[str, str]] = {"wds": "fixed", "dogs": "awd"}
    REQUIRED: ClassVar[tuple[str, ...]] = ("wds", "dogs")
    wds: Grid() | None = None
    dogs: Grid() | None = None


class _Values(Compared):
    SHORTHANDS: ClassVar[dict[str, str]] = {"wd": "fixed", "dog": "awd"}
    REQUIRED: ClassVar[tuple[str, ...]] = ("wd", "dog")
    SCALAR: ClassVar[bool] = True
    wd: Real() | None = None
    dog: Real() | None = None


class GridStudy(_Grids):
    REQUIRED: ClassVar[tuple[str, ...]] = ("wds",)  # dogs: AWD over lr × DoG (paper footnote 2, Fig. 1(c))
    name: Text
    lrs: Grid(**_bounds("lr"))


class AdversarialStudy(_Grids):
    best_seeds: ExtraSeeds = ()  # extra seeds of each method's val-selected best value


class NoisyStudy(_Grids):
    rates: Grid(**_bounds("noise_rate"))
    noise_seed: NoiseSeed = 0


class LrSensitivityStudy(_Values):
    lrs: Grid(**_bounds("lr"))
    seeds: Seeds


class UnderfitStudy(_Values):
    n_images: Int(ge=1)


class VariantRun(Model):
    """After `validate`, `optimizer` and `epochs` are the effective ones (the run's, else its study's, else the
    global train's) and `train` holds the run's overrides with both folded in: pass it as `overrides=`."""

    noun: ClassVar[str] = "runs"
    name: Text
    method: Text
    value: Real() | None = None
    values: Grid() | None = None  # a re-tuning grid (Table 4's starred rows): best by val PGD-20
    from_sweep: Flag = False  # the adversarial sweep's run at the nearest swept value, no run of its own
    optimizer: Choice(OPTIMIZERS, "optimizer") | None = None
    epochs: Epochs | None = None
    train: Overrides = {}

    @model_validator(mode="after")
    def _rules(self, info: ValidationInfo):
        p, method = [], self.method
        if e := check_method(method, _plugins(info)):
            raise problems_error([(".method", e)])
        if self.values is not None:
            if self.value is not None:
                p.append((".values", "give either value (one run) or values (a re-tuning grid), not both"))
            elif method == "none":
                p.append((".values", "method none takes no values"))
            if self.from_sweep:
                p.append((".from_sweep", "a re-tuning grid (values) cannot come from the sweep; use value"))
            p += [(f".values[{i}]", e) for i, v in enumerate(self.values) if (e := method_value_problem(method, v))]
        elif self.value is None and method != "none":
            p.append(("", f"missing required key(s): value (method {method} needs one)"))
        elif problem := method_value_problem(method, self.value):
            p.append((".value", problem))
        if self.from_sweep:
            p += [(f".{key}", "a row reusing the adversarial sweep's run takes the sweep's settings; remove "
                              f"{key} (or set from_sweep: false to train a separate run)")
                  for key in ("epochs", "train") if getattr(self, key)]
        p += [(f".train.{key}", f"{key} is already set on the run ({getattr(self, key)!r}); set it once")
              for key in ("optimizer", "epochs") if getattr(self, key) is not None and key in self.train]
        if p:
            raise problems_error(p)
        return self

    def candidates(self) -> tuple[float, ...]:
        return self.values or (self.value,)

    def overrides(self) -> dict:
        return dict(self.train)


class VariantsStudy(Study):
    runs: tuple[VariantRun, ...]

    @model_validator(mode="after")
    def _names(self):
        names = [r.name for r in self.runs]
        p = [(f".runs[{i}].name", f"duplicate run name {show(names[i])}; names must be unique in a study")
             for i, _ in limits.duplicates(names)]
        if not names:
            p.append((".runs", "empty: give at least one run"))
        if p:
            raise problems_error(p)
        return self


def _studies(model):
    return Annotated[tuple[model, ...], BeforeValidator(_none_is_empty)]


class Suites(Model):
    natural: _studies(NaturalStudy) = ()  # Table 2, Figure 2: fixed λ -> estimated DoG -> AWD
    grid: _studies(GridStudy) = ()
    adversarial: _studies(AdversarialStudy) = ()
    variants: _studies(VariantsStudy) = ()
    noisy: _studies(NoisyStudy) = ()
    lr_sensitivity: _studies(LrSensitivityStudy) = ()
    underfit: _studies(UnderfitStudy) = ()

    @model_validator(mode="after")
    def _grid_names(self):
        seen, p = {}, []
        for i, study in enumerate(self.grid):
            tag = (study.dataset, study.name)
            if tag in seen:
                p.append((f".grid[{i}].name", f"grid name {study.name!r} is already used for dataset "
                                              f"{study.dataset} by grid[{seen[tag]}]; names label the results"))
            seen.setdefault(tag, i)
        if p:
            raise problems_error(p)
        return self


SUITE_NAMES = tuple(Suites.model_fields)
for _name, _field in Suites.model_fields.items():  # "must be a list of natural studies"
    _field.annotation.__args__[0].noun = f"{_name} studies"


def _plugins_checked(plugins, context=None):
    """The top-level `methods:` section: a plugin method's params name -> "package.module:Class"."""
    if not isinstance(plugins, dict):
        return None, [("", f"must be a mapping of method names to package.module:Class, got {show(plugins)}")]
    p = []
    for name, path in plugins.items():
        if name in METHODS or not (isinstance(name, str) and re.fullmatch(r"[A-Za-z_][\w-]*", name)):
            p.append((f".{name}", f"a plugin's name must be a word that is not a built-in method "
                                  f"({', '.join(METHODS)}), got {show(name)}"))
        elif not (isinstance(path, str) and PLUGIN_PATH.match(path)):
            p.append((f".{name}", f"must be package.module:Class, got {show(path)}"))
    return dict(plugins), p


Plugins = Annotated[dict[str, str], _check(_plugins_checked)]


class Params(Model):
    hints: ClassVar[dict[str, str]] = {k: _EXECUTOR_HINT for k in ("executor", "slurm", "submitit")}
    data: DataParams = DataParams()
    train: FullTrain
    adversarial: AdversarialParams = AdversarialParams()
    autoattack: AutoAttackParams = AutoAttackParams()
    prune: PruneParams = PruneParams()
    methods: Plugins = {}
    suites: Suites
    _source: str = PrivateAttr("params.yaml")

    @property
    def source(self) -> str:
        return self._source

    def studies(self, suite: str | None = None):
        """(suite, index, study) for every study, in SUITE_NAMES order, or of one suite."""
        for name in (suite,) if suite else SUITE_NAMES:
            for i, study in enumerate(getattr(self.suites, name)):
                yield name, i, study

    def datasets(self) -> list[str]:
        return sorted({study.dataset for _, _, study in self.studies()})


# --- rules across sections ------------------------------------------------------------------------------------------


def check_method(name, plugins: dict) -> str | None:
    """What is wrong with a method's params name (an error text), or None: a built-in method, or one named in the
    top-level `methods:` section whose class imports and implements the method interface (awd/methods.py)."""
    if name in METHODS:
        return None
    if name in plugins:
        path = plugins[name]
        return _plugin_class(path, name)[1] if isinstance(path, str) and PLUGIN_PATH.match(path) else None
    path = _entry_point(name)
    if path is not None:  # an installed package's method, found without a methods: line
        return _plugin_class(path, name)[1]
    known = [*METHODS, *(p for p in plugins if p not in METHODS)]
    return (f"unknown weight-decay method {show(name)}{did_you_mean(name, known)}; allowed: {', '.join(known)} "
            "(a plugin method is named in the top-level methods section: {name: package.module:Class})")


@functools.cache
def _plugin_class(path: str, name: str | None = None) -> tuple[type | None, str | None]:
    """(the class, None) or (None, why it cannot be used): imported once per process, before anything is submitted."""
    from awd.methods import MethodError, load_method

    try:
        return load_method(path, name), None
    except MethodError as e:
        return None, str(e)
    except Exception as e:  # the plugin's own import-time failure: say so instead of a traceback
        return None, f"method {name or path!r} ({path}): importing it failed: {type(e).__name__}: {e}"


def plugin_param(path: str) -> str:
    """The run-config field a plugin's value goes into (its class's `param`: "wd" or "dog")."""
    cls, problem = _plugin_class(path)
    if cls is None:
        raise ParamsError(problem)
    return cls.param


def method_path(name: str, plugins: dict) -> str:
    """The run config's `wd_method` of a method: a built-in's name, a plugin's package.module:Class."""
    return name if name in METHODS else plugins[name] if name in plugins else _entry_point(name) or name


def _entry_point(name) -> str | None:
    from awd.methods import entry_point_path

    return entry_point_path(name) if isinstance(name, str) and name.isidentifier() else None


def _nesterov_problems(params: Params) -> list[tuple[str, str]]:
    p = [("train.nesterov", m) for k, m in run_problems(params.train) if k == "nesterov"]
    for suite, i, study in params.studies():
        merged, path = _merge(params.train, study.train), f"suites.{suite}[{i}].train"
        if {"nesterov", "momentum"} & set(study.train):  # else it is the global train block's, reported once
            p += [(f"{path}.nesterov", m) for k, m in run_problems(merged) if k == "nesterov"]
        for j, run in enumerate(getattr(study, "runs", ())):
            if {"nesterov", "momentum"} & set(run.train):
                p += [(f"suites.{suite}[{i}].runs[{j}].train.nesterov", m)
                      for k, m in run_problems(_merge(merged, run.train)) if k == "nesterov"]
    return p


def _best_seed_problems(params: Params) -> list[tuple[str, str]]:
    p = []
    for i, study in enumerate(params.suites.adversarial):
        own = _merge(params.train, study.train)["seed"]
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
            effective = _merge(_merge(params.train, study.train), overrides)
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
        raise ParamsError(_lines(source, [("", f"the file must be a mapping with keys "
                                               f"{', '.join(Params.model_fields)}, got {got}")]))
    try:
        bounded_yaml.check_data(raw, str(source))  # the caps of a file's reader, for data from elsewhere
        plugins = raw.get("methods") if isinstance(raw.get("methods"), dict) else {}
        params = Params.model_validate(raw, context={"plugins": plugins, **limits.grid_budget()})
    except bounded_yaml.SettingsFileError as e:
        raise ParamsError([str(e)]) from None
    except ValidationError as e:
        raise ParamsError(_lines(source, explain(e, Params))) from None
    problems = limits.runs_problems(params.studies()) or (  # the cheap count first: the rest walks every run
        _nesterov_problems(params) + _best_seed_problems(params) + _from_sweep_problems(params))
    if problems:
        raise ParamsError(_lines(source, problems))
    params = _resolve_variants(params)
    params._source = str(source)
    return params


# --- YAML, parsed as DVC parses params (ruamel.yaml, YAML 1.2: `5e-4` is a float, `no` a string) -------------------


def load_yaml(path) -> object:
    """Parse a YAML file under the caps of jobs/bounded_yaml.py; a syntax error, a duplicate key or a cap exceeded
    becomes a ParamsError naming `file:line:column` or the key."""
    try:
        text = bounded_yaml.read_text(path)
        return bounded_yaml.load_text(text, str(path), yaml_version="1.2")
    except FileNotFoundError:
        raise ParamsError([f"{path}: no such file"]) from None
    except bounded_yaml.SettingsFileError as e:
        raise ParamsError([str(e)]) from None
    except YAMLError as e:
        raise ParamsError([bounded_yaml.error_line(e, str(path), text)]) from None


def load_params(path="params.yaml") -> Params:
    return validate(load_yaml(path), source=str(path))


# --- run configs ----------------------------------------------------------------------------------------------------


def _merge(base: dict, overrides: dict) -> dict:
    out = dict(base)
    if "model" in overrides and "model_kw" not in overrides and overrides["model"] != base.get("model"):
        out["model_kw"] = {}
    out.update(overrides)
    out["model_kw"] = dict(out.get("model_kw", {}))
    return out


def resolve_train(params: Params, study, overrides: dict | None = None) -> dict:
    """Global train block + the study's train overrides (+ e.g. a variant run's) + dataset and data split keys."""
    cfg = _merge(_merge(params.train, study.train), overrides or {})
    cfg.update(dataset=study.dataset, val_fraction=params.data.val_fraction, split_seed=params.data.split_seed)
    return cfg


def base_run_config(params: Params, study, *, adversarial: bool, overrides: dict | None = None) -> dict:
    """Every run-config key, with no weight decay and no label noise: the suite fills in what its cell varies."""
    cfg = resolve_train(params, study, overrides)
    cfg.update(noise_rate=0.0, noise_seed=0, wd_method="none", wd=0.0, dog=0.0)
    if adversarial:
        cfg.update(adversarial=True, **params.adversarial.model_dump())
    else:
        cfg.update(NEUTRAL_ADVERSARIAL)
    return {k: cfg[k] for k in RUN_CONFIG_KEYS}


def check_data(params: Params, base: str | Path | None = None) -> None:
    """Fail before anything is submitted when a CIFAR dataset a study uses is not on disk (and download is off).

    A relative data.root is taken relative to `base` (default: the working directory, the repo root under DVC).
    """
    cifar = [d for d in params.datasets() if d != "digits"]
    if params.data.download or not cifar:
        return
    from awd.data import cifar_files  # torchvision's file list; imported only when CIFAR is used

    root = Path(params.data.root)
    if base is not None and not root.is_absolute():
        root = Path(base) / root
    problems, fix = [], "put the extracted dataset there or set data.download: true"
    for dataset in cifar:
        folder_name, files = cifar_files(dataset)
        folder = root / folder_name
        users = ", ".join(f"suites.{s}[{i}]" for s, i, st in params.studies() if st.dataset == dataset)
        if not folder.is_dir():
            problems.append(("data.root", f"{dataset} folder {folder} does not exist (used by {users}); {fix}"))
            continue
        missing = [f for f in files if not (folder / f).is_file()]
        if missing:
            problems.append(("data.root", f"{dataset} folder {folder} is incomplete: missing {', '.join(missing)} "
                                          f"(used by {users}); {fix}"))
    if problems:
        raise ParamsError(_lines(params.source, problems))


def to_dict(params) -> dict:
    """The validated, grid-expanded params as plain JSON-able data."""
    if isinstance(params, Model):
        return {k: to_dict(getattr(params, k)) for k in type(params).model_fields}
    if isinstance(params, (list, tuple)):
        return [to_dict(v) for v in params]
    if isinstance(params, dict):
        return {k: to_dict(v) for k, v in params.items()}
    return params


def main(argv=None) -> int:
    """`python -m pipeline.params [file] [--data]`: validate a config (and with --data, the CIFAR files), then the
    executor settings the stages would use (executor.yaml: the file, then what the cluster has for it)."""
    args = list(sys.argv[1:] if argv is None else argv)
    with_data = "--data" in args
    paths = [a for a in args if a != "--data"] or ["params.yaml"]
    status = 0
    try:
        for path in paths:
            params = load_params(path)
            if with_data:
                check_data(params)
            counts = ", ".join(f"{s}: {len(getattr(params.suites, s))}" for s in SUITE_NAMES)
            print(f"{path}: ok ({counts} studies; datasets {', '.join(params.datasets()) or 'none'})")
    except ParamsError as e:
        print(e, file=sys.stderr)
        status = 2
    from jobs.cluster_check import check_command
    from pipeline.common import executor_config

    return max(status, check_command(executor_config, err=lambda line: print(line, file=sys.stderr)))


if __name__ == "__main__":
    sys.exit(main())
