"""A small typed schema for YAML configs that collects every problem with its dotted key path.

Specs are plain objects with `check(chk, value, path)`: they return the normalised value, or record an error on
the `Checker` and return `INVALID`. Nothing here knows about awd-bench; `pipeline/params.py` holds the schema.
"""

from __future__ import annotations

import difflib
import math
import re

import yaml

INVALID = object()  # a field that failed: left out of the normalised dict, its error already recorded

SIGNIFICANT_DIGITS = 6


class ParamsError(ValueError):
    """Every problem of one config file, one per line: `<file>: <dotted.key[0]>: <what is wrong and allowed>`."""

    def __init__(self, lines: list[str]):
        self.lines = list(lines)
        super().__init__("\n".join(self.lines))


class Checker:
    def __init__(self, source: str):
        self.source = str(source)
        self.errors: list[str] = []

    def error(self, path: str, msg: str) -> object:
        self.errors.append(f"{self.source}: {path or '<top level>'}: {msg}")
        return INVALID

    def raise_if_any(self) -> None:
        if self.errors:
            raise ParamsError(self.errors)


def join(path: str, key) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else str(key)


def show(value) -> str:
    """A value as the user wrote it in YAML, so the message can be matched against the file."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def round_sig(x: float) -> float:
    """Grid values are rounded so that a value and the cache key built from it do not depend on float noise."""
    return float(f"{x:.{SIGNIFICANT_DIGITS}g}")


def did_you_mean(word, options) -> str:
    close = difflib.get_close_matches(str(word), [str(o) for o in options], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


class Num:
    """A finite number (ints allowed where floats are wanted; never a bool) within an optional range."""

    def __init__(self, *, gt=None, ge=None, lt=None, le=None, integer=False):
        self.gt, self.ge, self.lt, self.le, self.integer = gt, ge, lt, le, integer

    def describe(self) -> str:
        lo = f"({self.gt}" if self.gt is not None else f"[{self.ge}" if self.ge is not None else None
        hi = f"{self.lt})" if self.lt is not None else f"{self.le}]" if self.le is not None else None
        if lo and hi:
            return f"in {lo}, {hi}"
        if lo:
            return f"> {self.gt}" if self.gt is not None else f">= {self.ge}"
        if hi:
            return f"< {self.lt}" if self.lt is not None else f"<= {self.le}"
        return "any number"

    def in_range(self, x) -> bool:
        return not (
            (self.gt is not None and not x > self.gt)
            or (self.ge is not None and not x >= self.ge)
            or (self.lt is not None and not x < self.lt)
            or (self.le is not None and not x <= self.le)
        )

    def check(self, chk: Checker, value, path: str):
        kind = "an integer" if self.integer else "a number"
        if isinstance(value, bool):
            return chk.error(path, f"must be {kind} ({self.describe()}), got {show(value)} (a boolean)")
        if self.integer and not isinstance(value, int):
            return chk.error(path, f"must be {kind} ({self.describe()}), got {show(value)}")
        if not isinstance(value, (int, float)):
            return chk.error(path, f"must be {kind} ({self.describe()}), got {show(value)}")
        if not math.isfinite(value):
            return chk.error(path, f"must be a finite number, got {show(value)}")
        if not self.in_range(value):
            return chk.error(path, f"must be {self.describe()}, got {show(value)}")
        return int(value) if self.integer else float(value)


def Int(**kw) -> Num:
    return Num(integer=True, **kw)


class Bool:
    def check(self, chk, value, path):
        if not isinstance(value, bool):
            return chk.error(path, f"must be true or false, got {show(value)}")
        return value


class Str:
    def check(self, chk, value, path):
        if not isinstance(value, str) or not value.strip():
            return chk.error(path, f"must be a non-empty string, got {show(value)}")
        return value


class Choice:
    def __init__(self, options, what: str):
        self.options, self.what = tuple(options), what

    def check(self, chk, value, path):
        if isinstance(value, str) and value in self.options:
            return value
        hint = did_you_mean(value, self.options) if isinstance(value, str) else ""
        return chk.error(path, f"unknown {self.what} {show(value)}{hint}; allowed: {', '.join(self.options)}")


class Nullable:
    def __init__(self, spec):
        self.spec = spec

    def check(self, chk, value, path):
        return None if value is None else self.spec.check(chk, value, path)


class KwArgs:
    """Free keyword arguments (e.g. model_kw): string keys, JSON-like scalar or list values."""

    _SCALARS = (bool, int, float, str, type(None))

    @classmethod
    def _scalar(cls, v) -> bool:
        return isinstance(v, cls._SCALARS)

    def check(self, chk, value, path):
        if not isinstance(value, dict):
            return chk.error(path, f"must be a mapping of keyword arguments, got {show(value)}")
        before = len(chk.errors)
        for key, v in value.items():
            if not isinstance(key, str) or not key.isidentifier():
                chk.error(path, f"keyword {show(key)} is not a valid Python identifier")
            elif not (isinstance(v, self._SCALARS) or (isinstance(v, list) and all(map(self._scalar, v)))):
                chk.error(join(path, key), f"must be a scalar or a list of scalars, got {show(v)}")
        return dict(value) if len(chk.errors) == before else INVALID


class Seeds:
    """A non-empty list of distinct non-negative integers (floats or strings would silently change the run keys)."""

    def __init__(self, allow_empty: bool = False):
        self.allow_empty = allow_empty

    def check(self, chk, value, path):
        if self.allow_empty and value == []:
            return ()
        if not isinstance(value, list) or not value:
            return chk.error(path, f"must be a non-empty list of integer seeds, got {show(value)}")
        out, before = [], len(chk.errors)
        for i, v in enumerate(value):
            s = Int(ge=0).check(chk, v, join(path, i))
            if s is INVALID:
                continue
            if s in out:
                chk.error(join(path, i), f"duplicate seed {show(v)}; seeds must be unique")
            else:
                out.append(s)
        return tuple(out) if len(chk.errors) == before else INVALID


class Grid:
    """A list of numbers, or `{geomspace: [start, stop, num]}` / `{linspace: [start, stop, num]}`.

    Returns a tuple of floats rounded to 6 significant digits with exact endpoints; empty grids and values that
    coincide after rounding are errors, as is any value outside `elem`'s range.
    """

    def __init__(self, elem: Num):
        self.elem = elem

    def check(self, chk, value, path):
        if isinstance(value, dict):
            return self._spaced(chk, value, path)
        if not isinstance(value, list):
            return chk.error(
                path, f"must be a list of numbers or {{geomspace|linspace: [start, stop, num]}}, got {show(value)}"
            )
        if not value:
            return chk.error(path, "empty grid: give at least one value")
        values = [self.elem.check(chk, v, join(path, i)) for i, v in enumerate(value)]
        if any(v is INVALID for v in values):
            return INVALID
        rounded = [round_sig(v) for v in values]
        at = lambda i: join(path, i)  # noqa: E731
        return self._distinct(chk, rounded, lambda i: show(value[i]), at, at)

    def _spaced(self, chk, value, path):
        if len(value) != 1 or next(iter(value)) not in ("geomspace", "linspace"):
            keys = ", ".join(map(show, value)) or "none"
            return chk.error(path, f"a computed grid needs exactly one key, geomspace or linspace; got keys {keys}")
        (kind, spec), = value.items()
        spath = join(path, kind)
        if not isinstance(spec, list) or len(spec) != 3:
            return chk.error(spath, f"must be [start, stop, num], got {show(spec)}")
        bound = Num(gt=0) if kind == "geomspace" else Num()
        start = bound.check(chk, spec[0], join(spath, 0))
        stop = bound.check(chk, spec[1], join(spath, 1))
        num = Int(ge=1).check(chk, spec[2], join(spath, 2))
        if INVALID in (start, stop, num):
            return INVALID
        values = [start] if num == 1 else [_point(kind, start, stop, i / (num - 1)) for i in range(num)]
        if num > 1:
            values[-1] = stop  # exact endpoint, not start * (stop/start)**1.0
        bad = [v for v in values if not self.elem.in_range(v)]
        if bad:
            return chk.error(spath, f"{kind} gives {show(bad[0])}; values must be {self.elem.describe()}")
        rounded = [round_sig(v) for v in values]
        return self._distinct(
            chk, rounded, lambda i: show(rounded[i]), lambda i: f"{kind} value #{i}", lambda i: spath
        )

    @staticmethod
    def _distinct(chk, values, shown, where, error_path):
        """`where(i)` names value i in the message; the error is reported at `error_path(i)`."""
        for i, v in enumerate(values):
            if v in values[:i]:
                return chk.error(
                    error_path(i),
                    f"duplicate grid value {shown(i)} (same as {where(values.index(v))} "
                    f"after rounding to {SIGNIFICANT_DIGITS} significant digits)",
                )
        return tuple(values)


def _point(kind: str, start: float, stop: float, t: float) -> float:
    if kind == "linspace":
        return start + (stop - start) * t
    return start * (stop / start) ** t


class Section:
    """A mapping with known keys: unknown keys (with a suggestion), missing required keys, defaults filled."""

    def __init__(self, fields: dict, *, required=(), defaults=None, hints=None, post=None):
        self.fields, self.required = fields, tuple(required)
        self.defaults = dict(defaults or {})
        self.hints = dict(hints or {})  # key -> why it does not belong here and where it goes
        self.post = post  # post(chk, normalised_dict, path): cross-field checks

    def check(self, chk, value, path):
        if not isinstance(value, dict):
            return chk.error(path, f"must be a mapping with keys {', '.join(self.fields)}, got {show(value)}")
        out, before = {}, len(chk.errors)
        for key, v in value.items():
            kpath = join(path, key) if isinstance(key, str) else path
            if not isinstance(key, str):
                chk.error(path, f"keys must be strings, got {show(key)}")
            elif key in self.hints:
                chk.error(kpath, self.hints[key])
            elif key not in self.fields:
                chk.error(
                    kpath, f"unknown key {key!r}{did_you_mean(key, self.fields)}; allowed: {', '.join(self.fields)}"
                )
            else:
                checked = self.fields[key].check(chk, v, kpath)
                if checked is not INVALID:
                    out[key] = checked
        missing = [k for k in self.required if k not in value]
        if missing:
            chk.error(path, f"missing required key(s): {', '.join(missing)}")
        for key, default in self.defaults.items():
            if key not in value:  # through the field's spec, so an omitted section gets its own defaults
                out[key] = self.fields[key].check(chk, _copy(default), join(path, key))
        if len(chk.errors) == before and self.post is not None:
            self.post(chk, out, path)
        return out if len(chk.errors) == before else INVALID


class ListOf:
    def __init__(self, spec, what: str):
        self.spec, self.what = spec, what

    def check(self, chk, value, path):
        if value is None:
            return ()
        if not isinstance(value, list):
            return chk.error(path, f"must be a list of {self.what}, got {show(value)}")
        items = [self.spec.check(chk, v, join(path, i)) for i, v in enumerate(value)]
        return INVALID if any(i is INVALID for i in items) else tuple(items)


def _copy(value):
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


# --- YAML -------------------------------------------------------------------------------------------------------

class _Loader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys and reads `5e-4` as a float (YAML 1.2, as DVC reads params)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)(?:[eE][-+]?[0-9]+)$"),
    list("-+0123456789."),
)


def _construct_mapping(loader, node, deep=False):
    seen = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping", node.start_mark,
                f"found duplicate key {key!r} (first at line {seen[key] + 1})", key_node.start_mark,
            )
        seen[key] = key_node.start_mark.line
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_yaml(path) -> object:
    """Parse a YAML file; syntax errors become a ParamsError with `file:line:column`."""
    try:
        with open(path, encoding="utf-8") as f:
            return yaml.load(f, Loader=_Loader)
    except FileNotFoundError:
        raise ParamsError([f"{path}: no such file"]) from None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        what = " ".join(s for s in (e.context, e.problem) if s)
        raise ParamsError([f"{where}: invalid YAML: {what} (line {mark.line + 1}, column {mark.column + 1})"
                           if mark else f"{where}: invalid YAML: {what}"]) from None
    except yaml.YAMLError as e:
        raise ParamsError([f"{path}: invalid YAML: {e}"]) from None
