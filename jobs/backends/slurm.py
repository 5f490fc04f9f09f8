"""`slurm`: job arrays through sbatch, from a login node or from inside an allocation; state from sacct."""

from __future__ import annotations

import contextlib
import io
import math
import os
import shlex
import typing as tp
from pathlib import Path

import submitit
from submitit.slurm import slurm as submitit_slurm

from jobs import slurm_info
from jobs.executor_config import DEFAULT_FILE, DEFAULT_SLURM_TIMEOUT_MIN, ENV_KIND, ExecutorConfig, ExecutorConfigError
from jobs.liveness import timed
from jobs.private_files import OWNED_ENTRY, owner_only_files, private_submissions
from jobs.sbatch_errors import Verdict, classify

KEPT_SLURM_VARS = {"SLURM_CONF"}  # where the client commands find the cluster, not a property of any job
TIME_STEPS_MIN = (15, 30, 60, 120, 240, 480, 720, 1440, 2880, 4320, 10080)  # few distinct --time: few arrays
JOB_START_MIN = 5  # a job's start-up (interpreter, dataset) on top of the unit's own estimate
LOST_GRACE_S = 60.0  # a shared filesystem may show a finished job's files on the login node late


@contextlib.contextmanager
def _outside_allocation() -> tp.Iterator[None]:
    """While submitting from inside a SLURM job (a driver run as a batch job), hides that job's SLURM_* variables.

    sbatch passes the submitter's environment on to the job, and `srun` in the job's script reads SLURM_* input
    variables: the driver job's SLURM_MEM_PER_CPU next to the job's own SLURM_MEM_PER_NODE is "srun: fatal: ...
    mutually exclusive", and its SLURM_CPUS_PER_TASK etc. would size the job's step.
    """
    if not os.environ.get("SLURM_JOB_ID"):
        yield
        return
    hidden = {k: v for k, v in os.environ.items()
              if k.startswith(("SLURM_", "SLURMD_")) and k not in KEPT_SLURM_VARS}
    for name in hidden:
        del os.environ[name]
    try:
        yield
    finally:
        os.environ.update(hidden)


@contextlib.contextmanager
def _timed_sbatch() -> tp.Iterator[None]:
    # submitit submits an array through a fresh plain SlurmExecutor, so the class's method is what must be wrapped
    cls = submitit_slurm.SlurmExecutor
    original = cls._make_submission_command
    cls._make_submission_command = (  # type: ignore[method-assign]
        lambda self, submission_file_path: timed(original(self, submission_file_path)))
    try:
        yield
    finally:
        cls._make_submission_command = original  # type: ignore[method-assign]


class CleanEnvSlurmExecutor(submitit.SlurmExecutor):
    """submitit's SlurmExecutor, but the jobs never inherit the allocation of a driver that runs inside a job, and
    sbatch runs under a timeout."""

    @property
    def _submitit_command_str(self) -> str:
        return " ".join([self.python, "-u -m", OWNED_ENTRY, shlex.quote(str(self.folder))])

    def _internal_process_submissions(self, delayed_submissions: list[tp.Any]) -> list[submitit.Job]:
        # covers single jobs and arrays (submitit submits an array through a fresh plain SlurmExecutor, but with
        # this executor's command string)
        # submitit also prints a failed sbatch's stderr, which the error the driver reports holds already: one line
        # per fault, not one more per attempt
        with _outside_allocation(), _timed_sbatch(), owner_only_files(), contextlib.redirect_stderr(io.StringIO()):
            return super()._internal_process_submissions(delayed_submissions)


def unit_time_min(cfg: ExecutorConfig, estimate_s: float | None,
                  partition_limit_min: int | None) -> int | None:
    """The --time for a unit estimated at `estimate_s` seconds: x time_safety_factor, rounded up to a step, at most
    timeout_min and the partition's limit. None (use timeout_min) without an estimate or a factor."""
    if cfg.time_safety_factor is None or estimate_s is None:
        return None
    need = estimate_s * cfg.time_safety_factor / 60 + JOB_START_MIN
    step = next((t for t in TIME_STEPS_MIN if t >= need), math.ceil(need))
    caps = [c for c in (cfg.timeout_min, partition_limit_min) if c]
    return min([step, *caps])


def slurm_parameters(cfg: ExecutorConfig, job_name: str) -> dict[str, tp.Any]:
    """submitit's SLURM parameters for `cfg`: what every job's sbatch script asks (and what the cluster check
    shows `sbatch --test-only`)."""
    params: dict[str, tp.Any] = {"time": cfg.timeout_min or DEFAULT_SLURM_TIMEOUT_MIN}
    if not {"job-name", "job_name"} & set(cfg.extra):
        # squeue/sacct name the stage (awd-train, awd-attack, ...) rather than submitit's "submitit"
        params["job_name"] = job_name
    for name in ("partition", "gpus_per_node", "gres", "cpus_per_task", "account", "qos", "constraint",
                 "array_parallelism"):
        value = getattr(cfg, name)
        if value is not None:
            params[name] = value
    if cfg.mem_gb is not None:
        params["mem"] = f"{int(cfg.mem_gb * 1024)}MB"
    if cfg.setup:
        params["setup"] = list(cfg.setup)
    if cfg.extra:
        # `option: true` becomes a bare `--option`; `false` leaves the option out (sbatch has no `--option=False`)
        params["additional_parameters"] = {k: v for k, v in cfg.extra.items() if v is not False}
    return params


