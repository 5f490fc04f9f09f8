"""Weight-decay methods, applied to the gradients between ``loss.backward()`` and ``optimizer.step()``.

The base optimizer runs with ``weight_decay=0``; one of these objects adds the decay term to ``.grad`` in place::

    loss.backward()
    lam = wd.apply_()        # grad += decay term; returns the λ used (0-dim tensor, on device)
    optimizer.step()
    trace.record(lam, wd.dog())

Nothing here synchronises host and device: norms stay 0-dim tensors, guards use ``torch.where``. Tensors returned
by ``apply_()`` and ``dog()`` are fresh every step and never mutated afterwards, so callers may keep them.

DoG (paper eq. 3) is ‖decay term‖ / ‖g‖ with g the loss gradient before the decay is added, both global L2 norms
over the decayed parameters; it is 0 when ‖g‖ = 0. Parameters whose ``.grad`` is None are skipped.
"""

from __future__ import annotations

import math
from typing import Any, Protocol, cast

import torch
from torch import Tensor, nn

from awd.checks import is_real
from awd.methods import MethodError, load_method
from awd.train_config import METHODS  # the built-in methods, listed once with the run config

# Relative std of |g| below which AdaDecay treats a tensor's gradient magnitudes as constant.
_ADADECAY_FLAT = 1e-4

# Modules whose affine parameters count as "BN" for exclude_bn_bias (_NormBase covers BatchNorm and InstanceNorm).
_NORM_MODULES = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm, nn.RMSNorm)


def global_norm(tensors: list[Tensor]) -> Tensor:
    """L2 norm of all ``tensors`` viewed as one vector, as a 0-dim tensor (no host sync)."""
    if not tensors:
        raise ValueError("global_norm: got an empty list of tensors; need at least one")
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(tensors)))


def _norms(grads: list[Tensor], params: list[Tensor], grad_norm: Tensor | None) -> tuple[Tensor, Tensor]:
    """(‖g‖, ‖w‖); one foreach pass over both lists unless ‖g‖ is given."""
    if grad_norm is not None:
        return grad_norm, global_norm(params)
    per_tensor = torch.stack(torch._foreach_norm(grads + params)).view(2, len(params))
    g, w = torch.linalg.vector_norm(per_tensor, dim=1).unbind()
    return g, w


def _add_scaled_(grads: list[Tensor], params: list[Tensor], scale: Tensor) -> None:
    """grads += scale·params for a 0-dim tensor ``scale`` without reading it on the host."""
    if params[0].device.type == "cpu":  # broadcasting addcmul avoids the temporaries of mul + add
        torch._foreach_addcmul_(grads, params, [scale] * len(params))
    else:  # multi-tensor kernels; a broadcasting addcmul would fall back to one launch per tensor
        torch._foreach_add_(grads, torch._foreach_mul(params, scale))


def _param_list(params, arg: str = "params") -> list[Tensor]:
    if isinstance(params, nn.Module):
        params = params.parameters()
    if isinstance(params, Tensor):
        params = [params]
    out, seen = [], set()
    for p in params:
        if not isinstance(p, Tensor):
            raise TypeError(f"{arg}: expected tensors (or an nn.Module), got an element of type {type(p).__name__}")
        if id(p) not in seen:  # shared parameters must be decayed once
            seen.add(id(p))
            out.append(p)
    return out


def bn_bias_params(source) -> list[Tensor]:
    """Parameters that ``exclude_bn_bias`` leaves out: biases and normalisation-layer affine parameters.

    ``source`` is an ``nn.Module`` (exact: parameters of BatchNorm/InstanceNorm/GroupNorm/LayerNorm/RMSNorm modules,
    plus every parameter named ``*bias``) or an iterable of ``(name, parameter)`` pairs, where norm layers are
    recognised by shape instead: a parameter is excluded when its name ends in ``bias`` or it has ``ndim <= 1``
    (in conv/linear networks the only 1-D parameters are biases and norm-layer scales).
    """
    out: dict[int, Tensor] = {}
    if isinstance(source, nn.Module):
        for module in source.modules():
            if isinstance(module, _NORM_MODULES):
                for p in module.parameters(recurse=False):
                    out[id(p)] = p
        named = source.named_parameters()
        by_shape = False
    else:
        named, by_shape = source, True
    for item in named:
        if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], Tensor)):
            raise TypeError(f"named_params: expected (name, tensor) pairs, got {type(item).__name__}")
        name, p = item
        if name.rsplit(".", 1)[-1] == "bias" or (by_shape and p.ndim <= 1):
            out[id(p)] = p
    return list(out.values())


