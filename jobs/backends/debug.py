"""`debug`: units run inside the driver process, one at a time, for stepping through a unit with a debugger."""

from __future__ import annotations

import os
import socket
import typing as tp
from pathlib import Path

import submitit

from jobs.executor_config import ExecutorConfig
from jobs.sbatch_errors import Verdict


class DebugBackend:
    name = "debug"
    in_process = True
    starts_all = True
    is_cluster = False
    lost_grace_s = 0.0
    poll_s = 1.0

    def queue_cap(self, cfg: ExecutorConfig) -> int | None:
        return cfg.max_queued

    def limits(self, cfg: ExecutorConfig) -> int | None:
        return None

    def preflight(self, cfg: ExecutorConfig, say: tp.Callable[[str], object]) -> None:
        return None

    def array_size(self, cfg: ExecutorConfig, n_jobs: int) -> int:
        return max(1, n_jobs)

    def job_gpus(self, cfg: ExecutorConfig) -> int:
        return 0

    def submit_error(self, text: str) -> Verdict | None:
        return None

    def job_request(self, cfg: ExecutorConfig, job_s: float | None, nice: int | None) -> dict[str, tp.Any]:
        return {}

    def executor(self, cfg: ExecutorConfig, log_dir: str | Path) -> submitit.Executor:
        # the driver runs units itself rather than through this one: it opens pdb on any exception, which hangs a
        # pipeline and fails under captured stdio
        return submitit.DebugExecutor(folder=Path(log_dir))

    def describe(self, cfg: ExecutorConfig) -> str:
        return f"debug: in this process on {socket.gethostname()}, one unit at a time"

    def job_cpus(self, cfg: ExecutorConfig) -> int:
        return os.cpu_count() or 1  # in-process: all of them

    def place(self, cfg: ExecutorConfig) -> str:
        return f"debug:{socket.gethostname()}"

    def controller_up(self) -> bool:
        return True  # no scheduler to lose
