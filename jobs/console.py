"""How entry points show library messages: one `configure_logging()`, called once by each entry point.

Library code (`awd`, `jobs`, `pipeline`) logs through `logging.getLogger(__name__)` and never configures logging;
an entry point (`python -m pipeline.<stage>`, `python -m jobs`, `awd-bench`, a job process) calls this first.
Messages then reach stderr as bare lines, exactly as the `print(..., file=sys.stderr)` they replace read, so logs
and the tests that read them see the same text. Other libraries keep Python's default (warnings and errors only).
"""

from __future__ import annotations

import logging
import os
import sys

PACKAGES = ("awd", "jobs", "pipeline")
ENV_LEVEL = "AWD_LOG_LEVEL"  # e.g. DEBUG for more detail, WARNING for less
_HANDLER_NAME = "awd-bench-console"


def configure_logging(level: str | int | None = None) -> None:
    """INFO and above of our packages to stderr, one bare line each; idempotent (a second call only sets the
    level). `level` defaults to $AWD_LOG_LEVEL, else INFO."""
    chosen = level if level is not None else os.environ.get(ENV_LEVEL, "INFO")
    if isinstance(chosen, str):
        number = logging.getLevelName(chosen.upper())  # the number for a level's name, a string otherwise
        if not isinstance(number, int):
            raise ValueError(f"${ENV_LEVEL}: unknown log level {chosen!r}; use DEBUG, INFO, WARNING or ERROR")
        chosen = number
    for package in PACKAGES:
        logger = logging.getLogger(package)
        logger.setLevel(chosen)
        if not any(h.get_name() == _HANDLER_NAME for h in logger.handlers):
            handler = _StderrHandler(sys.stderr)
            handler.set_name(_HANDLER_NAME)
            handler.setFormatter(logging.Formatter("%(message)s"))
            logger.addHandler(handler)


class _StderrHandler(logging.StreamHandler):
    """Writes to the current sys.stderr, not the one at configuration time: pytest's capture and a stderr
    redirected later both see the messages."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)
