"""Weight-decay methods by their params name: a built-in, a plugin named in the top-level `methods:` section
(`{name: package.module:Class}`), or an installed package's entry point. A plugin is imported once per process,
while params are validated, so that a broken one fails before anything is submitted."""

from __future__ import annotations

import functools
import re
from typing import Annotated

from pydantic import ValidationInfo

from awd.train_config import METHODS, PLUGIN_PATH, did_you_mean
from pipeline.limits import show
from pipeline.params.fields import ParamsError, checked


def plugins_of(info: ValidationInfo) -> dict:
    """The top-level `methods:` section, passed by `validate` as context so that studies can check names."""
    return (info.context or {}).get("plugins", {})


def check_method(name, plugins: dict) -> str | None:
    """What is wrong with a method's params name (an error text), or None: a built-in method, or one named in the
    top-level `methods:` section whose class imports and implements the method interface (awd/methods.py)."""
    if name in METHODS:
        return None
    if name in plugins:
        path = plugins[name]
        return _plugin_class(path, name)[1] if isinstance(path, str) and PLUGIN_PATH.match(path) else None
    path = _entry_point(name)
    if path is not None:  # an installed package's method, found without a methods: line
        return _plugin_class(path, name)[1]
    known = [*METHODS, *(p for p in plugins if p not in METHODS)]
    return (f"unknown weight-decay method {show(name)}{did_you_mean(name, known)}; allowed: {', '.join(known)} "
            "(a plugin method is named in the top-level methods section: {name: package.module:Class})")


@functools.cache
def _plugin_class(path: str, name: str | None = None) -> tuple[type | None, str | None]:
    """(the class, None) or (None, why it cannot be used): imported once per process, before anything is submitted."""
    from awd.methods import MethodError, load_method

    try:
        return load_method(path, name), None
    except MethodError as e:
        return None, str(e)
    except Exception as e:  # the plugin's own import-time failure: say so instead of a traceback
        return None, f"method {name or path!r} ({path}): importing it failed: {type(e).__name__}: {e}"


def plugin_param(path: str) -> str:
    """The run-config field a plugin's value goes into (its class's `param`: "wd" or "dog")."""
    cls, problem = _plugin_class(path)
    if cls is None:
        raise ParamsError([problem or f"method {path}: cannot be loaded"])  # one line, not one per character
    return cls.param  # type: ignore[attr-defined]  # the method interface (awd/methods.py) requires it


def method_path(name: str, plugins: dict) -> str:
    """The run config's `wd_method` of a method: a built-in's name, a plugin's package.module:Class."""
    return name if name in METHODS else plugins[name] if name in plugins else _entry_point(name) or name


def _entry_point(name) -> str | None:
    from awd.methods import entry_point_path

    return entry_point_path(name) if isinstance(name, str) and name.isidentifier() else None


def _plugins_checked(plugins, context=None):
    """The top-level `methods:` section: a plugin method's params name -> "package.module:Class"."""
    if not isinstance(plugins, dict):
        return None, [("", f"must be a mapping of method names to package.module:Class, got {show(plugins)}")]
    p = []
    for name, path in plugins.items():
        if name in METHODS or not (isinstance(name, str) and re.fullmatch(r"[A-Za-z_][\w-]*", name)):
            p.append((f".{name}", f"a plugin's name must be a word that is not a built-in method "
                                  f"({', '.join(METHODS)}), got {show(name)}"))
        elif not (isinstance(path, str) and PLUGIN_PATH.match(path)):
            p.append((f".{name}", f"must be package.module:Class, got {show(path)}"))
    return dict(plugins), p


Plugins = Annotated[dict[str, str], checked(_plugins_checked)]
