"""The numeric checks every argument and config field shares (no torch: `pipeline` imports this too).

`is_real`/`is_int` have a twin in jobs/checks.py (awd and jobs import nothing of each other);
tests/unit/test_check_twins.py pins that both answer alike."""

from __future__ import annotations

import math
import numbers


def is_real(x) -> bool:
    """An int or float (numpy's too), never a bool: YAML's `true` must not pass for 1."""
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


def is_int(x) -> bool:
    return isinstance(x, numbers.Integral) and not isinstance(x, bool)


def check_int(name: str, value, minimum: int) -> int:
    """`value` when it is an int (numpy's too, never a bool) >= `minimum`; else a ValueError naming `name`."""
    if not is_int(value) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


def range_text(gt=None, ge=None, lt=None, le=None) -> str:
    lo = f"({gt:g}" if gt is not None else f"[{ge:g}" if ge is not None else None
    hi = f"{lt:g})" if lt is not None else f"{le:g}]" if le is not None else None
    if lo and hi:
        return f"in {lo}, {hi}"
    if lo:
        return f"> {gt:g}" if gt is not None else f">= {ge:g}"
    if hi:
        return f"< {lt:g}" if lt is not None else f"<= {le:g}"
    return "any finite number"


def show(value) -> str:
    """A value as it is written in YAML, so that a message can be matched against the file."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def number_problem(value, *, integer=False, gt=None, ge=None, lt=None, le=None) -> str | None:
    """What is wrong with `value` as a number in the given range ("must be > 0, got -0.1"), or None."""
    allowed = range_text(gt, ge, lt, le)
    kind = "an integer" if integer else "a number"
    if isinstance(value, bool):
        return f"must be {kind} ({allowed}), got {show(value)} (a boolean)"
    if not (is_int(value) if integer else is_real(value)):
        return f"must be {kind} ({allowed}), got {show(value)}"
    if not math.isfinite(value):
        return f"must be a finite number, got {show(value)}"
    outside = ((gt is not None and not value > gt) or (ge is not None and not value >= ge)
               or (lt is not None and not value < lt) or (le is not None and not value <= le))
    return f"must be {allowed}, got {show(value)}" if outside else None
