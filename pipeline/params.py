"""The typed schema of params.yaml and configs/*.yaml: load, validate, expand grids, build run-config bases.

Sections: `train` and `suites` are required; `data`, `adversarial`, `autoattack` and `prune` may be omitted and
then take the defaults below (the paper's settings, Appendix A). Every suite is optional: an absent, empty or null
suite is not run. In `train` only model, epochs, batch_size and lr are required. A study's `train:` block overrides
any train key for that study; overriding `model` without `model_kw` resets `model_kw` to `{}` (another model's
keyword arguments would not apply).

Grid values (lrs, wds, dogs, rates, prune.amounts) are a list of numbers or `{geomspace: [start, stop, num]}` /
`{linspace: [start, stop, num]}`, expanded to floats rounded to 6 significant digits with exact endpoints.

Executor settings (debug / local / slurm) are not params: they live in executor.yaml / $AWD_EXECUTOR (`jobs/`).
No torch import here: `dvc repro` no-ops and dry runs stay fast.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field, fields
from pathlib import Path

from pipeline.schema import (
    INVALID,
    Bool,
    Checker,
    Choice,
    Grid,
    Int,
    KwArgs,
    ListOf,
    Nullable,
    Num,
    ParamsError,
    Section,
    Seeds,
    Str,
    load_yaml,
)

__all__ = [
    "ParamsError", "Params", "load_params", "validate", "resolve_train", "base_run_config", "check_data",
    "RUN_CONFIG_KEYS", "DATASET_NAMES", "MODEL_NAMES", "WD_METHODS", "OPTIMIZERS", "SUITE_NAMES",
]

# Mirrors awd.data.DATASET_NAMES / awd.models.MODEL_NAMES without importing torch; tests check they agree.
DATASET_NAMES = ("digits", "cifar10", "cifar100")
MODEL_NAMES = ("preact_wrn", "resnet32", "resnet34", "resnet50", "tiny")
WD_METHODS = ("none", "fixed", "awd", "adadecay")
OPTIMIZERS = ("sgd", "asam")
ASAM_AWD_GRADS = ("descent", "ascent")
BN_MODES = ("train", "eval")
AUTOATTACK_VERSIONS = ("standard", "plus", "rand")
SUITE_NAMES = ("natural", "grid", "adversarial", "variants", "noisy", "lr_sensitivity", "underfit")

# docs/design.md "Run config", in that order.
RUN_CONFIG_KEYS = (
    "dataset", "val_fraction", "split_seed", "noise_rate", "noise_seed", "model", "model_kw", "epochs",
    "batch_size", "lr", "momentum", "nesterov", "optimizer", "asam_rho", "asam_eta", "asam_awd_grad", "wd_method",
    "wd", "dog", "awd_ema", "adadecay_alpha", "exclude_bn_bias", "augment", "adversarial", "eps", "step_size", "train_steps",
    "val_steps", "bn_mode", "seed", "bf16", "channels_last", "deterministic", "dog_log_every",
)

# Natural runs get these constants so that editing the adversarial section never changes their cache keys.
# Steps are 1, the least awd.train_config.TrainConfig accepts; with adversarial false nothing reads them.
NEUTRAL_ADVERSARIAL = {"adversarial": False, "eps": 0.0, "step_size": 0.0, "train_steps": 1, "val_steps": 1,
                       "bn_mode": "train"}

CIFAR_FILES = {
    "cifar10": ("cifar-10-batches-py",
                tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch", "batches.meta")),
    "cifar100": ("cifar-100-python", ("train", "test", "meta")),
}

_EXECUTOR_HINT = ("executor settings are not params: put them in executor.yaml (or the file $AWD_EXECUTOR names), "
                  "read by jobs/executors.py; they never enter a run's cache key")

# --- schema -----------------------------------------------------------------------------------------------------

TRAIN_FIELDS = {
    "model": Choice(MODEL_NAMES, "model"),
    "model_kw": KwArgs(),
    "epochs": Int(ge=1),
    "batch_size": Int(ge=1),
    "lr": Num(gt=0),
    "momentum": Num(ge=0, lt=1),
    "nesterov": Bool(),
    "optimizer": Choice(OPTIMIZERS, "optimizer"),
    "asam_rho": Num(gt=0),
    "asam_eta": Num(ge=0),
    "asam_awd_grad": Choice(ASAM_AWD_GRADS, "asam_awd_grad"),
    "awd_ema": Num(gt=0, le=1),
    "adadecay_alpha": Num(gt=0),
    "exclude_bn_bias": Bool(),
    "augment": Bool(),
    "bf16": Bool(),
    "channels_last": Bool(),
    "deterministic": Bool(),
    "seed": Int(ge=0),
    "dog_log_every": Int(ge=1),
}
TRAIN_REQUIRED = ("model", "epochs", "batch_size", "lr")
TRAIN_DEFAULTS = {
    "model_kw": {}, "momentum": 0.9, "nesterov": False, "optimizer": "sgd", "asam_rho": 0.5, "asam_eta": 0.0,
    "asam_awd_grad": "descent", "awd_ema": 0.9, "adadecay_alpha": 4.0, "exclude_bn_bias": False, "augment": True, "bf16": False,
    "channels_last": False, "deterministic": True, "seed": 0, "dog_log_every": 1,
}
# Run-config keys that look like train keys but are set elsewhere.
TRAIN_HINTS = {
    **{k: f"{k!r} is set per study (suites.<suite>[i].wd / wds / dog / dogs / runs), not in train"
       for k in ("wd", "wds", "dog", "dogs", "wd_method")},
    "dataset": "the dataset is set per study (suites.<suite>[i].dataset), not in train",
    **{k: f"{k!r} belongs in the top-level adversarial section, not in train"
       for k in ("eps", "step_size", "train_steps", "val_steps", "bn_mode", "adversarial")},
    **{k: f"{k!r} belongs in the top-level data section, not in train" for k in ("val_fraction", "split_seed")},
    "executor": _EXECUTOR_HINT,
}

DATA = Section(
    {"root": Str(), "download": Bool(), "val_fraction": Num(gt=0, lt=1), "split_seed": Int(ge=0)},
    defaults={"root": "data/raw", "download": False, "val_fraction": 0.1, "split_seed": 0},
)
ADVERSARIAL = Section(
    {"eps": Num(gt=0, le=1), "step_size": Num(gt=0, le=1), "train_steps": Int(ge=1), "val_steps": Int(ge=1),
     "bn_mode": Choice(BN_MODES, "bn_mode")},
    defaults={"eps": 0.0313725, "step_size": 0.00784314, "train_steps": 7, "val_steps": 20, "bn_mode": "train"},
)


def _check_autoattack(chk, aa, path):
    if aa["n_test"] is not None and aa["shards"] > aa["n_test"]:
        chk.error(f"{path}.shards", f"{aa['shards']} shards for n_test={aa['n_test']} examples would leave "
                                    "empty shards; must be <= n_test")


AUTOATTACK = Section(
    {"version": Choice(AUTOATTACK_VERSIONS, "autoattack version"), "n_test": Nullable(Int(ge=1)),
     "shards": Int(ge=1), "batch_size": Int(ge=1), "block_size": Int(ge=1), "seed": Int(ge=0)},
    defaults={"version": "standard", "n_test": None, "shards": 1, "batch_size": 500, "block_size": 500, "seed": 0},
    post=_check_autoattack,
)
PRUNE = Section({"amounts": Grid(Num(gt=0, lt=1))}, defaults={"amounts": [0.4, 0.5, 0.6, 0.7, 0.8, 0.9]})


_SGD_KEYS = {"nesterov", "momentum"}


def _check_nesterov(chk, train, path):
    if train.get("nesterov") and train.get("momentum") == 0:
        chk.error(f"{path}.nesterov", "nesterov: true needs momentum > 0, got momentum 0.0")


def _train_section(required=(), defaults=None):
    return Section(TRAIN_FIELDS, required=required, defaults=defaults, hints=TRAIN_HINTS, post=_check_nesterov)


LR, WD, DOG = Num(gt=0), Num(ge=0), Num(gt=0)


def _check_variant_run(chk, run, path):
    method, value = run["method"], run.get("value")
    if "values" in run:
        if "value" in run:
            chk.error(f"{path}.values", "give either value (one run) or values (a re-tuning grid), not both")
        elif method == "none":
            chk.error(f"{path}.values", "method none takes no values")
        if run["from_sweep"]:
            chk.error(f"{path}.from_sweep", "a re-tuning grid (values) cannot come from the sweep; use value")
        value = min(run["values"])
    if run["from_sweep"]:
        if method not in ("fixed", "awd"):
            chk.error(f"{path}.from_sweep", f"only fixed / awd rows can reuse the adversarial sweep, not {method}")
        for key in ("epochs", "train"):
            if run.get(key):
                chk.error(f"{path}.{key}", "a row reusing the adversarial sweep's run takes the sweep's settings; "
                                           f"remove {key} (or set from_sweep: false to train a separate run)")
    if method == "none":
        if value not in (None, 0.0):
            chk.error(f"{path}.value", f"method none takes no value, got {value!r}; omit it or use 0")
    elif value is None:
        chk.error(path, f"missing required key(s): value (method {method} needs one)")
    elif method == "awd" and value <= 0:
        chk.error(f"{path}.value", f"DoG for method awd must be > 0, got {value!r}")
    for key in ("optimizer", "epochs"):
        if key in run and key in run["train"]:
            chk.error(f"{path}.train.{key}", f"{key} is already set on the run ({run[key]!r}); set it once")


VARIANT_RUN = Section(
    {"name": Str(), "method": Choice(WD_METHODS, "weight-decay method"), "value": WD, "values": Grid(WD),
     "from_sweep": Bool(), "optimizer": Choice(OPTIMIZERS, "optimizer"), "epochs": Int(ge=1),
     "train": _train_section()},
    required=("name", "method"), defaults={"train": {}, "from_sweep": False}, post=_check_variant_run,
)


def _check_variant_names(chk, study, path):
    names = [r["name"] for r in study["runs"]]
    for i, name in enumerate(names):
        if name in names[:i]:
            chk.error(f"{path}.runs[{i}].name", f"duplicate run name {name!r}; names must be unique in a study")
    if not names:
        chk.error(f"{path}.runs", "empty: give at least one run")


def _study(fields_, required, defaults=None, post=None):
    return Section(
        {"dataset": Choice(DATASET_NAMES, "dataset"), **fields_, "train": _train_section()},
        required=("dataset", *required), defaults={"train": {}, **(defaults or {})}, post=post,
    )


def _check_best_seeds(chk, study, path):
    seed = study["train"].get("seed")
    if seed is not None and seed in study["best_seeds"]:
        chk.error(f"{path}.best_seeds", f"seed {seed} is the sweep's own seed (train.seed); list only extra seeds")


STUDIES = {
    "natural": _study(
        # λ > 0: the DoG estimated from a λ=0 run would be 0, which AWD cannot use.
        {"wd": Num(gt=0), "seeds": Seeds(),
         "plateau": Section({"window": Int(ge=1), "rel_tol": Num(gt=0)}, required=("window", "rel_tol"))},
        ("wd", "seeds", "plateau"),
    ),
    # dogs: the AWD grid over lr × DoG beside the fixed one (paper footnote 2, Fig. 1(c)); optional
    "grid": _study({"name": Str(), "lrs": Grid(LR), "wds": Grid(WD), "dogs": Grid(DOG)}, ("name", "lrs", "wds")),
    # best_seeds: extra seeds of each method's val-selected best value (train.seed is the sweep's own seed)
    "adversarial": _study({"wds": Grid(WD), "dogs": Grid(DOG), "best_seeds": Seeds(allow_empty=True)},
                          ("wds", "dogs"), defaults={"best_seeds": []}, post=_check_best_seeds),
    "variants": _study({"runs": ListOf(VARIANT_RUN, "runs")}, ("runs",), post=_check_variant_names),
    "noisy": _study(
        {"rates": Grid(Num(ge=0, lt=1)), "wds": Grid(WD), "dogs": Grid(DOG), "noise_seed": Int(ge=0)},
        ("rates", "wds", "dogs"), defaults={"noise_seed": 0},
    ),
    "lr_sensitivity": _study({"lrs": Grid(LR), "wd": WD, "dog": DOG, "seeds": Seeds()}, ("lrs", "wd", "dog", "seeds")),
    "underfit": _study({"wd": WD, "dog": DOG, "n_images": Int(ge=1)}, ("wd", "dog", "n_images")),
}


SWEEP_MATCH_RTOL = 0.02  # a Table 4 row names a swept value to 3 significant digits (0.022 for 0.0218102)


def sweep_match(adversarial_studies, dataset: str, method: str, value: float):
    """(index of the adversarial study on `dataset`, the swept value of `method` nearest `value`), or None when no
    swept value lies within SWEEP_MATCH_RTOL of it. `adversarial_studies` are dicts or AdversarialStudy objects."""
    get = lambda st, k: st[k] if isinstance(st, dict) else getattr(st, k)  # noqa: E731
    for i, study in enumerate(adversarial_studies):
        if get(study, "dataset") != dataset:
            continue
        swept = get(study, "wds" if method == "fixed" else "dogs")
        nearest = min(swept, key=lambda v: abs(v - value))
        if abs(nearest - value) <= SWEEP_MATCH_RTOL * abs(nearest):
            return i, nearest
    return None


def _check_from_sweep(chk, suites, path):
    adversarial = suites.get("adversarial", ())
    for i, study in enumerate(suites.get("variants", ())):
        for j, run in enumerate(study["runs"]):
            if not run["from_sweep"] or run["method"] not in ("fixed", "awd"):
                continue
            rpath = f"{path}.variants[{i}].runs[{j}]"
            if sweep_match(adversarial, study["dataset"], run["method"], run["value"]) is None:
                swept = [v for st in adversarial if st["dataset"] == study["dataset"]
                         for v in st["wds" if run["method"] == "fixed" else "dogs"]]
                chk.error(f"{rpath}.value", f"from_sweep: no adversarial study on {study['dataset']} sweeps a "
                          f"{run['method']} value within {SWEEP_MATCH_RTOL:.0%} of {run['value']:g}; swept values: "
                          f"{', '.join(f'{v:g}' for v in swept) or 'none'}")
            optimizer = run.get("optimizer") or study["train"].get("optimizer")
            if optimizer not in (None, "sgd"):
                chk.error(f"{rpath}.optimizer", f"from_sweep: the adversarial sweep trains with sgd, not {optimizer}")


def _check_suites(chk, suites, path):
    _check_grid_names(chk, suites, path)
    _check_from_sweep(chk, suites, path)


def _check_grid_names(chk, suites, path):
    seen = {}
    for i, study in enumerate(suites.get("grid", ())):
        tag = (study["dataset"], study["name"])
        if tag in seen:
            chk.error(f"{path}.grid[{i}].name", f"grid name {study['name']!r} is already used for dataset "
                                                f"{study['dataset']} by grid[{seen[tag]}]; names label the results")
        seen.setdefault(tag, i)


SUITES = Section({name: ListOf(spec, f"{name} studies") for name, spec in STUDIES.items()}, post=_check_suites)

TOP = Section(
    {"data": DATA, "train": _train_section(TRAIN_REQUIRED, TRAIN_DEFAULTS), "adversarial": ADVERSARIAL,
     "autoattack": AUTOATTACK, "prune": PRUNE, "suites": SUITES},
    required=("train", "suites"),
    defaults={"data": {}, "adversarial": {}, "autoattack": {}, "prune": {}},
    hints={"executor": _EXECUTOR_HINT, "slurm": _EXECUTOR_HINT, "submitit": _EXECUTOR_HINT},
)

# --- typed result ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DataParams:
    root: str
    download: bool
    val_fraction: float
    split_seed: int


@dataclass(frozen=True)
class AdversarialParams:
    eps: float
    step_size: float
    train_steps: int
    val_steps: int
    bn_mode: str


@dataclass(frozen=True)
class AutoAttackParams:
    version: str
    n_test: int | None
    shards: int
    batch_size: int
    block_size: int  # examples attacked together with one seed; part of the result, so part of the key
    seed: int


@dataclass(frozen=True)
class PruneParams:
    amounts: tuple[float, ...]


@dataclass(frozen=True)
class Plateau:
    window: int
    rel_tol: float


@dataclass(frozen=True)
class NaturalStudy:
    dataset: str
    wd: float
    seeds: tuple[int, ...]
    plateau: Plateau
    train: dict = field(default_factory=dict)


@dataclass(frozen=True)
class GridStudy:
    dataset: str
    name: str
    lrs: tuple[float, ...]
    wds: tuple[float, ...]
    dogs: tuple[float, ...] = ()
    train: dict = field(default_factory=dict)


@dataclass(frozen=True)
class AdversarialStudy:
    dataset: str
    wds: tuple[float, ...]
    dogs: tuple[float, ...]
    best_seeds: tuple[int, ...] = ()
    train: dict = field(default_factory=dict)


@dataclass(frozen=True)
class VariantRun:
    """`optimizer` and `epochs` are the effective ones (the run's, else its study's, else the global train's);
    `train` holds the run's train overrides with both folded in: pass it as `overrides=` to base_run_config."""

    name: str
    method: str
    value: float
    optimizer: str
    epochs: int
    train: dict = field(default_factory=dict)
    values: tuple[float, ...] = ()  # a re-tuning grid (Table 4's starred rows): best by val PGD-20
    from_sweep: bool = False  # the adversarial sweep's run at the nearest swept value, no run of its own

    def candidates(self) -> tuple[float, ...]:
        return self.values or (self.value,)

    def overrides(self) -> dict:
        return dict(self.train)


@dataclass(frozen=True)
class VariantsStudy:
    dataset: str
    runs: tuple[VariantRun, ...]
    train: dict = field(default_factory=dict)


@dataclass(frozen=True)
class NoisyStudy:
    dataset: str
    rates: tuple[float, ...]
    wds: tuple[float, ...]
    dogs: tuple[float, ...]
    noise_seed: int = 0
    train: dict = field(default_factory=dict)


@dataclass(frozen=True)
class LrSensitivityStudy:
    dataset: str
    lrs: tuple[float, ...]
    wd: float
    dog: float
    seeds: tuple[int, ...]
    train: dict = field(default_factory=dict)


@dataclass(frozen=True)
class UnderfitStudy:
    dataset: str
    wd: float
    dog: float
    n_images: int
    train: dict = field(default_factory=dict)


STUDY_TYPES = {
    "natural": NaturalStudy, "grid": GridStudy, "adversarial": AdversarialStudy, "variants": VariantsStudy,
    "noisy": NoisyStudy, "lr_sensitivity": LrSensitivityStudy, "underfit": UnderfitStudy,
}


@dataclass(frozen=True)
class Suites:
    natural: tuple[NaturalStudy, ...] = ()
    grid: tuple[GridStudy, ...] = ()
    adversarial: tuple[AdversarialStudy, ...] = ()
    variants: tuple[VariantsStudy, ...] = ()
    noisy: tuple[NoisyStudy, ...] = ()
    lr_sensitivity: tuple[LrSensitivityStudy, ...] = ()
    underfit: tuple[UnderfitStudy, ...] = ()


@dataclass(frozen=True)
class Params:
    data: DataParams
    train: dict  # complete (defaults filled), validated
    adversarial: AdversarialParams
    autoattack: AutoAttackParams
    prune: PruneParams
    suites: Suites
    source: str = "params.yaml"

    def studies(self, suite: str | None = None):
        """(suite, index, study) for every study, in SUITE_NAMES order, or of one suite."""
        for name in (suite,) if suite else SUITE_NAMES:
            for i, study in enumerate(getattr(self.suites, name)):
                yield name, i, study

    def datasets(self) -> list[str]:
        return sorted({study.dataset for _, _, study in self.studies()})


def _build(cls, d: dict, train: dict | None = None):
    d = dict(d)
    if cls is NaturalStudy:
        d["plateau"] = Plateau(**d["plateau"])
    if cls is VariantsStudy:
        d["runs"] = tuple(_variant_run(r, _merge(train, d["train"])) for r in d["runs"])
    if cls is PruneParams:
        d["amounts"] = tuple(d["amounts"])
    return cls(**d)


def _variant_run(run: dict, study_train: dict) -> VariantRun:
    overrides = dict(run["train"])
    for key in ("optimizer", "epochs"):
        if key in run:
            overrides[key] = run[key]
    effective = _merge(study_train, overrides)
    values = tuple(run.get("values") or ())
    return VariantRun(name=run["name"], method=run["method"], value=run.get("value") or (values[0] if values else 0.0),
                      optimizer=effective["optimizer"], epochs=effective["epochs"], train=overrides, values=values,
                      from_sweep=run["from_sweep"])


# --- API --------------------------------------------------------------------------------------------------------


def validate(raw, source: str = "params.yaml") -> Params:
    """Check a parsed config; raise ParamsError listing every problem, one per line."""
    chk = Checker(source)
    if not isinstance(raw, dict):
        chk.error("", f"the file must be a mapping with keys {', '.join(TOP.fields)}, got "
                      f"{'an empty file' if raw is None else type(raw).__name__}")
        chk.raise_if_any()
    top = TOP.check(chk, raw, "")
    if top is not INVALID:
        for suite, studies in top["suites"].items():
            for i, study in enumerate(studies):
                path = f"suites.{suite}[{i}]"
                merged = _merge(top["train"], study["train"])
                if _SGD_KEYS & set(study["train"]):  # else the error is the global train block's, reported once
                    _check_nesterov(chk, merged, f"{path}.train")
                for j, run in enumerate(study.get("runs", ())):
                    if _SGD_KEYS & set(run["train"]):
                        _check_nesterov(chk, _merge(merged, run["train"]), f"{path}.runs[{j}].train")
    chk.raise_if_any()
    suites = Suites(**{name: tuple(_build(STUDY_TYPES[name], s, top["train"]) for s in studies)
                       for name, studies in top["suites"].items()})
    return Params(
        data=_build(DataParams, top["data"]), train=top["train"],
        adversarial=_build(AdversarialParams, top["adversarial"]),
        autoattack=_build(AutoAttackParams, top["autoattack"]), prune=_build(PruneParams, top["prune"]),
        suites=suites, source=str(source),
    )


def load_params(path="params.yaml") -> Params:
    return validate(load_yaml(path), source=str(path))


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
        adv = params.adversarial
        cfg.update(adversarial=True, eps=adv.eps, step_size=adv.step_size, train_steps=adv.train_steps,
                   val_steps=adv.val_steps, bn_mode=adv.bn_mode)
    else:
        cfg.update(NEUTRAL_ADVERSARIAL)
    return {k: cfg[k] for k in RUN_CONFIG_KEYS}


def check_data(params: Params, base: str | Path | None = None) -> None:
    """Fail before anything is submitted when a CIFAR dataset a study uses is not on disk (and download is off).

    A relative data.root is taken relative to `base` (default: the working directory, the repo root under DVC).
    """
    if params.data.download:
        return
    root = Path(params.data.root)
    if base is not None and not root.is_absolute():
        root = Path(base) / root
    chk = Checker(params.source)
    for dataset in params.datasets():
        if dataset not in CIFAR_FILES:
            continue
        folder_name, files = CIFAR_FILES[dataset]
        folder = root / folder_name
        users = ", ".join(f"suites.{s}[{i}]" for s, i, st in params.studies() if st.dataset == dataset)
        fix = "put the extracted dataset there or set data.download: true"
        if not folder.is_dir():
            chk.error("data.root", f"{dataset} folder {folder} does not exist (used by {users}); {fix}")
            continue
        missing = [f for f in files if not (folder / f).is_file()]
        if missing:
            chk.error("data.root", f"{dataset} folder {folder} is incomplete: missing {', '.join(missing)} "
                                   f"(used by {users}); {fix}")
    chk.raise_if_any()


def to_dict(params: Params) -> dict:
    """The validated, grid-expanded params as plain JSON-able data."""
    def plain(x):
        if hasattr(x, "__dataclass_fields__"):
            return {f.name: plain(getattr(x, f.name)) for f in fields(x)}
        if isinstance(x, (list, tuple)):
            return [plain(v) for v in x]
        if isinstance(x, dict):
            return {k: plain(v) for k, v in x.items()}
        return x
    return plain(params)


def main(argv=None) -> int:
    """`python -m pipeline.params [file] [--data]`: validate a config (and with --data, the CIFAR files)."""
    args = list(sys.argv[1:] if argv is None else argv)
    with_data = "--data" in args
    paths = [a for a in args if a != "--data"] or ["params.yaml"]
    try:
        for path in paths:
            params = load_params(path)
            if with_data:
                check_data(params)
            counts = ", ".join(f"{s}: {len(getattr(params.suites, s))}" for s in SUITE_NAMES)
            print(f"{path}: ok ({counts} studies; datasets {', '.join(params.datasets()) or 'none'})")
    except ParamsError as e:
        print(e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