class Site:
    """What the backend asks the cluster itself (sacctmgr, scontrol, `sbatch --test-only`)."""

    def submit_limit(self, qos: str | None) -> int | None:
        return slurm_info.submit_limit(qos)

    def partition_time_limit_min(self, partition: str | None) -> int | None:
        return slurm_info.partition_time_limit_min(partition)

    def preflight(self, cfg: ExecutorConfig, say: tp.Callable[[str], object]) -> None:
        from jobs.cluster_check import preflight  # it builds on this module's sbatch parameters

        preflight(cfg, say=say)

    def controller_up(self) -> bool:
        return slurm_info.controller_up()


class UnaskedSite(Site):
    """A site without accounting, nothing checked before submitting: what a fake scheduler in a test stands in
    front of."""

    def submit_limit(self, qos: str | None) -> int | None:
        return None

    def partition_time_limit_min(self, partition: str | None) -> int | None:
        return None

    def preflight(self, cfg: ExecutorConfig, say: tp.Callable[[str], object]) -> None:
        return None

    def controller_up(self) -> bool:
        return True  # asked nothing: a failing sbatch is backed off and given up on as any other failure


class SlurmBackend:
    name = "slurm"
    in_process = False
    starts_all = False
    is_cluster = True
    lost_grace_s = LOST_GRACE_S
    poll_s = 15.0

    def __init__(self, site: Site | None = None) -> None:
        self.site = site or Site()

    def queue_cap(self, cfg: ExecutorConfig) -> int | None:
        return cfg.max_queued

    def limits(self, cfg: ExecutorConfig) -> int | None:
        return self.site.submit_limit(cfg.qos)

    def preflight(self, cfg: ExecutorConfig, say: tp.Callable[[str], object]) -> None:
        self.site.preflight(cfg, say)

    def array_size(self, cfg: ExecutorConfig, n_jobs: int) -> int:
        return cfg.max_array_size

    def job_gpus(self, cfg: ExecutorConfig) -> int:
        return cfg.gpus_per_job() if cfg.check_gpus else 0

    def submit_error(self, text: str) -> Verdict | None:
        return classify(text)

    def job_request(self, cfg: ExecutorConfig, job_s: float | None, nice: int | None) -> dict[str, tp.Any]:
        changes: dict[str, tp.Any] = {}
        if cfg.time_safety_factor is not None and job_s is not None:
            changes["timeout_min"] = unit_time_min(cfg, job_s, self.site.partition_time_limit_min(cfg.partition))
        if nice is not None and "nice" not in cfg.extra:
            changes["extra"] = {**cfg.extra, "nice": nice}
        return changes

    def executor(self, cfg: ExecutorConfig, log_dir: str | Path) -> submitit.Executor:
        folder = private_submissions(log_dir)
        if submitit.SlurmExecutor.affinity() < 0:
            raise ExecutorConfigError(
                "executor kind 'slurm' but `srun` is not on PATH: run the pipeline on a SLURM login node, or set "
                f"${ENV_KIND}=local (or kind: local in {DEFAULT_FILE})")
        ex = CleanEnvSlurmExecutor(folder=folder, max_num_timeout=cfg.max_num_timeout)
        ex.update_parameters(**slurm_parameters(cfg, f"awd-{folder.name}"))
        return ex

    def describe(self, cfg: ExecutorConfig) -> str:
        extra = "".join(f", {name} {value}" for name, value in (("account", cfg.account), ("qos", cfg.qos),
                                                                ("constraint", cfg.constraint)) if value)
        n = cfg.gpus_per_job()
        gpus = (f"{n} GPU{'s' if n != 1 else ''} per job" + (f" (gres {cfg.gres})" if cfg.gres else "")
                if n else "no GPU requested (gpus_per_node and gres unset)")
        return f"slurm, partition {cfg.partition or '(the cluster default)'}{extra}, {gpus}"

    def job_cpus(self, cfg: ExecutorConfig) -> int:
        return max(1, (os.cpu_count() or 1) // cfg.parallel)  # as before: the model's hardware key is the partition

    def place(self, cfg: ExecutorConfig) -> str:
        return f"slurm:{cfg.partition or '(default partition)'}" + (f":{cfg.constraint}" if cfg.constraint else "")

    def controller_up(self) -> bool:
        return self.site.controller_up()
