"""`TrainConfig`: the run config of docs/design.md, validated so that a bad value fails before any training."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields

CHOICES = {
    "optimizer": ("sgd", "asam"),
    "asam_awd_grad": ("descent", "ascent"),
    "wd_method": ("none", "fixed", "awd", "adadecay"),
    "bn_mode": ("train", "eval"),
}
# name -> smallest allowed value
INTS = {"split_seed": 0, "noise_seed": 0, "epochs": 1, "batch_size": 1, "train_steps": 1, "val_steps": 1,
        "seed": 0, "dog_log_every": 1}
# name -> (low, low allowed, high, high allowed)
FLOATS = {
    "val_fraction": (0.0, False, 1.0, False),
    "noise_rate": (0.0, True, 1.0, False),
    "lr": (0.0, False, math.inf, False),
    "momentum": (0.0, True, 1.0, False),
    "asam_rho": (0.0, False, math.inf, False),
    "asam_eta": (0.0, True, math.inf, False),
    "wd": (0.0, True, math.inf, False),
    "dog": (0.0, True, math.inf, False),
    "awd_ema": (0.0, True, 1.0, False),
    "adadecay_alpha": (0.0, False, math.inf, False),
    "eps": (0.0, True, math.inf, False),
    "step_size": (0.0, True, math.inf, False),
}
BOOLS = ("nesterov", "exclude_bn_bias", "augment", "adversarial", "bf16", "channels_last", "deterministic")
STRS = ("dataset", "model")


@dataclass
class TrainConfig:
    """Defaults are those of params.yaml; the pipeline always passes every key."""

    dataset: str = "digits"
    val_fraction: float = 0.1
    split_seed: int = 0
    noise_rate: float = 0.0
    noise_seed: int = 0
    model: str = "tiny"
    model_kw: dict = field(default_factory=dict)
    epochs: int = 8
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    optimizer: str = "sgd"
    asam_rho: float = 0.5
    asam_eta: float = 0.0
    asam_awd_grad: str = "descent"
    wd_method: str = "fixed"
    wd: float = 5e-4
    dog: float = 0.0
    awd_ema: float = 0.9
    adadecay_alpha: float = 4.0
    exclude_bn_bias: bool = False
    augment: bool = True  # the dataset's standard crop (+ flip) augmentation (awd.data.augmentation)
    adversarial: bool = False
    eps: float = 8 / 255
    step_size: float = 2 / 255
    train_steps: int = 7
    val_steps: int = 20
    bn_mode: str = "train"
    seed: int = 0
    bf16: bool = False
    channels_last: bool = False
    deterministic: bool = True
    dog_log_every: int = 1

    def __post_init__(self):
        for name in STRS:
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise ValueError(f"train config: {name}={value!r} must be a non-empty string")
        for name, allowed in CHOICES.items():
            value = getattr(self, name)
            if value not in allowed:
                raise ValueError(f"train config: {name}={value!r} is not one of {list(allowed)}")
        for name in BOOLS:
            value = getattr(self, name)
            if not isinstance(value, bool):
                raise ValueError(f"train config: {name}={value!r} must be true or false")
        for name, low in INTS.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"train config: {name}={value!r} must be an integer >= {low}")
        for name, (lo, lo_ok, hi, hi_ok) in FLOATS.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"train config: {name}={value!r} must be a number")
            value = float(value)
            inside = (value > lo or (lo_ok and value == lo)) and (value < hi or (hi_ok and value == hi))
            if not inside:
                raise ValueError(
                    f"train config: {name}={value!r} must be in {'[' if lo_ok else '('}{lo:g}, {hi:g}{']' if hi_ok else ')'}"
                )
            setattr(self, name, value)
        if not isinstance(self.model_kw, dict) or not all(isinstance(k, str) for k in self.model_kw):
            raise ValueError(f"train config: model_kw={self.model_kw!r} must be a mapping of keyword names to values")
        self.model_kw = dict(self.model_kw)
        if self.wd_method == "awd" and self.dog <= 0:
            raise ValueError(f"train config: dog={self.dog!r} must be > 0 when wd_method='awd'")
        if self.wd_method in ("fixed", "adadecay") and self.wd <= 0:
            raise ValueError(f"train config: wd={self.wd!r} must be > 0 when wd_method={self.wd_method!r} "
                             "(use wd_method='none' for no weight decay)")
        if self.nesterov and self.momentum == 0:
            raise ValueError("train config: nesterov=true needs momentum > 0 (momentum=0.0)")
        if self.adversarial and (self.eps <= 0 or self.step_size <= 0):
            raise ValueError(f"train config: adversarial training needs eps > 0 and step_size > 0 "
                             f"(eps={self.eps!r}, step_size={self.step_size!r})")

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        if not isinstance(d, dict):
            raise ValueError(f"train config must be a mapping, got {type(d).__name__}")
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(d) - set(known))
        if unknown:
            raise ValueError(f"train config: unknown key(s) {unknown}; allowed keys are {known}")
        return cls(**d)

    def to_dict(self) -> dict:
        return asdict(self)
