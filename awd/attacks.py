"""L∞ PGD (Madry et al.) for adversarial training and validation; AutoAttack for the final test is `awd.autoattack`.

The two live apart so that a training run's cache key (which hashes the code it runs) does not cover AutoAttack.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.nn.functional as F

from awd.checks import check_int, is_real

BN_MODES = ("train", "eval")


def _check_fraction(name: str, value) -> float:
    if not is_real(value) or not (0.0 < value <= 1.0):
        raise ValueError(f"{name} must be a number in (0, 1] (pixel scale), got {value!r}")
    return float(value)


def _check_inputs(x, y) -> None:
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise ValueError(f"x must be a floating-point tensor of pixels in [0, 1], got {type(x).__name__}"
                         f"{'' if not isinstance(x, torch.Tensor) else ' of dtype ' + str(x.dtype)}")
    if not isinstance(y, torch.Tensor) or y.dtype != torch.int64 or y.ndim != 1:
        raise ValueError(f"y must be a 1-d int64 tensor of labels, got "
                         f"{y.dtype if isinstance(y, torch.Tensor) else type(y).__name__}"
                         f"{' with shape ' + str(tuple(y.shape)) if isinstance(y, torch.Tensor) else ''}")
    if x.ndim < 2 or x.shape[0] != y.shape[0]:
        raise ValueError(f"x and y must hold the same number of examples along dim 0, got x {tuple(x.shape)} "
                         f"and y {tuple(y.shape)}")


@contextmanager
def _frozen(model: torch.nn.Module, train: bool):
    """Puts every submodule in one mode and stops gradients into the parameters; restores both per module."""
    modes = [m.training for m in model.modules()]
    params = list(model.parameters())
    requires = [p.requires_grad for p in params]
    model.train(train)
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for m, mode in zip(model.modules(), modes):
            m.training = mode
        for p, r in zip(params, requires):
            p.requires_grad_(r)


# --------------------------------------------------------------------------------------------------------- PGD

def pgd(model, x, y, *, eps, step_size, steps, random_start=True, bn_mode="train", generator=None):
    """L∞ PGD on the cross-entropy; returns x_adv (detached) with ‖x_adv − x‖∞ ≤ eps and x_adv ∈ [0, 1].

    `bn_mode` is the mode the model runs in while the attack is generated ("train" updates BatchNorm running
    statistics, as in Rice et al.'s PGD-AT code); the model's modes and `requires_grad` flags are restored after.
    No gradient reaches the parameters: only δ is differentiated.
    """
    eps = _check_fraction("eps", eps)
    step_size = _check_fraction("step_size", step_size)
    steps = check_int("steps", steps, 0)
    if bn_mode not in BN_MODES:
        raise ValueError(f"bn_mode must be one of {BN_MODES}, got {bn_mode!r}")
    _check_inputs(x, y)

    x = x.detach()
    # δ's box is the intersection of the ε-ball and [0, 1] − x; one clamp against it per step.
    lo = (-x).clamp_(min=-eps)
    hi = (1.0 - x).clamp_(max=eps)
    if random_start:
        if generator is not None and generator.device != x.device:
            delta = torch.empty(x.shape, dtype=x.dtype, device=generator.device)
            delta = delta.uniform_(-eps, eps, generator=generator).to(x.device)
        else:
            delta = torch.empty_like(x).uniform_(-eps, eps, generator=generator)
        delta.clamp_(lo, hi)
    else:
        delta = torch.zeros_like(x)
    delta.requires_grad_(True)

    # enable_grad: validation loops often call this under no_grad, where no graph would be built.
    with _frozen(model, bn_mode == "train"), torch.enable_grad():
        for _ in range(steps):
            # sum, not mean: the sign is the same and low-precision autocast gradients do not underflow.
            loss = F.cross_entropy(model(x + delta), y, reduction="sum")
            (grad,) = torch.autograd.grad(loss, delta)
            with torch.no_grad():
                delta.add_(grad.sign_(), alpha=step_size)
                delta.clamp_(lo, hi)
    return (x + delta.detach()).clamp_(0.0, 1.0)