def _check_nonneg(name: str, value) -> float:
    if not is_real(value) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


class _WeightDecay:
    """Shared bookkeeping: the decayed parameter list and the last λ and DoG (0-dim float32 tensors).

    A method class (awd/methods.py) also names itself and its hyper-parameter: ``name``, ``param`` (the run-config
    field holding its value), ``param_label`` and ``sweep``."""

    name = ""
    param = "wd"
    param_label = ""
    sweep = "log"

    def __init__(self, params=None, exclude=None):
        params = [] if params is None else _param_list(params)
        excluded = {id(p) for p in _param_list(exclude, "exclude")} if exclude is not None else set()
        self.params = [p for p in params if id(p) not in excluded]
        device = self.params[0].device if self.params else torch.device("cpu")
        self._lam = torch.zeros((), device=device)
        self._dog = torch.zeros((), device=device)

    def _active(self) -> tuple[list[Tensor], list[Tensor]]:
        params = [p for p in self.params if p.grad is not None]
        if params and params[0].device != self._lam.device:  # the model was moved after construction
            self._lam = self._lam.to(params[0].device)
            self._dog = self._dog.to(params[0].device)
        return params, [p.grad for p in params]

    def _grad_norm(self, grad_norm: Tensor | None) -> Tensor | None:
        if grad_norm is None:
            return None
        if not isinstance(grad_norm, Tensor) or grad_norm.numel() != 1:
            raise TypeError(f"grad_norm must be a 1-element tensor or None, got {grad_norm!r}")
        return grad_norm.detach().reshape(()).to(device=self._lam.device, dtype=self._lam.dtype)

    def apply_(self, grad_norm: Tensor | None = None) -> Tensor:
        raise NotImplementedError

    def attach(self, optimizer) -> None:
        """Called once with the optimizer the loop steps; coupled methods only touch ``.grad`` and ignore it."""

    def dog(self) -> Tensor:
        """DoG measured at the last ``apply_()`` (0-dim tensor; 0 before the first)."""
        return self._dog

    def state_dict(self) -> dict[str, Tensor]:
        return {"lam": self._lam.detach().clone(), "dog": self._dog.detach().clone()}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        missing = {"lam", "dog"} - set(state)
        if missing:
            raise KeyError(f"{type(self).__name__}.load_state_dict: state lacks {sorted(missing)}; has {sorted(state)}")
        self._lam = state["lam"].detach().to(device=self._lam.device, dtype=torch.float32).reshape(()).clone()
        self._dog = state["dog"].detach().to(device=self._dog.device, dtype=torch.float32).reshape(()).clone()


WeightDecay = _WeightDecay  # the public name plugins extend (examples/sgdw.py)


class NoWeightDecay(_WeightDecay):
    """No decay: ``apply_()`` leaves the gradients alone and returns λ = 0; DoG is 0."""

    name, param, param_label, sweep = "none", "wd", "none", "log"

    @classmethod
    def from_config(cls, params, *, exclude=None, **_):
        return cls(params, exclude)

    def apply_(self, grad_norm: Tensor | None = None) -> Tensor:
        return self._lam


