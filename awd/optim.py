"""Base optimizer, ASAM (Kwon et al. 2021, after SamsungLabs/ASAM) and the training step that combines them with a
weight-decay method.

Weight decay is never inside the optimizer (``weight_decay=0``): a method from ``awd.weight_decay`` adds it to the
gradients. ``DecayedOptimizer.step(closure)`` is one training step, the only place that knows the order::

    closure()                 # loss and gradient at w
    asam.ascent_step()        # (ASAM) w <- w + e, grads zeroed
    closure()                 # (ASAM) gradient at w + e
    asam.restore()            # (ASAM) w back, bit for bit
    lam = wd.apply_(...)      # asam_awd_grad=descent: ‖g‖ of the gradient in hand; ascent: ‖g‖ at w
    optimizer.step()          # (ASAM: descent_step, which zeroes the grads)

With ASAM the decay sees the restored weights w, not w + e: this matches the reference, where SGD's built-in weight
decay runs in ``optimizer.step()`` after w is restored.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from awd.checks import is_real

OPTIMIZERS = ("sgd",)
AWD_GRADS = ("descent", "ascent")


def build_optimizer(name: str, params, lr: float, momentum: float = 0.9, nesterov: bool = False):
    """``torch.optim.SGD`` with ``weight_decay=0`` (the decay is applied by a weight-decay method)."""
    if name not in OPTIMIZERS:
        hint = "; ASAM wraps an optimizer: build 'sgd' and pass it to awd.optim.ASAM" if name == "asam" else ""
        raise ValueError(f"name must be one of {OPTIMIZERS}, got {name!r}{hint}")
    if not is_real(lr) or not math.isfinite(lr) or lr <= 0:
        raise ValueError(f"lr must be a finite number > 0, got {lr!r}")
    if not is_real(momentum) or not 0 <= momentum < 1:
        raise ValueError(f"momentum must be a number in [0, 1), got {momentum!r}")
    if not isinstance(nesterov, bool) or (nesterov and momentum == 0):
        raise ValueError(f"nesterov must be a bool and needs momentum > 0, got nesterov={nesterov!r}, momentum={momentum!r}")
    return torch.optim.SGD(params, lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=0.0)


class ASAM:
    """Adaptive sharpness-aware minimisation.

    Ascent: e = ρ·T²g/‖Tg‖ with T = |w| + η for parameters whose name contains "weight" (BatchNorm scales
    included, as in the reference) and T = 1 for the others (biases get a plain SAM perturbation).
    Paper defaults: ρ = 0.5 on CIFAR-10, 1.0 on CIFAR-100; η = 0 in the reference CIFAR example.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, model: nn.Module, rho: float = 0.5, eta: float = 0.0):
        if not is_real(rho) or not math.isfinite(rho) or rho <= 0:
            raise ValueError(f"rho must be a finite number > 0, got {rho!r}")
        if not is_real(eta) or not math.isfinite(eta) or eta < 0:
            raise ValueError(f"eta must be a finite number >= 0, got {eta!r}")
        self.optimizer, self.model = optimizer, model
        self.rho, self.eta = float(rho), float(eta)
        self._saved: tuple[list[Tensor], list[Tensor]] | None = None  # (params, their values at w)
        self._ascended = False
        self._ascent_norms: dict[int, Tensor] = {}

    @torch.no_grad()
    def ascent_step(self) -> None:
        """Move to w + e using the current gradients (at w), remember w, zero the gradients."""
        if self._ascended:
            raise RuntimeError("ASAM.ascent_step called twice; call descent_step() before the next ascent")
        named = [(n, p) for n, p in self.model.named_parameters() if p.grad is not None]
        if not named:
            raise RuntimeError("ASAM.ascent_step: no parameter has a gradient; call loss.backward() first")
        params: list[Tensor] = [p for _, p in named]
        grads = [p.grad for p in params if p.grad is not None]  # all of them: named holds those with a gradient
        self._ascent_norms = dict(zip(map(id, params), torch._foreach_norm(grads)))
        scale = [p.abs().add_(self.eta) if "weight" in n else None for n, p in named]
        scaled = [g if t is None else g * t for g, t in zip(grads, scale)]
        factor = self.rho / (torch.linalg.vector_norm(torch.stack(torch._foreach_norm(scaled))) + 1e-16)
        # scaled[i] is a fresh tensor for weights (safe to modify in place) and the gradient itself otherwise
        steps = [g * factor if t is None else s.mul_(t).mul_(factor) for g, s, t in zip(grads, scaled, scale)]
        self._saved = (params, [p.detach().clone() for p in params])
        torch._foreach_add_(params, steps)
        self._ascended = True
        self.optimizer.zero_grad()

    @torch.no_grad()
    def restore(self) -> None:
        """Put back the weights saved by ``ascent_step`` (exact copy); no-op if already restored."""
        if self._saved is not None:
            torch._foreach_copy_(*self._saved)
            self._saved = None

    def descent_step(self) -> None:
        """Restore w, step the base optimizer with the current gradients (taken at w + e), zero the gradients."""
        if not self._ascended:
            raise RuntimeError("ASAM.descent_step called without a preceding ascent_step")
        self.restore()
        self.optimizer.step()
        self.optimizer.zero_grad()
        self._ascended = False

    def ascent_grad_norm(self, params=None) -> Tensor:
        """Global L2 norm of the ascent gradient (at w), over ``params`` (default: all that had a gradient)."""
        if not self._ascent_norms:
            raise RuntimeError("ASAM.ascent_grad_norm: no ascent gradient recorded; call ascent_step() first")
        if params is None:
            norms = list(self._ascent_norms.values())
        else:
            norms = [self._ascent_norms[id(p)] for p in params if id(p) in self._ascent_norms]
            if not norms:
                raise ValueError("ASAM.ascent_grad_norm: none of params had a gradient at the last ascent_step")
        return torch.linalg.vector_norm(torch.stack(norms))


class DecayedOptimizer:
    """One training step: SGD (or ASAM around it) with a weight-decay method, torch.optim style.

    ``step(closure)``: ``closure()`` runs forward and ``backward()`` on the current batch and returns what the
    caller wants back (the loss, logits); it is called once (SGD) or twice (ASAM: at w, then at w + e), always on
    zeroed gradients. Returns ``(first closure result, λ)``, λ being the decay coefficient of this update. With ASAM,
    ``awd_grad`` says which gradient's norm the decay uses: "descent" (at w + e, the one applied) or "ascent" (at w).
    """

    def __init__(self, optimizer: torch.optim.Optimizer, weight_decay, asam: ASAM | None = None,
                 awd_grad: str = "descent"):
        if awd_grad not in AWD_GRADS:
            raise ValueError(f"awd_grad must be one of {AWD_GRADS}, got {awd_grad!r}")
        if asam is not None and asam.optimizer is not optimizer:
            raise ValueError("DecayedOptimizer: asam must wrap the same base optimizer")
        self.optimizer, self.weight_decay, self.asam, self.awd_grad = optimizer, weight_decay, asam, awd_grad

    def step(self, closure):
        self.optimizer.zero_grad(set_to_none=True)
        first = closure()
        wd = self.weight_decay
        if self.asam is None:
            lam = wd.apply_()
            self.optimizer.step()
            return first, lam
        self.asam.ascent_step()
        closure()
        self.asam.restore()
        grad_norm = self.asam.ascent_grad_norm(wd.params) if self.awd_grad == "ascent" and wd.params else None
        lam = wd.apply_(grad_norm=grad_norm)
        self.asam.descent_step()
        return first, lam
