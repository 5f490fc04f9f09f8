"""Where units run: executor settings (from $AWD_EXECUTOR / executor.yaml, never a DVC param) and submitit executors.

Kinds: `debug` (in the driver process, for stepping through a unit), `local` (detached subprocesses on this
machine, at most `max_parallel` at once), `slurm` (job arrays through sbatch; state from sacct).
"""

from __future__ import annotations

import contextlib
import math
import os
import shlex
import stat
import subprocess
import sys
import typing as tp
from pathlib import Path

import submitit
from submitit.local import local as submitit_local
from submitit.slurm import slurm as submitit_slurm

# re-exported: the project imports these from here, as before the settings (jobs/executor_config.py), the cluster's
# answers (jobs/slurm_info.py), sbatch's errors (jobs/sbatch_errors.py) and job liveness (jobs/liveness.py) moved out
from jobs.executor_config import (  # noqa: F401
    DEFAULT_FILE,
    DEFAULT_SLURM_TIMEOUT_MIN,
    ENV_FILE,
    ENV_KIND,
    KINDS,
    NO_LOCAL_TIMEOUT_MIN,
    NOT_IN_PROFILES,
    ExecutorConfig,
    ExecutorConfigError,
    load_executor_config,
    validate_fields,
)
from jobs.liveness import ElsewhereError, JobWatch, _proc_alive, cancel_jobs, timed  # noqa: F401
from jobs.sbatch_errors import SUBMIT_LIMIT_RE  # noqa: F401
from jobs.slurm_info import SCHEDULER_TIMEOUT_S, partition_time_limit_min, submit_limit  # noqa: F401
from jobs.slurm_info import slurm_minutes as _slurm_minutes  # noqa: F401

# -- submission files only their owner can write (a shared store is group-writable) --------------------------------
OWNED_ENTRY = "jobs.owned_submission"  # the job's entry point: checks the submission file's owner, then submitit's


class UnsafeLogDir(ExecutorConfigError):
    pass


def private_folder(folder: str | Path) -> Path:
    """`folder` and its parent (`_logs/<user>/<stage>` and `_logs/<user>`) made or checked: owned by this user and
    writable by no one else, whatever the umask. The submission files a job unpickles live here."""
    folder = Path(folder)
    me = os.geteuid()
    for d in (folder.parent, folder):
        try:
            d.mkdir(mode=0o755, parents=True)
        except FileExistsError:
            pass
        st = d.lstat()
        if not stat.S_ISDIR(st.st_mode):
            raise UnsafeLogDir(f"log folder {d} is not a directory (a link?); remove it")
        if st.st_uid != me:
            raise UnsafeLogDir(f"log folder {d} belongs to uid {st.st_uid}, not to you (uid {me}): jobs would load "
                               "submission files another user can replace; remove it (its owner can) or use another "
                               "$AWD_STORE")
        if st.st_mode & 0o022:
            os.chmod(d, stat.S_IMODE(st.st_mode) & ~0o022)
    top = folder.parent.parent
    with contextlib.suppress(OSError):  # `_logs/` itself: anyone may add a folder, only its owner may rename it
        if top.stat().st_uid == me and top.stat().st_mode & 0o022:
            os.chmod(top, stat.S_IMODE(top.stat().st_mode) | stat.S_ISVTX)
    return folder


@contextlib.contextmanager
def owner_only_files() -> tp.Iterator[None]:
    """Files created while this runs get no group/other write bit from the start (a shared store's umask is 002):
    sbatch scripts, submitit's bookkeeping, job.json records. Pickles are 0600 anyway (`private_pickles`)."""
    old = os.umask(0o022)
    os.umask(old | 0o022)  # never looser than the user's own umask
    try:
        yield
    finally:
        os.umask(old)


# -- local: detached controllers -------------------------------------------------------------------------------------
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
                                       stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        return submitit_local.LocalJob(folder=self.folder, job_id=str(process.pid), process=process, tasks=[0])


# -- slurm: sbatch from inside an allocation --------------------------------------------------------------------------
KEPT_SLURM_VARS = {"SLURM_CONF"}  # where the client commands find the cluster, not a property of any job


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
        with _outside_allocation(), _timed_sbatch(), owner_only_files():
            return super()._internal_process_submissions(delayed_submissions)


TIME_STEPS_MIN = (15, 30, 60, 120, 240, 480, 720, 1440, 2880, 4320, 10080)  # few distinct --time: few arrays
JOB_START_MIN = 5  # a job's start-up (interpreter, dataset) on top of the unit's own estimate


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


def make_executor(cfg: ExecutorConfig, log_dir: str | Path) -> submitit.Executor:
    """The submitit executor for `cfg`, writing submission files and job logs under `log_dir`.

    For `debug`, jobs.driver runs units in-process itself rather than through the returned DebugExecutor: that
    one opens pdb on any exception, which hangs a pipeline and fails under captured stdio.
    """
    log_dir = Path(log_dir)
    if cfg.kind == "debug":
        return submitit.DebugExecutor(folder=log_dir)
    private_folder(log_dir)
    # imported here: `python -m jobs.owned_submission` (every job) imports this package first, and must not find
    # itself in sys.modules already
    from jobs.owned_submission import private_pickles

    private_pickles()  # the submission files this process writes: 0600 from their first byte
    if cfg.kind == "local":
        return DetachedLocalExecutor(log_dir, local_gpus=cfg.local_gpus, timeout_min=cfg.timeout_min,
                                     setup=cfg.setup, max_num_timeout=cfg.max_num_timeout,
                                     job_cpus=max(1, (os.cpu_count() or 1) // cfg.parallel))
    if submitit.SlurmExecutor.affinity() < 0:
        raise ExecutorConfigError(
            "executor kind 'slurm' but `srun` is not on PATH: run the pipeline on a SLURM login node, or set "
            f"${ENV_KIND}=local (or kind: local in {DEFAULT_FILE})")
    ex = CleanEnvSlurmExecutor(folder=log_dir, max_num_timeout=cfg.max_num_timeout)
    ex.update_parameters(**slurm_parameters(cfg, f"awd-{log_dir.name}"))
    return ex


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
