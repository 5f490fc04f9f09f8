"""`debug`: units run inside the driver process, one at a time, for stepping through a unit with a debugger."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import submitit

from jobs.backends.machine import ThisMachine
from jobs.executor_config import ExecutorConfig


class DebugBackend(ThisMachine):
    name = "debug"
    in_process = True

    def queue_cap(self, cfg: ExecutorConfig) -> int | None:
        return cfg.max_queued

    def executor(self, cfg: ExecutorConfig, log_dir: str | Path) -> submitit.Executor:
        # the driver runs units itself rather than through this one: it opens pdb on any exception, which hangs a
        # pipeline and fails under captured stdio
        return submitit.DebugExecutor(folder=Path(log_dir))

    def describe(self, cfg: ExecutorConfig) -> str:
        return f"debug: in this process on {socket.gethostname()}, one unit at a time"

    def job_cpus(self, cfg: ExecutorConfig) -> int:
        return os.cpu_count() or 1  # in-process: all of them
