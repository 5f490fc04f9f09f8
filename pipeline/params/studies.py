"""The `suites` section: each suite is a list of studies; a study's cells are expanded by pipeline/suites.py.

A study that compares weight-decay methods lists them as `methods: {fixed: <grid>, awd: <grid>, <plugin>: <grid>}`;
`wds:`/`dogs:` (`wd:`/`dog:`) are shorthands for `fixed`/`awd`.
"""

from __future__ import annotations

from typing import Annotated, ClassVar

from pydantic import BeforeValidator, ValidationInfo, model_validator

from awd.train_config import (
    DATASET_NAMES,
    OPTIMIZERS,
    Choice,
    Flag,
    Int,
    Model,
    Real,
    Text,
    method_value_problem,
    problems_error,
)
from pipeline import limits
from pipeline.limits import show
from pipeline.params.fields import Epochs, NoiseSeed, field_bounds
from pipeline.params.grids import ExtraSeeds, Grid, Seeds
from pipeline.params.plugins import check_method, plugins_of
from pipeline.params.sections import Overrides, Plateau


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
        problems = [(f".methods.{m}", e) for m in self.methods if (e := check_method(m, plugins_of(info)))]
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
    lrs: Grid(**field_bounds("lr"))
    seeds: Seeds = (0,)  # training seeds of every cell: the claims' per-seed best cells pair up with >= 2


class AdversarialStudy(_Grids):
    best_seeds: ExtraSeeds = ()  # extra seeds of each method's val-selected best value


class NoisyStudy(_Grids):
    rates: Grid(**field_bounds("noise_rate"))
    noise_seed: NoiseSeed = 0
    seeds: Seeds = (0,)  # training seeds of every (rate, value): the seed-paired drop from clean needs >= 2


class LrSensitivityStudy(_Values):
    lrs: Grid(**field_bounds("lr"))
    seeds: Seeds


class UnderfitStudy(_Values):
    n_images: Int(ge=1)
    seeds: Seeds = (0,)  # training seeds of each method's run: a seed-paired comparison needs >= 2


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
        if e := check_method(method, plugins_of(info)):
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
    # training seeds of every row (a re-tuning grid: every value at each, its best by mean val PGD-20; a row from
    # the sweep: the sweep's run of its value with each seed, the sweep's extra seeds where they coincide)
    seeds: Seeds = (0,)

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
