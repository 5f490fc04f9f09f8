"""Rules for the keys of a settings file, as pydantic validators: a value is taken as the file gave it (never
coerced: `"3"` is not 3, `true` is not 1) or refused in words, `must be <what is allowed>, got <value>`, naming its
type when the type is what is wrong. A failure carries (key suffix, message) pairs so that one key may report several
problems; `jobs.executor_config.explain` unpacks them.
"""

from __future__ import annotations

import difflib
import math
import typing as tp

from pydantic import WrapValidator
from pydantic_core import PydanticCustomError

from jobs.checks import brief, is_int, is_real


def did_you_mean(word: str, options: tp.Iterable[str]) -> str:
    # twin of awd/train_config.py's (awd and jobs import nothing of each other): tests/unit/test_check_twins.py
    close = difflib.get_close_matches(str(word), list(options), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def got(value: tp.Any, wrong_type: bool) -> str:
    return f"{brief(value)} ({type(value).__name__})" if wrong_type else brief(value)


def fail(problems: list[tuple[str, str]]) -> PydanticCustomError:
    """One validation error carrying several (key suffix, message) problems."""
    return PydanticCustomError("settings", "{text}", {"text": "; ".join(m for _, m in problems), "problems": problems})


def rule(allowed: str, check: tp.Callable[[tp.Any], bool], optional: bool = True,
         type_ok: tp.Callable[[tp.Any], bool] = lambda v: True) -> WrapValidator:
    """A field's whole rule: `type_ok(value)` and `check(value)`, else `must be <allowed>, got <value>`; None passes
    when `optional`."""
    def validate(value: tp.Any, handler: tp.Any) -> tp.Any:
        if value is None and optional:
            return None
        if not type_ok(value):
            raise fail([("", f"must be {allowed}, got {got(value, True)}")])
        if not check(value):
            raise fail([("", f"must be {allowed}, got {got(value, False)}")])
        return value
    validate.allowed = allowed  # type: ignore[attr-defined]  # the reference page's "allowed" column
    return WrapValidator(validate)


def number(allowed: str, *, integer: bool = False, minimum: float | None = None, above: bool = False,
           optional: bool = True) -> WrapValidator:
    """A finite number (`integer`: an int), never a bool, >= `minimum` (> when `above`)."""
    def type_ok(v: tp.Any) -> bool:
        return is_int(v) if integer else is_real(v) and math.isfinite(v)
    return rule(allowed, lambda v: minimum is None or v > minimum or (not above and v == minimum), optional, type_ok)


def list_rule(allowed: str, item_ok: tp.Callable[[tp.Any], bool]) -> WrapValidator:
    return rule(allowed, lambda v: all(item_ok(x) for x in v), optional=False, type_ok=lambda v: isinstance(v, list))


def checked(allowed: str, problems_of: tp.Callable[[tp.Any], list[tuple[str, str]]]) -> WrapValidator:
    """A rule with several problems to say, each (key suffix, message): `problems_of(value)`, empty when it passes."""
    def validate(value: tp.Any, handler: tp.Any) -> tp.Any:
        problems = problems_of(value)
        if problems:
            raise fail(problems)
        return value
    validate.allowed = allowed  # type: ignore[attr-defined]
    return WrapValidator(validate)
