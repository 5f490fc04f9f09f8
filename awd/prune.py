"""Non-iterative global L1 magnitude pruning of conv and linear weights (paper §3.4, Table 6)."""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.utils.prune as prune
from torch import nn

from awd.checks import is_real

_PRUNABLE = (nn.modules.conv._ConvNd, nn.Linear)


def _targets(model: nn.Module) -> list[tuple[nn.Module, str]]:
    targets = [(m, "weight") for m in model.modules() if isinstance(m, _PRUNABLE) and m.weight is not None]
    if not targets:
        raise ValueError(f"model {type(model).__name__} has no Conv or Linear weights to prune")
    return targets


def global_l1(model: nn.Module, amount: float) -> nn.Module:
    """A deep copy of ``model`` with the fraction ``amount`` of smallest-|w| conv/linear weights set to zero.

    One global threshold over all those weights (``prune.global_unstructured`` with L1Unstructured, which prunes
    exactly ``round(amount·N)`` of the N weights), made permanent with ``prune.remove``. ``model`` is untouched.
    """
    if not is_real(amount) or not math.isfinite(amount) or not 0 < amount < 1:
        raise ValueError(f"amount must be a fraction in (0, 1), got {amount!r}")
    pruned = copy.deepcopy(model)
    targets = _targets(pruned)
    prune.global_unstructured(targets, pruning_method=prune.L1Unstructured, amount=float(amount))
    for module, name in targets:
        prune.remove(module, name)
    return pruned


@torch.no_grad()
def sparsity(model: nn.Module) -> float:
    """Fraction of zeros among all conv and linear weights."""
    targets = _targets(model)
    zeros = sum(int((getattr(m, n) == 0).sum()) for m, n in targets)
    return zeros / sum(getattr(m, n).numel() for m, n in targets)
