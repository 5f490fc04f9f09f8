"""The params sections other than `suites`: train (and a study's train overrides), data, adversarial,
autoattack, prune."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, model_validator

from awd.train_config import Choice, Flag, Int, Model, Real, Text, TrainConfig, problems_error
from pipeline.params.fields import field_bounds, section_model
from pipeline.params.grids import Grid
from pipeline.run_config import RUN_CONFIG_KEYS

AUTOATTACK_VERSIONS = ("standard", "plus", "rand", "custom")
# awd.autoattack.AA_ATTACKS, written out so that loading params does not import torch (a unit test checks they match)
AUTOATTACK_ATTACKS = ("apgd-ce", "apgd-dlr", "fab", "square", "apgd-t", "fab-t")

EXECUTOR_HINT = ("executor settings are not params: put them in executor.yaml (or the file $AWD_EXECUTOR names), "
                 "read by jobs/executors.py; they never enter a run's cache key")
# Run-config keys that are not train keys, and where they are set.
_ELSEWHERE = {
    **{k: f"{k!r} is set per study (methods / wds / dogs / wd / dog), not in train" for k in
       ("wd", "wds", "dog", "dogs", "wd_method", "methods")},
    "dataset": "the dataset is set per study (suites.<suite>[i].dataset), not in train",
    **{k: f"{k!r} belongs in the top-level adversarial section, not in train"
       for k in ("eps", "step_size", "train_steps", "val_steps", "val_from_fraction", "bn_mode", "adversarial")},
    **{k: f"{k!r} belongs in the top-level data section, not in train" for k in ("val_fraction", "split_seed")},
    **{k: f"{k!r} is set by the noisy suite (rates, noise_seed), not in train" for k in ("noise_rate", "noise_seed")},
    "executor": EXECUTOR_HINT,
}
TRAIN_KEYS = tuple(k for k in RUN_CONFIG_KEYS if k not in _ELSEWHERE)
TRAIN_REQUIRED = ("model", "epochs", "batch_size", "lr")

TrainSection = section_model("TrainSection", TRAIN_KEYS, required=TRAIN_REQUIRED, hints=_ELSEWHERE)
TrainOverrides = section_model("TrainOverrides", TRAIN_KEYS, partial=True, hints=_ELSEWHERE)
FullTrain = Annotated[TrainSection, AfterValidator(lambda m: m.model_dump())]
Overrides = Annotated[TrainOverrides, AfterValidator(lambda m: m.model_dump(exclude_unset=True))]

DataParams = section_model("DataParams", ("val_fraction", "split_seed"), root=(Text, "data/raw"), download=(Flag, False))
# Only adversarial runs read this section, so eps and step_size are also > 0 here (TrainConfig: [0, 1], 0 when natural).
_ATTACK = {k: (Real(**{**{b: v for b, v in field_bounds(k).items() if b != "ge"}, "gt": 0}),
               TrainConfig.model_fields[k].default) for k in ("eps", "step_size")}
AdversarialParams = section_model("AdversarialParams", ("train_steps", "val_steps", "val_from_fraction", "bn_mode"),
                                  **_ATTACK)


class AutoAttackParams(Model):
    version: Choice(AUTOATTACK_VERSIONS, "autoattack version") = "standard"
    n_test: Int(ge=1) | None = None  # pydantic evaluates the annotation
    shards: Int(ge=1) = 1
    batch_size: Int(ge=1) = 500
    block_size: Int(ge=1) = 500  # examples attacked together with one seed; part of the result, so of the key
    seed: Int(ge=0) = 0
    # version: custom runs only these attacks, each with the standard version's settings (a cheaper robust estimate
    # than the standard four; the report names it); part of the key only then, so the standard version's keys do not
    # change
    attacks: tuple[Choice(AUTOATTACK_ATTACKS, "autoattack attack"), ...] | None = None

    @model_validator(mode="after")
    def _shards_fit(self):
        p = []
        if self.n_test is not None and self.shards > self.n_test:
            p.append((".shards", f"{self.shards} shards for n_test={self.n_test} examples would leave empty shards; "
                                 "must be <= n_test"))
        if self.version == "custom" and not self.attacks:
            p.append((".attacks", f"version: custom needs attacks: a non-empty list from {list(AUTOATTACK_ATTACKS)}"))
        elif self.version != "custom" and self.attacks is not None:
            p.append((".attacks", f"attacks is only read with version: custom (version is {self.version!r}, whose "
                                  "attacks are fixed); remove it or set version: custom"))
        elif self.attacks and len(set(self.attacks)) != len(self.attacks):
            p.append((".attacks", f"duplicate attacks in {list(self.attacks)}; list each once"))
        if p:
            raise problems_error(p)
        return self

    def estimate(self) -> str:
        """The robust estimate's name, as results and the report state it."""
        return "AutoAttack " + (f"custom ({' + '.join(self.attacks or ())})" if self.version == "custom"
                                else self.version)


class PruneParams(Model):
    amounts: Grid(gt=0, lt=1) = (0.4, 0.5, 0.6, 0.7, 0.8, 0.9)  # awd.prune: a fraction of the weights


class Plateau(Model):
    window: Int(ge=1)
    rel_tol: Real(gt=0, lt=1)
