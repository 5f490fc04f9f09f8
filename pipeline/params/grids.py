"""Grid and seed values: a list, or {geomspace|linspace: [start, stop, num]} expanded to floats rounded to
SIGNIFICANT_DIGITS with exact endpoints; sizes are checked (pipeline/limits.py) before anything is built."""

from __future__ import annotations

from typing import Annotated

from awd.checks import is_int, number_problem, range_text
from pipeline import limits
from pipeline.limits import show
from pipeline.params.fields import checked

SIGNIFICANT_DIGITS = 6


def _round(x: float) -> float:
    """Grid values are rounded so that a value and the cache key built from it do not depend on float noise."""
    return float(f"{x:.{SIGNIFICANT_DIGITS}g}")


def expand_grid(value, bounds: dict, context=None):
    """(values, problems) of a grid: a list of numbers or {geomspace|linspace: [start, stop, num]}, sized first."""
    if isinstance(value, dict):
        if len(value) != 1 or next(iter(value)) not in ("geomspace", "linspace"):
            keys = ", ".join(map(show, value)) or "none"
            return None, [("", f"a computed grid needs exactly one key, geomspace or linspace; got keys {keys}")]
        (kind, spec), = value.items()
        if not isinstance(spec, list) or len(spec) != 3:
            return None, [(f".{kind}", f"must be [start, stop, num], got {show(spec)}")]
        ends = {"gt": 0} if kind == "geomspace" else {}
        problems = [(f".{kind}[{i}]", p) for i, p in enumerate((
            number_problem(spec[0], **ends), number_problem(spec[1], **ends),
            number_problem(spec[2], integer=True, ge=1))) if p]
        if problems:
            return None, problems
        if too_many := limits.grid_points_problem(kind, int(spec[2]), context):
            return None, [(f".{kind}[2]", too_many)]
        start, stop, num = float(spec[0]), float(spec[1]), int(spec[2])
        at = (lambda t: start + (stop - start) * t) if kind == "linspace" else (lambda t: start * (stop / start) ** t)
        values = [start] if num == 1 else [at(i / (num - 1)) for i in range(num - 1)] + [stop]  # exact endpoint
        bad = [v for v in values if number_problem(v, **bounds)]
        if bad:
            return None, [(f".{kind}", f"{kind} gives {show(bad[0])}; values must be {range_text(**bounds)}")]
        rounded = [_round(v) for v in values]
        name = lambda i: f"{kind} value #{i}"  # noqa: E731
        where = lambda i: f".{kind}"  # noqa: E731
    else:
        if not isinstance(value, list):
            return None, [("", "must be a list of numbers or {geomspace|linspace: [start, stop, num]}, got "
                               f"{show(value)}")]
        if not value:
            return None, [("", "empty grid: give at least one value")]
        if too_many := limits.grid_points_problem("a list", len(value), context):
            return None, [("", too_many)]
        problems = [(f"[{i}]", p) for i, v in enumerate(value) if (p := number_problem(v, **bounds))]
        if problems:
            return None, problems
        rounded = [_round(v) for v in value]
        name = lambda i: f"{{here}}[{i}]"  # noqa: E731
        where = lambda i: f"[{i}]"  # noqa: E731
    for i, first in limits.duplicates(rounded)[:1]:
        shown = show(value[i]) if isinstance(value, list) else show(rounded[i])
        return None, [(where(i), f"duplicate grid value {shown} (same as {name(first)} after "
                                 f"rounding to {SIGNIFICANT_DIGITS} significant digits)")]
    return tuple(rounded), []


def Grid(**bounds):  # noqa: N802 - used as a type
    return Annotated[tuple[float, ...], checked(lambda v, context: expand_grid(v, bounds, context))]


def _seeds(value, allow_empty: bool):
    if allow_empty and value == []:
        return (), []
    if not isinstance(value, list) or not value:
        return None, [("", f"must be a non-empty list of integer seeds, got {show(value)}")]
    if len(value) > limits.MAX_SEEDS:
        return None, [("", f"a list of {len(value)} seeds; at most {limits.MAX_SEEDS} allowed")]
    problems = [(f"[{i}]", p) for i, v in enumerate(value) if (p := number_problem(v, integer=True, ge=0))]
    first: dict = {}
    problems += [(f"[{i}]", f"duplicate seed {show(v)}; seeds must be unique") for i, v in enumerate(value)
                 if is_int(v) and first.setdefault(v, i) != i]
    return tuple(int(v) for v in value), problems


Seeds = Annotated[tuple[int, ...], checked(lambda v, _: _seeds(v, allow_empty=False))]
ExtraSeeds = Annotated[tuple[int, ...], checked(lambda v, _: _seeds(v, allow_empty=True))]
