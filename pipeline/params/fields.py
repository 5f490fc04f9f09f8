"""The building blocks of the params schema: its error, and models and validators made from TrainConfig's fields.

Every params type takes its rule from `awd.train_config.TrainConfig` (the very objects TrainConfig validates with),
so a range or default is written once.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import WrapValidator, create_model

from awd.train_config import Model, Num, TrainConfig, problems_error


class ParamsError(ValueError):
    """Every problem of one config file, one per line: `<file>: <dotted.key[0]>: <what is wrong and allowed>`."""

    def __init__(self, lines: list[str]):
        self.lines = list(lines)
        super().__init__("\n".join(self.lines))


def problem_lines(source, problems) -> list[str]:
    return [f"{source}: {key or '<top level>'}: {msg}" for key, msg in problems]


def field_type(key: str):
    """A TrainConfig field's type with its rule: the very objects TrainConfig validates with."""
    info = TrainConfig.model_fields[key]
    return Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation


Epochs, NoiseSeed = field_type("epochs"), field_type("noise_seed")


def field_bounds(name: str) -> dict:
    """The range of a TrainConfig field, to apply to a grid of its values."""
    [num] = [m for m in TrainConfig.model_fields[name].metadata if isinstance(m, Num)]
    return {k: getattr(num, k) for k in ("gt", "ge", "lt", "le") if getattr(num, k) is not None}


def checked(problems_of):
    """A wrap validator from `problems_of(value, context) -> (normalised value, [(key suffix, message)])`."""
    def check(value, handler, info):
        out, problems = problems_of(value, info.context)
        if problems:
            raise problems_error(problems)
        return out
    return WrapValidator(check)


def section_model(name: str, keys, *, required=(), partial=False, hints=None, **extra) -> Any:
    """A pydantic model of TrainConfig's `keys` (their types, ranges and defaults), plus `extra` fields. Made at
    import time, so Any to mypy: its users' attribute access is checked by pydantic and the tests."""
    fields: dict[str, Any] = {}
    for key in keys:
        info = TrainConfig.model_fields[key]
        default = ... if key in required else None if partial else info.get_default(call_default_factory=True)
        fields[key] = (field_type(key), default)
    model = create_model(name, __base__=Model, **fields, **extra)
    model.hints = dict(hints or {})
    return model