class FixedWeightDecay(_WeightDecay):
    """Classic L2 weight decay ``grad += wd·w``: identical to ``torch.optim.SGD(weight_decay=wd)``."""

    name, param, param_label, sweep = "fixed", "wd", "λ_wd", "log"

    def __init__(self, params, wd: float = 5e-4, exclude=None):
        super().__init__(params, exclude)
        self.wd = _check_nonneg("wd", wd)
        self._lam = torch.full((), self.wd, device=self._lam.device)

    @torch.no_grad()
    def apply_(self, grad_norm: Tensor | None = None) -> Tensor:
        params, grads = self._active()
        if not params:
            return self._lam
        g, w = _norms(grads, params, self._grad_norm(grad_norm))
        torch._foreach_add_(grads, params, alpha=self.wd)  # the same kernel SGD's weight_decay runs
        self._dog = torch.where(g > 0, self.wd * w / g, 0.0)
        return self._lam

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        super().load_state_dict(state)
        self._lam = torch.full((), self.wd, device=self._lam.device)  # wd comes from the config, not the state


class AdaptiveWeightDecay(_WeightDecay):
    """Adaptive weight decay (Ghiasi et al., Algorithm 1).

    Each step: λ_t = DoG·‖g‖/‖w‖ (global norms over the decayed parameters, computed without autograd),
    λ̄ ← (1−ema)·λ̄ + ema·λ_t with λ̄ = 0 before the first step (the paper: λ̄ ← 0.1·λ̄ + 0.9·λ_t), then
    ``grad += λ̄·w``. ``apply_(grad_norm=...)`` replaces ‖g‖ by a precomputed norm (e.g. ASAM's ascent gradient).
    The measured DoG is λ̄·‖w‖/‖g‖ with the same ‖g‖, so it equals the target up to the EMA lag.
    """

    name, param, param_label, sweep = "awd", "dog", "DoG", "log"

    @classmethod
    def from_config(cls, params, *, dog=None, ema=0.9, exclude=None, **_):
        if dog is None:
            raise ValueError("method='awd' needs dog (the target DoG ratio, e.g. 0.016); got dog=None")
        return cls(params, dog, ema, exclude)

    def __init__(self, params, dog: float, ema: float = 0.9, exclude=None):
        super().__init__(params, exclude)
        if _check_nonneg("dog", dog) <= 0:
            raise ValueError(f"dog must be > 0, got {dog!r}")
        ema = _check_nonneg("ema", ema)
        if not 0 < ema <= 1:
            raise ValueError(f"ema must be in (0, 1], got {ema!r}")
        self.dog_target = float(dog)
        self.ema = ema

    @torch.no_grad()
    def apply_(self, grad_norm: Tensor | None = None) -> Tensor:
        params, grads = self._active()
        if not params:
            return self._lam
        g, w = _norms(grads, params, self._grad_norm(grad_norm))
        lam_t = torch.where(w > 0, self.dog_target * g / w, 0.0)
        lam = (1 - self.ema) * self._lam + self.ema * lam_t  # out of place: earlier returned λ stay valid
        _add_scaled_(grads, params, lam)
        self._lam = lam
        self._dog = torch.where(g > 0, lam * w / g, 0.0)
        return lam


