"""Run configs from validated params: the global train block merged with a study's (and a run's) overrides, and
every run-config key filled in. pipeline/suites.py builds each cell's config from `base_run_config`; the params rules
use `merge_train` to check the effective train block."""

from __future__ import annotations

from typing import TYPE_CHECKING

from awd.train_config import TrainConfig

if TYPE_CHECKING:
    from pipeline.params import Params

RUN_CONFIG_KEYS = tuple(TrainConfig.model_fields)  # docs/design.md "Run config", in that order

# Natural runs get these constants so that editing the adversarial section never changes their cache keys.
# Steps are 1, the least TrainConfig accepts; with adversarial false nothing reads them.
NEUTRAL_ADVERSARIAL = {"adversarial": False, "eps": 0.0, "step_size": 0.0, "train_steps": 1, "val_steps": 1,
                       "val_from_fraction": 0.0, "bn_mode": "train"}


def merge_train(base: dict, overrides: dict) -> dict:
    out = dict(base)
    if "model" in overrides and "model_kw" not in overrides and overrides["model"] != base.get("model"):
        out["model_kw"] = {}
    out.update(overrides)
    out["model_kw"] = dict(out.get("model_kw", {}))
    return out


def resolve_train(params: Params, study, overrides: dict | None = None) -> dict:
    """Global train block + the study's train overrides (+ e.g. a variant run's) + dataset and data split keys."""
    cfg = merge_train(merge_train(params.train, study.train), overrides or {})
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
