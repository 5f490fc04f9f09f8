"""`TrainConfig`: the run config of docs/design.md — the one place that says what each field is, its type, range and
default. `pipeline/params.py` composes the params schema from these fields.

Field types carry their rule (`Real(gt=0)`, `Choice(...)`): pydantic validates, and a failure reads
"must be > 0, got -0.1"; `explain` turns a ValidationError into (dotted.key, what is allowed, got what) pairs.
No torch here: the pipeline's driver imports this module.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Union, get_args, get_origin

import annotated_types
from pydantic import BaseModel, ConfigDict, Field, Strict, ValidationError, WrapValidator, model_validator
from pydantic_core import PydanticCustomError

from awd.checks import number_problem, show

# awd.data / awd.models hold the code behind these names; tests check that they agree.
DATASET_NAMES = ("digits", "cifar10", "cifar100")
MODEL_NAMES = ("preact_wrn", "resnet32", "resnet34", "resnet50", "tiny")
METHODS = ("none", "fixed", "awd", "adadecay")  # the built-in weight-decay methods (awd.weight_decay)
OPTIMIZERS = ("sgd", "asam")
ASAM_AWD_GRADS = ("descent", "ascent")
BN_MODES = ("train", "eval")
# A weight-decay method from outside the repository: "package.module:Class".
PLUGIN_PATH = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$")


def did_you_mean(word, options) -> str:
    # twin of jobs/rules.py's (awd and jobs import nothing of each other): tests/unit/test_check_twins.py pins both
    close = difflib.get_close_matches(str(word), [str(o) for o in options], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def problems_error(problems: list[tuple[str, str]]) -> PydanticCustomError:
    """One pydantic error carrying several (key suffix, message) problems; `explain` unpacks them."""
    return PydanticCustomError("problems", "{text}", {"text": "; ".join(m for _, m in problems),
                                                      "problems": problems})


def rule(problem: Callable[[Any], str | None]) -> WrapValidator:
    """A validator that reports `problem(value)` (the rule in words) before pydantic's own check of the type."""
    def check(value, handler):
        why = problem(value)
        if why:
            raise problems_error([("", why)])
        return handler(value)
    return WrapValidator(check)


@dataclass(frozen=True)
class Num(annotated_types.GroupedMetadata):
    """`Annotated[float, Num(gt=0)]`: a finite number (`integer`: an int) in range, never a bool."""

    gt: float | None = None
    ge: float | None = None
    lt: float | None = None
    le: float | None = None
    integer: bool = False

    def __iter__(self):
        bounds = {k: v for k, v in (("gt", self.gt), ("ge", self.ge), ("lt", self.lt), ("le", self.le))
                  if v is not None}
        yield Strict()
        yield from (getattr(annotated_types, k.capitalize())(v) for k, v in bounds.items())
        yield rule(lambda v: number_problem(v, integer=self.integer, **bounds))


@dataclass(frozen=True)
class OneOf(annotated_types.GroupedMetadata):
    """`Annotated[str, OneOf(options, "optimizer")]`: one of `options`, with a suggestion when misspelt."""

    options: tuple[str, ...]
    what: str

    def __iter__(self):
        def problem(v):
            if isinstance(v, str) and v in self.options:
                return None
            hint = did_you_mean(v, self.options) if isinstance(v, str) else ""
            return f"unknown {self.what} {show(v)}{hint}; allowed: {', '.join(self.options)}"
        yield rule(problem)


def Real(**bounds):  # noqa: N802 - a type for pipeline/params.py's models
    return Annotated[float, Num(**bounds)]


def Int(**bounds):  # noqa: N802
    return Annotated[int, Num(integer=True, **bounds)]


def Choice(options: tuple[str, ...], what: str):  # noqa: N802
    return Annotated[str, OneOf(options, what)]


Flag = Annotated[bool, Field(strict=True), rule(lambda v: None if isinstance(v, bool) else
                                                f"must be true or false, got {show(v)}")]
Text = Annotated[str, Field(strict=True), rule(lambda v: None if isinstance(v, str) and v.strip() else
                                               f"must be a non-empty string, got {show(v)}")]


def _kwargs_problem(value) -> str | None:
    if not isinstance(value, dict):
        return f"must be a mapping of keyword arguments, got {show(value)}"
    scalar = (bool, int, float, str, type(None))
    for key, v in value.items():
        if not isinstance(key, str) or not key.isidentifier():
            return f"keyword {show(key)} is not a valid Python identifier"
        if not (isinstance(v, scalar) or (isinstance(v, list) and all(isinstance(x, scalar) for x in v))):
            return f"{key}: must be a scalar or a list of scalars, got {show(v)}"
    return None


