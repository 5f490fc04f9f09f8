"""What the two backends that run on this machine (`debug`, `local`) share: no scheduler, so no limits, no
pre-flight, no sbatch errors, nothing to ask of a job but its command, and a controller that cannot be lost."""

from __future__ import annotations

import socket
import typing as tp

from jobs.executor_config import ExecutorConfig
from jobs.sbatch_errors import Verdict


class ThisMachine:
    name: str
    starts_all = True
    is_cluster = False
    lost_grace_s = 0.0
    poll_s = 1.0

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

    def place(self, cfg: ExecutorConfig) -> str:
        return f"{self.name}:{socket.gethostname()}"

    def controller_up(self) -> bool:
        return True  # no scheduler to lose
