"""params.yaml and configs/*.yaml: load, validate, expand grids.

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

Modules: fields (the error, TrainConfig-derived types), grids (grids and seeds), plugins (method names), sections
(train, data, adversarial, autoattack, prune), studies (suites), schema (`Params`), rules (`validate`), yaml_io
(`load_params`), data_check (CIFAR on disk), cli (`python -m pipeline.params`). Run configs are built from validated
params by pipeline/run_config.py (re-exported here for callers of the old module).
"""

from awd.train_config import DATASET_NAMES, METHODS, MODEL_NAMES, OPTIMIZERS
from pipeline.params.cli import main
from pipeline.params.data_check import check_data
from pipeline.params.fields import ParamsError
from pipeline.params.grids import SIGNIFICANT_DIGITS, ExtraSeeds, Grid, Seeds, expand_grid
from pipeline.params.plugins import check_method, method_path, plugin_param
from pipeline.params.rules import SWEEP_MATCH_RTOL, sweep_match, validate
from pipeline.params.schema import Params, to_dict
from pipeline.params.sections import (
    AUTOATTACK_VERSIONS,
    TRAIN_KEYS,
    TRAIN_REQUIRED,
    AdversarialParams,
    AutoAttackParams,
    DataParams,
    Plateau,
    PruneParams,
    TrainOverrides,
    TrainSection,
)
from pipeline.params.studies import (
    SUITE_NAMES,
    AdversarialStudy,
    GridStudy,
    LrSensitivityStudy,
    NaturalStudy,
    NoisyStudy,
    Suites,
    UnderfitStudy,
    VariantRun,
    VariantsStudy,
)
from pipeline.params.yaml_io import load_params, load_yaml
from pipeline.run_config import NEUTRAL_ADVERSARIAL, RUN_CONFIG_KEYS, base_run_config, resolve_train

__all__ = [
    "ParamsError", "Params", "load_params", "load_yaml", "validate", "resolve_train", "base_run_config",
    "check_data", "check_method", "method_path", "plugin_param", "sweep_match", "to_dict", "expand_grid", "main",
    "RUN_CONFIG_KEYS", "DATASET_NAMES", "MODEL_NAMES", "METHODS", "OPTIMIZERS", "SUITE_NAMES", "TRAIN_KEYS",
    "TRAIN_REQUIRED", "AUTOATTACK_VERSIONS", "NEUTRAL_ADVERSARIAL", "SIGNIFICANT_DIGITS", "SWEEP_MATCH_RTOL",
    "Grid", "Seeds", "ExtraSeeds", "TrainSection", "TrainOverrides", "DataParams", "AdversarialParams",
    "AutoAttackParams", "PruneParams", "Plateau", "Suites", "NaturalStudy", "GridStudy", "AdversarialStudy",
    "VariantsStudy", "VariantRun", "NoisyStudy", "LrSensitivityStudy", "UnderfitStudy",
]
