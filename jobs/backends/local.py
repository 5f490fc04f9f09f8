"""`local`: detached subprocesses on this machine, at most `max_parallel` at once."""

from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import sys
import typing as tp
from pathlib import Path

import submitit
from submitit.local import local as submitit_local

from jobs.backends.machine import ThisMachine
from jobs.executor_config import NO_LOCAL_TIMEOUT_MIN, ExecutorConfig
from jobs.private_files import OWNED_ENTRY, owner_only_files, private_submissions


def _sigint_default() -> None:
    """In the job's process before exec: a cancel is SIGINT to the job's process group (jobs/liveness.py), and an
    ignored signal survives exec (a driver started as a script's background command, or from a pytest-xdist
    worker, ignores SIGINT), so the job would outlive its cancel."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class DetachedLocalExecutor(submitit.LocalExecutor):
    """submitit's LocalExecutor, but each job starts in its own session.

    Ctrl-C in the driver's terminal reaches the whole foreground process group; a job in its own session keeps
    running (as a SLURM job would) and the next driver re-attaches to it. GPUs are inherited from the driver's
    environment unless `local_gpus` assigns one per job (submitit would otherwise hide all GPUs by default).
    """

    def __init__(self, folder: str | Path, local_gpus: tp.Sequence[int] | None = None,
                 timeout_min: float | None = None, setup: tp.Sequence[str] = (), job_cpus: int = 0,
                 **kwargs: tp.Any):
        super().__init__(folder, **kwargs)
        self._job_cpus = job_cpus
        self._local_gpus = list(local_gpus or [])
        self._timeout_min = timeout_min or NO_LOCAL_TIMEOUT_MIN
        self._setup = list(setup)
        self._n_started = 0

    @property
    def _submitit_command_str(self) -> str:
        return " ".join([self.python, "-u -m", OWNED_ENTRY, shlex.quote(str(self.folder))])

    def _internal_process_submissions(self, delayed_submissions: list[tp.Any]) -> list[submitit.Job]:
        with owner_only_files():
            return super()._internal_process_submissions(delayed_submissions)

    def _submit_command(self, command: str) -> submitit.local.local.LocalJob:
        env = dict(os.environ)
        env.update(
            SUBMITIT_LOCAL_NTASKS="1", SUBMITIT_LOCAL_COMMAND=command,
            SUBMITIT_LOCAL_TIMEOUT_S=str(int(60 * self._timeout_min)), SUBMITIT_LOCAL_SIGNAL_DELAY_S="30",
            SUBMITIT_LOCAL_NODEID="0", SUBMITIT_LOCAL_JOB_NUM_NODES="1", SUBMITIT_STDERR_TO_STDOUT="",
            SUBMITIT_EXECUTOR="local", SUBMITIT_LOCAL_WITH_SHELL="1" if self._setup else "",
        )
        if self._job_cpus:
            env.setdefault("AWD_JOB_CPUS", str(self._job_cpus))
        if self._local_gpus:
            env["CUDA_VISIBLE_DEVICES"] = str(self._local_gpus[self._n_started % len(self._local_gpus)])
        self._n_started += 1
        cmd: tp.Any = [sys.executable, "-m", "submitit.local._local", str(self.folder)]
        if self._setup:
            cmd = " && ".join(self._setup + [shlex.join(cmd)])
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / "controllers.log", "ab") as log:
            process = subprocess.Popen(cmd, shell=bool(self._setup), env=env, start_new_session=True,
                                       stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                       preexec_fn=_sigint_default)
        return submitit_local.LocalJob(folder=self.folder, job_id=str(process.pid), process=process, tasks=[0])


class LocalBackend(ThisMachine):
    name = "local"
    in_process = False
    starts_all = True  # every task of a local array looks alive while only `parallel` of them compute

    def queue_cap(self, cfg: ExecutorConfig) -> int | None:
        return cfg.parallel

    def executor(self, cfg: ExecutorConfig, log_dir: str | Path) -> submitit.Executor:
        return DetachedLocalExecutor(private_submissions(log_dir), local_gpus=cfg.local_gpus,
                                     timeout_min=cfg.timeout_min, setup=cfg.setup,
                                     max_num_timeout=cfg.max_num_timeout, job_cpus=self.job_cpus(cfg))

    def describe(self, cfg: ExecutorConfig) -> str:
        gpus = f", GPUs {','.join(map(str, cfg.local_gpus))} in turn" if cfg.local_gpus else ""
        threads = self.job_cpus(cfg)
        return (f"local: this machine ({socket.gethostname()}), {cfg.parallel} jobs at once, {threads} CPU "
                f"thread{'s' if threads != 1 else ''} each{gpus}")

    def job_cpus(self, cfg: ExecutorConfig) -> int:
        return max(1, (os.cpu_count() or 1) // cfg.parallel)
