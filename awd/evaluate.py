"""Evaluation of a classifier on in-memory arrays: accuracy, cross-entropy, weight norm, total loss (paper eq. 1).

``x`` is uint8 N×C×H×W (pixels, divided by 255 per batch) or floating point already in [0, 1]; models normalise
inside. Everything runs in eval mode under ``torch.no_grad()``; each module's train/eval mode is restored after.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from awd.checks import is_int, is_real
from awd.weight_decay import global_norm


@contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        for m, training in modes:
            m.training = training


def _device(model: nn.Module, device) -> torch.device:
    if device is not None:
        return torch.device(device)
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def _logit_batches(model: nn.Module, x: Tensor, y: Tensor, batch_size: int, device) -> Iterator[tuple[Tensor, Tensor]]:
    if not isinstance(x, Tensor) or not isinstance(y, Tensor):
        raise TypeError(f"x and y must be tensors, got {type(x).__name__} and {type(y).__name__}")
    if x.dtype != torch.uint8 and not x.is_floating_point():
        raise TypeError(f"x must be uint8 pixels or floating point in [0, 1], got dtype {x.dtype}")
    if y.ndim != 1 or len(y) != len(x):
        raise ValueError(f"y must be 1-D with one label per row of x ({len(x)}), got shape {tuple(y.shape)}")
    if not is_int(batch_size) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    if len(x) == 0:
        raise ValueError("x is empty: nothing to evaluate")
    device = _device(model, device)
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
    for start in range(0, len(x), batch_size):
        xb = x[start : start + batch_size].to(device, non_blocking=True)
        xb = xb.to(dtype).div_(255) if xb.dtype == torch.uint8 else xb.to(dtype)
        yield model(xb), y[start : start + batch_size].to(device, non_blocking=True)


def per_example_correct(model: nn.Module, x: Tensor, y: Tensor, batch_size: int = 512, device=None) -> Tensor:
    """Bool tensor (CPU, length N): whether the model's top-1 prediction equals the label."""
    with _eval_mode(model):
        return torch.cat([(o.argmax(1) == t).cpu() for o, t in _logit_batches(model, x, y, batch_size, device)])


def accuracy(model: nn.Module, x: Tensor, y: Tensor, batch_size: int = 512, device=None) -> float:
    """Top-1 accuracy in [0, 1]."""
    return per_example_correct(model, x, y, batch_size, device).double().mean().item()


def cross_entropy(model: nn.Module, x: Tensor, y: Tensor, batch_size: int = 512, device=None) -> float:
    """Mean cross-entropy over all N examples."""
    with _eval_mode(model):
        total = sum(
            F.cross_entropy(o.float(), t, reduction="sum").double() for o, t in _logit_batches(model, x, y, batch_size, device)
        )
    return total.item() / len(x)


def weight_norm(model: nn.Module) -> float:
    """‖W‖₂: global L2 norm of all parameters."""
    params = [p.detach() for p in model.parameters()]
    if not params:
        raise ValueError("weight_norm: the model has no parameters")
    return global_norm(params).item()


def total_loss(model: nn.Module, x: Tensor, y: Tensor, wd: float = 5e-4, batch_size: int = 512, device=None) -> float:
    """Paper eq. 1: mean cross-entropy + wd/2·‖W‖² (Table 2 reports it with wd = 0.0005 for every method)."""
    if not is_real(wd) or wd < 0:
        raise ValueError(f"wd must be a number >= 0, got {wd!r}")
    return cross_entropy(model, x, y, batch_size, device) + wd / 2 * weight_norm(model) ** 2
