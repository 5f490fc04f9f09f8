"""Model zoo. Every model takes pixels in [0, 1] and normalises inside (see `normalize.py`)."""

from __future__ import annotations

import inspect
from collections.abc import Callable

from torch import nn

from awd.checks import is_int
from awd.models.normalize import Normalize, NormalizedModel, default_mean_std
from awd.models.preact_wrn import PreActWideResNet
from awd.models.resnet import resnet32, resnet34, resnet50
from awd.models.tiny import TinyCNN

_BUILDERS: dict[str, Callable[..., nn.Module]] = {
    "preact_wrn": PreActWideResNet,
    "resnet32": resnet32,
    "resnet34": resnet34,
    "resnet50": resnet50,
    "tiny": TinyCNN,
}
MODEL_NAMES: tuple[str, ...] = tuple(_BUILDERS)


def _model_kwargs(name: str) -> list[str]:
    params = inspect.signature(_BUILDERS[name]).parameters
    return [p for p in params if p not in ("self", "num_classes", "in_channels")]


def build_model(name: str, num_classes: int, in_channels: int = 3, *, mean=None, std=None, **kw) -> NormalizedModel:
    """`name` in MODEL_NAMES; architecture kwargs: preact_wrn(depth=28, width=10, dropout=0.0), tiny(width=32).
    `mean`/`std` (per channel or one number) default to CIFAR statistics for 3 channels and 0.5 for 1 channel."""
    if name not in _BUILDERS:
        raise ValueError(f"model={name!r} is unknown; allowed: {list(MODEL_NAMES)}")
    if not is_int(num_classes) or num_classes < 2:
        raise ValueError(f"num_classes={num_classes!r} must be an integer >= 2")
    if not is_int(in_channels) or in_channels < 1:
        raise ValueError(f"in_channels={in_channels!r} must be an integer >= 1")
    allowed = _model_kwargs(name)
    unknown = sorted(set(kw) - set(allowed))
    if unknown:
        raise ValueError(f"model {name!r} got unknown keyword(s) {unknown}; allowed: {allowed + ['mean', 'std']}")
    if mean is None or std is None:
        default_mean, default_std = default_mean_std(in_channels)
        mean = default_mean if mean is None else mean
        std = default_std if std is None else std
    num_classes, in_channels = int(num_classes), int(in_channels)
    body = _BUILDERS[name](num_classes=num_classes, in_channels=in_channels, **kw)
    return NormalizedModel(Normalize(mean, std, in_channels), body)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


__all__ = ["MODEL_NAMES", "Normalize", "NormalizedModel", "build_model", "count_parameters"]
