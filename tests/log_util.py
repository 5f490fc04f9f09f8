"""The messages the awd package logs, collected for assertions (awd logs through `logging`, not a callback)."""

from __future__ import annotations

import logging
from contextlib import contextmanager


class _Collect(logging.Handler):
    def __init__(self, lines: list[str]):
        super().__init__(logging.INFO)
        self.lines = lines

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@contextmanager
def awd_log():
    """Yields the list that receives every INFO+ message of the `awd` loggers while the block runs."""
    lines: list[str] = []
    logger, handler = logging.getLogger("awd"), _Collect(lines)
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        yield lines
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