KwArgs = Annotated[dict[str, Any], rule(_kwargs_problem)]


def _method_problem(v) -> str | None:
    if isinstance(v, str) and (v in METHODS or PLUGIN_PATH.match(v)):
        return None
    return f"must be one of {', '.join(METHODS)} or a plugin's package.module:Class, got {show(v)}"


def value_key(method: str) -> str:
    """The run-config field that holds a method's hyper-parameter: `dog` for AWD, `wd` for every other."""
    return "dog" if method == "awd" else "wd"


def method_value_problem(method: str, value) -> str | None:
    """The rule for the value a run of `method` is given. A built-in method with λ = 0 (or DoG = 0) is no weight
    decay, which is method none; a plugin's value only has to be a number >= 0."""
    if method == "none":
        return None if value in (None, 0) else f"method none takes no value, got {show(value)}; omit it or use 0"
    what = "DoG" if method == "awd" else "λ"
    problem = number_problem(value, gt=0) if method in METHODS else number_problem(value, ge=0)
    hint = "; use method none for no weight decay" if method in ("fixed", "adadecay") else ""
    return problem and f"{problem} ({what} of method {method}{hint})"


def run_problems(cfg: Mapping) -> list[tuple[str, str]]:
    """The rules between run-config fields, as (key, what is wrong); for any complete or partial config."""
    out = []
    method = cfg.get("wd_method")
    if method not in (None, "none"):
        key = value_key(method)
        problem = method_value_problem(method, cfg.get(key))
        if problem:
            out.append((key, problem))
    if cfg.get("nesterov") and cfg.get("momentum") == 0:
        out.append(("nesterov", "true needs momentum > 0, got momentum 0.0"))
    if cfg.get("adversarial"):
        for key in ("eps", "step_size"):
            if cfg.get(key) == 0:
                out.append((key, f"must be in (0, 1] for adversarial training, got {show(cfg[key])}"))
    return out


