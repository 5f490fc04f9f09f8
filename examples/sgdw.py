"""SGDW: decoupled weight decay for SGD (Loshchilov & Hutter, "Decoupled Weight Decay Regularization").

Coupled L2 decay adds λ·w to the gradient, so SGD's momentum buffer accumulates it and the decay keeps acting for
~1/(1−momentum) steps. SGDW shrinks the weights outside the gradient instead::

    w ← w − lr_t·λ·w − lr_t·buf,   buf ← momentum·buf + g        (g without any decay term)

The loop calls ``apply_()`` between ``backward()`` and ``optimizer.step()``; here ``apply_()`` multiplies the
decayed weights by (1 − lr_t·λ) in place and leaves ``.grad`` alone. Both updates read the pre-step weights
(the gradient was computed at them), so doing the shrink first is the same step. lr_t is the optimizer's current
learning rate per parameter group (after the scheduler), which the loop hands over through ``attach(optimizer)``.

In params: ``methods: {sgdw: "examples.sgdw:SGDW"}`` and a study's ``methods: {sgdw: {geomspace: [...]}}``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from awd.weight_decay import WeightDecay, global_norm


class SGDW(WeightDecay):
    name = "sgdw"
    param = "wd"  # the run-config field that holds λ
    param_label = "λ_SGDW"
    sweep = "log"

    def __init__(self, params, wd: float, exclude=None):
        super().__init__(params, exclude)
        if isinstance(wd, bool) or not isinstance(wd, (int, float)) or not wd >= 0 or wd == float("inf"):
            raise ValueError(f"sgdw: wd must be a finite number >= 0, got {wd!r}")
        self.wd = float(wd)
        self._lam = torch.full((), self.wd, device=self._lam.device)
        self._groups: list[tuple[float, list[Tensor]]] | None = None
        self._optimizer = None

    def attach(self, optimizer) -> None:
        self._optimizer = optimizer

    def _by_group(self, params: list[Tensor]) -> list[tuple[dict, list[Tensor]]]:
        if self._optimizer is None:
            raise RuntimeError("SGDW needs the optimizer's learning rate: build it with "
                               "build_weight_decay(..., optimizer=opt) or call attach(opt) before apply_()")
        wanted = {id(p) for p in params}
        out = []
        for group in self._optimizer.param_groups:
            mine = [p for p in group["params"] if id(p) in wanted]
            if mine:
                out.append((group, mine))
        return out

    @torch.no_grad()
    def apply_(self, grad_norm: Tensor | None = None) -> Tensor:
        params, grads = self._active()
        if not params:
            return self._lam
        g = self._grad_norm(grad_norm)
        g = global_norm(grads) if g is None else g
        # DoG as for fixed λ: the decay's size per unit of lr (λ‖w‖) against the loss gradient's
        self._dog = torch.where(g > 0, self.wd * global_norm(params) / g, 0.0)
        for group, mine in self._by_group(params):
            torch._foreach_mul_(mine, 1.0 - group["lr"] * self.wd)
        return self._lam

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        super().load_state_dict(state)
        self._lam = torch.full((), self.wd, device=self._lam.device)  # λ comes from the config, not the state
