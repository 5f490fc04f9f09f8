"""The type check every validator of `jobs` uses for numbers: a bool is not a number here.

Python counts `True` as the integer 1; in a settings file, `true` where a number belongs is a mistake to report,
not a 1 to use. `is_int`/`is_real` have a twin in awd/checks.py (awd and jobs import nothing of each other);
tests/unit/test_check_twins.py pins that both answer alike.
"""

from __future__ import annotations

import numbers
import reprlib
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


class _Brief(reprlib.Repr):
    """reprlib's bounded repr: nested containers are cut by level and by count before any string is built, so that
    a value expanded from YAML aliases costs a few hundred characters to show, not its whole size."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.maxlevel = 3
        self.maxlist = self.maxtuple = self.maxset = self.maxfrozenset = self.maxdeque = self.maxarray = 8
        self.maxdict = 6
        self.maxstring = self.maxother = self.maxlong = limit

    def repr_str(self, x: str, level: int) -> str:
        return repr(x[:self.maxstring])  # its start, as `brief` cuts any text: reprlib would keep both ends

    def repr_int(self, x: int, level: int) -> str:
        # Python refuses to write an int of more than 4300 digits (ValueError), and writing one is quadratic
        if x.bit_length() > 4 * self.maxlong:
            return f"<an integer of {x.bit_length()} bits>"
        return super().repr_int(x, level)


_BRIEF = _Brief(80)


def brief(value: tp.Any, limit: int = 80) -> str:
    """repr(value) when that is short; else a repr cut to about `limit` characters, computed without ever building
    the whole one (an error message must not cost the memory of the value it names)."""
    text = (_BRIEF if limit == 80 else _Brief(limit)).repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."