class Model(BaseModel):
    """A config section: unknown keys are errors; `hints` say where a misplaced key belongs."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    hints: ClassVar[dict[str, str]] = {}


class TrainConfig(Model):
    """One training run. Every field's type is its rule; the defaults are the paper's (Appendix A) where it has one."""

    model_config = ConfigDict(extra="forbid", frozen=False, validate_assignment=True)

    dataset: Annotated[str, OneOf(DATASET_NAMES, "dataset")] = "digits"
    val_fraction: Annotated[float, Num(gt=0, lt=1)] = 0.1
    split_seed: Annotated[int, Num(integer=True, ge=0)] = 0
    noise_rate: Annotated[float, Num(ge=0, lt=1)] = 0.0
    noise_seed: Annotated[int, Num(integer=True, ge=0)] = 0
    model: Annotated[str, OneOf(MODEL_NAMES, "model")] = "tiny"
    model_kw: KwArgs = Field(default_factory=dict)
    epochs: Annotated[int, Num(integer=True, ge=1)] = 8
    batch_size: Annotated[int, Num(integer=True, ge=1)] = 128
    lr: Annotated[float, Num(gt=0)] = 0.1
    momentum: Annotated[float, Num(ge=0, lt=1)] = 0.9
    nesterov: Flag = False
    optimizer: Annotated[str, OneOf(OPTIMIZERS, "optimizer")] = "sgd"
    asam_rho: Annotated[float, Num(gt=0)] = 0.5
    asam_eta: Annotated[float, Num(ge=0)] = 0.0
    asam_awd_grad: Annotated[str, OneOf(ASAM_AWD_GRADS, "asam_awd_grad")] = "descent"
    wd_method: Annotated[str, rule(_method_problem)] = "fixed"
    wd: Annotated[float, Num(ge=0)] = 5e-4
    dog: Annotated[float, Num(ge=0)] = 0.0
    awd_ema: Annotated[float, Num(gt=0, le=1)] = 0.9  # λ̄ ← (1−ema)·λ̄ + ema·λ_t: 1 is no averaging, 0 would never move λ̄
    adadecay_alpha: Annotated[float, Num(gt=0)] = 4.0
    exclude_bn_bias: Flag = False
    augment: Flag = True  # the dataset's standard crop (+ flip) augmentation (awd.data.augmentation)
    adversarial: Flag = False
    # L∞ radius and PGD step on pixels in [0, 1]; 0 for natural runs, > 0 when adversarial (run_problems)
    eps: Annotated[float, Num(ge=0, le=1)] = 8 / 255
    step_size: Annotated[float, Num(ge=0, le=1)] = 2 / 255
    train_steps: Annotated[int, Num(integer=True, ge=1)] = 7
    val_steps: Annotated[int, Num(integer=True, ge=1)] = 20
    # adversarial runs: PGD validation (and so early stopping) over the epochs after the first val_from_fraction of
    # them, i.e. from epoch floor(val_from_fraction * epochs) + 1 (0: every epoch, the paper's rule); natural runs
    # validate every epoch on clean accuracy whatever it says
    val_from_fraction: Annotated[float, Num(ge=0, lt=1)] = 0.0
    bn_mode: Annotated[str, OneOf(BN_MODES, "bn_mode")] = "train"
    seed: Annotated[int, Num(integer=True, ge=0)] = 0
    bf16: Flag = False
    channels_last: Flag = False
    deterministic: Flag = True
    dog_log_every: Annotated[int, Num(integer=True, ge=1)] = 1

    @model_validator(mode="after")
    def _between_fields(self):
        problems = run_problems(self.__dict__)
        if problems:
            raise problems_error([(f".{k}", m) for k, m in problems])
        return self

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        """Raises ValueError naming every bad key: `train config: lr: must be > 0, got -1.0`."""
        if not isinstance(d, dict):
            raise ValueError(f"train config must be a mapping, got {type(d).__name__}")
        try:
            return cls.model_validate(d)
        except ValidationError as e:
            raise ValueError("\n".join(f"train config: {k}: {m}" for k, m in explain(e, cls))) from None

    def to_dict(self) -> dict:
        return self.model_dump()


# --- ValidationError -> (dotted.key, message) -----------------------------------------------------------------------


def dotted(loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _unwrap(t):
    while True:
        if get_origin(t) is Annotated:
            t = get_args(t)[0]
        elif get_origin(t) is Union:
            t = next(a for a in get_args(t) if a is not type(None))
        else:
            return t


def _type_at(root, loc):
    t = root
    for part in loc:
        t = _unwrap(t)
        if isinstance(t, type) and issubclass(t, BaseModel):
            field = t.model_fields.get(part)
            if field is None:
                return None
            t = field.annotation
        elif get_origin(t) in (list, tuple, dict):
            t = get_args(t)[-1] if get_origin(t) is dict else get_args(t)[0]
        else:
            return None
    return _unwrap(t)


def _is_model(t) -> bool:
    return isinstance(t, type) and issubclass(t, BaseModel)


def explain(exc: ValidationError, root: type[BaseModel]) -> list[tuple[str, str]]:
    """Every error of `exc` (raised validating `root`) as (dotted.key, what is allowed, got what)."""
    out: list[tuple[str, str]] = []
    missing: dict[str, list[str]] = {}
    for err in exc.errors(include_url=False):
        loc, kind, ctx, value = err["loc"], err["type"], err.get("ctx") or {}, err.get("input")
        path = dotted(loc)
        if "problems" in ctx:
            # "{here}": the key the value was given at, for messages that point at a sibling ("same as {here}[0]")
            out += [((path + sub) if path else sub.lstrip("."), msg.replace("{here}", path))
                    for sub, msg in ctx["problems"]]
        elif kind == "missing":
            missing.setdefault(dotted(loc[:-1]), []).append(str(loc[-1]))
        elif kind == "extra_forbidden":
            parent, key = _type_at(root, loc[:-1]), loc[-1]
            fields = list(parent.model_fields) if _is_model(parent) else []
            hint = parent.hints.get(key) if _is_model(parent) and issubclass(parent, Model) else None
            out.append((path, hint or f"unknown key {key!r}{did_you_mean(key, fields)}; allowed: {', '.join(fields)}"))
        elif kind in ("model_type", "dict_type"):
            t = _type_at(root, loc)
            keys = f" with keys {', '.join(t.model_fields)}" if _is_model(t) else ""
            out.append((path, f"must be a mapping{keys}, got {show(value)}"))
        elif kind in ("list_type", "tuple_type"):
            t = _type_at(root, loc)
            elem = get_args(t)[0] if get_origin(t) in (list, tuple) and get_args(t) else t
            noun = getattr(elem, "noun", None) or "values"
            out.append((path, f"must be a list of {noun}, got {show(value)}"))
        else:
            out.append((path, f"{err['msg'][0].lower()}{err['msg'][1:]}, got {show(value)}"))
    out += [(parent, f"missing required key(s): {', '.join(keys)}") for parent, keys in missing.items()]
    return out


def first_validated_epoch(epochs: int, val_from_fraction: float) -> int:
    """The first epoch (1-based) an adversarial run PGD-validates: after the first val_from_fraction of `epochs`
    (the training loop and the cost model both count by it)."""
    return math.floor(val_from_fraction * epochs) + 1
