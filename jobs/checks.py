"""The type check every validator of `jobs` uses for numbers: a bool is not a number here.

Python counts `True` as the integer 1; in a settings file, `true` where a number belongs is a mistake to report,
not a 1 to use.
"""

from __future__ import annotations

import numbers
import typing as tp


def is_a(value: tp.Any, types: type | tuple[type, ...]) -> bool:
    """isinstance(value, types), except that a bool passes only where `bool` itself is allowed."""
    allowed = types if isinstance(types, tuple) else (types,)
    return isinstance(value, allowed) and (bool in allowed or not isinstance(value, bool))


def is_int(value: tp.Any) -> bool:
    """An integer (Python or numpy), not a bool."""
    return is_a(value, numbers.Integral)


def is_real(value: tp.Any) -> bool:
    """A real number (int or float, Python or numpy), not a bool."""
    return is_a(value, numbers.Real)
