"""Per-channel normalisation inside the model, so that attacks and augmentation work on pixels in [0, 1]."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from awd.checks import is_real

# CIFAR-10 training-set statistics (the values used by Rice et al. 2020 and most adversarial-training code).
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2471, 0.2435, 0.2616)
GRAY_MEAN = (0.5,)
GRAY_STD = (0.5,)


def default_mean_std(in_channels: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    if in_channels == 3:
        return CIFAR_MEAN, CIFAR_STD
    if in_channels == 1:
        return GRAY_MEAN, GRAY_STD
    raise ValueError(
        f"in_channels={in_channels!r} has no default normalisation; pass mean=... and std=... "
        "(defaults exist for in_channels 1 and 3)"
    )


def _as_channel_vector(name: str, value, in_channels: int) -> list[float]:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().flatten().tolist()
    if is_real(value):
        value = [value]
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise ValueError(f"{name}={value!r} must be a number or a sequence of {in_channels} numbers")
    try:
        values = [float(v) for v in value]
    except (TypeError, ValueError):
        raise ValueError(f"{name}={value!r} must be a number or a sequence of {in_channels} numbers") from None
    if len(values) == 1:
        values = values * in_channels
    if len(values) != in_channels:
        raise ValueError(f"{name}={list(value)!r} has {len(values)} values; in_channels={in_channels} needs {in_channels}")
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"{name}={list(value)!r} must be finite")
    return values


class Normalize(nn.Module):
    """(x - mean) / std per channel; mean/std are buffers so they follow `.to()` and are saved with the model."""

    def __init__(self, mean, std, in_channels: int):
        super().__init__()
        mean_v = _as_channel_vector("mean", mean, in_channels)
        std_v = _as_channel_vector("std", std, in_channels)
        if min(std_v) <= 0:
            raise ValueError(f"std={std_v!r} must be > 0 in every channel")
        self.register_buffer("mean", torch.tensor(mean_v, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std_v, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def extra_repr(self) -> str:
        return f"mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()}"


class NormalizedModel(nn.Module):
    """`body(normalize(x))`: the public model; inputs are pixels in [0, 1]."""

    def __init__(self, normalize: Normalize, body: nn.Module):
        super().__init__()
        self.normalize = normalize
        self.body = body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(self.normalize(x))