class AdaDecay(_WeightDecay):
    """AdaDecay (Nakamura & Hong 2019): per-parameter decay ``grad += wd·θ⊙w``.

    Per tensor (layer), the gradient magnitudes are standardised, z = (|g| − mean|g|)/std|g| (population std),
    and θ = 2/(1 + exp(−α·z)) ∈ (0, 2). A tensor whose |g| is constant (std ≤ 1e-4·mean|g|, i.e. rounding noise)
    gets z = 0, θ = 1. ``apply_()`` returns wd. α = 4 is the value public AdaDecay implementations default to.
    """

    name, param, param_label, sweep = "adadecay", "wd", "λ_AdaDecay", "log"

    @classmethod
    def from_config(cls, params, *, wd=None, alpha=4.0, exclude=None, **_):
        return cls(params, wd, alpha, exclude)

    def __init__(self, params, wd: float, alpha: float = 4.0, exclude=None):
        super().__init__(params, exclude)
        self.wd = _check_nonneg("wd", wd)
        self.alpha = _check_nonneg("alpha", alpha)
        self._lam = torch.full((), self.wd, device=self._lam.device)

    @staticmethod
    def theta(grad: Tensor, alpha: float) -> Tensor:
        """θ for one tensor's gradient (same shape as ``grad``)."""
        mag = grad.abs()
        mean, std = mag.mean(), mag.std(correction=0)
        # A constant |g| has std = 0 up to rounding; standardising would blow that noise up to |z| ~ 1.
        flat = std <= _ADADECAY_FLAT * mean
        return 2.0 * torch.sigmoid(torch.where(flat, 0.0, alpha * (mag - mean) / std))

    @torch.no_grad()
    def apply_(self, grad_norm: Tensor | None = None) -> Tensor:
        params, grads = self._active()
        if not params:
            return self._lam
        g = self._grad_norm(grad_norm)
        g = global_norm(grads) if g is None else g
        decay = [self.theta(gr, self.alpha).mul_(p).mul_(self.wd) for p, gr in zip(params, grads)]
        self._dog = torch.where(g > 0, global_norm(decay) / g, 0.0)
        torch._foreach_add_(grads, decay)
        return self._lam

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        super().load_state_dict(state)
        self._lam = torch.full((), self.wd, device=self._lam.device)


class _MethodClass(Protocol):
    """A method class as build_weight_decay uses it (without a ``from_config``)."""

    param: str
    param_label: str

    def __call__(self, params: Any, value: float, /, *, exclude: Any = None) -> _WeightDecay: ...


def build_weight_decay(
    method: str,
    params,
    *,
    wd: float | None = None,
    dog: float | None = None,
    alpha: float = 4.0,
    ema: float = 0.9,
    exclude_bn_bias: bool = False,
    named_params=None,
    optimizer=None,
) -> _WeightDecay:
    """Build the weight-decay method ``method`` for ``params``: a built-in (none | fixed | awd | adadecay), a
    plugin ``package.module:Class`` or an entry-point name (see awd/methods.py).

    ``params`` is an ``nn.Module`` or an iterable of parameters. With ``exclude_bn_bias=True`` biases and
    normalisation-layer parameters are neither decayed nor counted in AWD's norms; which ones they are is read
    from ``params`` when it is a module (exact), else from ``named_params`` (``model.named_parameters()`` or the
    module itself; see :func:`bn_bias_params`). The paper decays all parameters (the default). ``optimizer``, when
    given, is passed to the method's ``attach`` (a decoupled method reads its learning rate there).
    """
    try:
        # A plugin need not subclass _WeightDecay: load_method has checked the interface _MethodClass names.
        cls = cast(_MethodClass, load_method(method))
    except MethodError as e:
        raise ValueError(f"method must be one of {METHODS} or a valid plugin: {e}") from None
    if not isinstance(exclude_bn_bias, bool):
        raise TypeError(f"exclude_bn_bias must be a bool, got {exclude_bn_bias!r}")
    exclude = None
    if exclude_bn_bias:
        source = params if isinstance(params, nn.Module) else named_params
        if source is None:
            raise ValueError(
                "exclude_bn_bias=True needs to know parameter names or modules: pass the model as params, "
                "or named_params=model.named_parameters() (named_params is None)"
            )
        exclude = bn_bias_params(source)
    values = {"wd": wd, "dog": dog}
    if cls.param == "wd" and wd is None and method != "none":
        raise ValueError(f"method={method!r} needs wd (the decay coefficient); got wd=None")
    from_config = getattr(cls, "from_config", None)
    if from_config is not None:
        wd_obj = from_config(params, wd=wd, dog=dog, alpha=alpha, ema=ema, exclude=exclude)
    else:
        value = values[cls.param]
        if value is None:
            raise ValueError(f"method={method!r} needs {cls.param} ({cls.param_label}); got {cls.param}=None")
        wd_obj = cls(params, value, exclude=exclude)
    if optimizer is not None:
        attach = getattr(wd_obj, "attach", None)
        if callable(attach):
            attach(optimizer)
    return wd_obj
