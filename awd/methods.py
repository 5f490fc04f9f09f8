"""The weight-decay method registry: every method, built-in or a user's plugin, is one class.

A method class implements the interface the training loop uses (``apply_()`` -> λ as a 0-dim device tensor,
``dog()``, ``state_dict()``, ``load_state_dict()``), is built as ``cls(params, value, exclude=None)`` (``value``
is the run-config field named by ``param``) and carries four class attributes:

- ``name``: what tables and figures call it; ``param``: the run-config field holding its value (``"wd"`` or
  ``"dog"``); ``param_label``: how tables name that value (``"λ_wd"``, ``"DoG"``); ``sweep``: ``"log"`` or
  ``"linear"``, how its values are gridded.

Optional: ``attach(optimizer)``, called once by the training loop after the optimizer exists (a decoupled method
reads the scheduled learning rate from it), and ``from_config(params, *, wd, dog, alpha, ema, exclude)`` when the
constructor needs more than the one value (the built-ins AWD and AdaDecay).

``resolve_method(spec)`` finds the class: a built-in name, ``package.module:Class``, or an entry point of the
group ``awd_bench.methods``. Nothing here imports torch until a class is resolved.
"""

from __future__ import annotations

import importlib
import importlib.metadata

BUILTINS = {
    "none": "awd.weight_decay:NoWeightDecay",
    "fixed": "awd.weight_decay:FixedWeightDecay",
    "awd": "awd.weight_decay:AdaptiveWeightDecay",
    "adadecay": "awd.weight_decay:AdaDecay",
}
ENTRY_POINT_GROUP = "awd_bench.methods"
INTERFACE = ("apply_", "dog", "state_dict", "load_state_dict")
ATTRIBUTES = {"name": None, "param": ("wd", "dog"), "param_label": None, "sweep": ("log", "linear")}


class MethodError(ValueError):
    """A method name or class that cannot be used; the message names the method and what is wrong."""


def is_plugin_spec(spec: str) -> bool:
    """A ``package.module:Class`` path (what plugin runs carry in their ``wd_method``)."""
    return isinstance(spec, str) and ":" in spec


def plugin_modules(spec: str) -> tuple[str, ...]:
    """The module a plugin spec names (its code enters the run's key and code snapshot); () for a built-in."""
    return (spec.split(":", 1)[0],) if is_plugin_spec(spec) else ()


def _entry_point(name: str):
    matches = [ep for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP) if ep.name == name]
    return matches[0] if matches else None


def entry_point_path(name: str) -> str | None:
    """The ``package.module:Class`` an installed package registers as method ``name`` (group
    ``awd_bench.methods``), or None."""
    ep = _entry_point(name)
    return ep.value if ep is not None else None


def _import_class(spec: str, shown: str) -> type:
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr or not all(p.isidentifier() for p in module_name.split(".") + attr.split(".")):
        raise MethodError(f"method {shown!r}: {spec!r} is not a path 'package.module:Class'")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name and module_name.startswith(e.name):
            raise MethodError(f"method {shown!r} ({spec}): module {e.name!r} not found") from None
        raise MethodError(f"method {shown!r} ({spec}): importing {module_name} failed: {e}") from e
    obj: object = module
    for part in attr.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            raise MethodError(f"method {shown!r} ({spec}): module {module_name!r} has no class {attr!r}")
    if not isinstance(obj, type):
        raise MethodError(f"method {shown!r} ({spec}): {attr!r} is a {type(obj).__name__}, not a class")
    return obj


def resolve_method(spec: str, name: str | None = None) -> type:
    """The class of method ``spec``: a built-in name (none | fixed | awd | adadecay), a ``package.module:Class``
    path, or the name of an entry point in group ``awd_bench.methods``. Raises MethodError saying which; ``name``
    is what messages call the method (its params name), ``spec`` by default."""
    if not isinstance(spec, str) or not spec:
        raise MethodError(f"method must be a non-empty string, got {spec!r}")
    if spec in BUILTINS:
        return _import_class(BUILTINS[spec], spec)
    if is_plugin_spec(spec):
        return _import_class(spec, name or spec)
    ep = _entry_point(spec)
    if ep is None:
        raise MethodError(f"unknown method {spec!r}: use a built-in ({', '.join(BUILTINS)}), a path "
                          f"'package.module:Class', or an entry point of group {ENTRY_POINT_GROUP!r}")
    return _import_class(ep.value, name or spec)


def check_method_class(cls) -> list[str]:
    """What ``cls`` lacks of the method interface (empty when it is usable)."""
    if not isinstance(cls, type):
        return [f"a class (got a {type(cls).__name__})"]
    missing = [f"{m}()" for m in INTERFACE if not callable(getattr(cls, m, None))]
    for attr, allowed in ATTRIBUTES.items():
        value = getattr(cls, attr, None)
        if not isinstance(value, str) or not value:
            missing.append(f"class attribute {attr}" + (f" (one of {', '.join(allowed)})" if allowed else ""))
        elif allowed and value not in allowed:
            missing.append(f"class attribute {attr} in ({', '.join(allowed)}), got {value!r}")
    return missing


def load_method(spec: str, name: str | None = None) -> type:
    """``resolve_method`` plus the interface check: the class, or MethodError naming the method and what is
    missing, e.g. "method 'x' (examples.sgdw:SGDW): missing apply_(), class attribute sweep"."""
    cls = resolve_method(spec, name)
    missing = check_method_class(cls)
    if missing:
        where = f" ({cls.__module__}:{cls.__qualname__})" if isinstance(cls, type) else ""
        raise MethodError(f"method {name or spec!r}{where}: missing {', '.join(missing)}")
    return cls
