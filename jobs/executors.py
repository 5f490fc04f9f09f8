"""Where units run: executor settings (from $AWD_EXECUTOR / executor.yaml, never a DVC param) and submitit executors.

Kinds: `debug` (in the driver process, for stepping through a unit), `local` (detached subprocesses on this
machine, at most `max_parallel` at once), `slurm` (job arrays through sbatch; state from sacct).
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import math
import os
import pwd
import re
import shlex
import signal
import socket
import stat
import subprocess
import sys
import time
import typing as tp
from pathlib import Path

import submitit
import yaml
from submitit.local import local as submitit_local
from submitit.slurm import slurm as submitit_slurm

from jobs import bounded_yaml
from jobs.checks import brief, is_a, is_int
from jobs.keys import KIND_RE

KINDS = ("debug", "local", "slurm")
ENV_KIND = "AWD_EXECUTOR"
ENV_FILE = "AWD_EXECUTOR_CONFIG"
DEFAULT_FILE = "executor.yaml"
DEFAULT_SLURM_TIMEOUT_MIN = 24 * 60  # submitit's own default is 5 minutes, too short for any training run
NO_LOCAL_TIMEOUT_MIN = 365 * 24 * 60
DEFAULT_SLURM_BUDGET_GPU_HOURS = 100.0  # the embedded default needs ~0; one paper suite needs more than this


class ExecutorConfigError(ValueError):
    pass


@dataclasses.dataclass(frozen=True)
class ExecutorConfig:
    kind: str = "local"
    # local
    max_parallel: int | None = None  # default: os.cpu_count()
    local_gpus: list[int] | None = None  # job i sees GPU local_gpus[i % len]; None: inherit the env
    # slurm
    partition: str | None = None
    gpus_per_node: int | None = None
    check_gpus: bool = True  # a job that asked for GPUs and sees none fails at once instead of running on its CPUs
    cpus_per_task: int | None = None
    mem_gb: float | None = None
    timeout_min: int | None = None  # slurm default 24 h; local: no limit unless set
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    array_parallelism: int | None = None
    max_array_size: int = 1000  # SLURM's MaxArraySize is 1001 by default: larger submissions are split
    extra: dict[str, tp.Any] = dataclasses.field(default_factory=dict)  # -> sbatch additional parameters
    setup: list[str] = dataclasses.field(default_factory=list)  # shell lines run before each job
    max_num_timeout: int = 3  # requeues after a time-out (preemptions do not count)
    max_queued: int | None = None  # jobs (array tasks) this driver keeps queued or running; more as they end
    # slurm: `--nice` by how much shorter a unit's chain is than the longest one (jobs.driver.chain_nice), so that
    # among our own pending jobs the scheduler starts the heads of the longest chains first
    chain_priority: bool = True
    # all
    units_per_job: int | None = None  # pack units into one job; local default: <= max_parallel jobs
    poll_s: float | None = None  # driver poll interval; default local 1 s, slurm 15 s
    budget_gpu_hours: float | None = None  # slurm: refuse larger new work unless confirmed (see gpu_budget)
    max_retries: int = 2  # resubmissions of a unit whose job failed (crash, OOM, node failure, lost), per run
    oom_mem_factor: float = 1.5  # an out-of-memory retry asks for mem_gb x this (when mem_gb is set) ...
    max_mem_gb: float | None = None  # ... up to this many GB
    # per-unit --time: the unit's estimated seconds x this, rounded up to a step of TIME_STEPS_MIN, at most
    # timeout_min and the partition's MaxTime (None: every job asks for timeout_min)
    time_safety_factor: float | None = None
    tflops: float = 100.0  # sustained TFLOP/s per GPU, for the estimate (as `python -m pipeline.dry_run --tflops`)
    # per kind of unit (train, autoattack, prune, ...): settings that replace the ones above for that kind
    profiles: dict[str, dict[str, tp.Any]] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        validate_fields(dataclasses.asdict(self), source="ExecutorConfig")

    def for_kind(self, kind: str) -> ExecutorConfig:
        """These settings with the profile of `kind` (if any) applied."""
        profile = self.profiles.get(kind)
        return dataclasses.replace(self, **profile) if profile else self

    @property
    def parallel(self) -> int:
        return self.max_parallel or os.cpu_count() or 1

    def gpu_budget(self) -> float | None:
        """GPU-hours of new work a stage may submit without confirmation; None (no guard) on local and debug."""
        if self.kind != "slurm":
            return None
        return DEFAULT_SLURM_BUDGET_GPU_HOURS if self.budget_gpu_hours is None else float(self.budget_gpu_hours)

    def poll_interval(self) -> float:
        if self.poll_s is not None:
            return self.poll_s
        return 15.0 if self.kind == "slurm" else 1.0


_INT = (int,)
_NUM = (int, float)
_FIELD_TYPES: dict[str, tuple[tuple[type, ...], str]] = {
    "kind": ((str,), "one of " + ", ".join(KINDS)),
    "max_parallel": (_INT, "a positive integer"),
    "local_gpus": ((list,), "a list of GPU indices"),
    "partition": ((str,), "a string"),
    "gpus_per_node": (_INT, "an integer >= 0"),
    "check_gpus": ((bool,), "true or false"),
    "cpus_per_task": (_INT, "a positive integer"),
    "mem_gb": (_NUM, "a positive number"),
    "timeout_min": (_INT, "a positive integer (minutes)"),
    "account": ((str,), "a string"),
    "qos": ((str,), "a string"),
    "constraint": ((str,), "a string"),
    "array_parallelism": (_INT, "a positive integer"),
    "max_array_size": (_INT, "a positive integer"),
    "extra": ((dict,), "a mapping of sbatch option -> value"),
    "setup": ((list,), "a list of shell lines"),
    "max_num_timeout": (_INT, "an integer >= 0"),
    "units_per_job": (_INT, "a positive integer"),
    "poll_s": (_NUM, "a positive number (seconds)"),
    "budget_gpu_hours": (_NUM, "a positive number (GPU-hours)"),
    "max_queued": (_INT, "a positive integer (jobs)"),
    "chain_priority": ((bool,), "true or false"),
    "max_retries": (_INT, "an integer >= 0"),
    "oom_mem_factor": (_NUM, "a number >= 1"),
    "max_mem_gb": (_NUM, "a positive number"),
    "time_safety_factor": (_NUM, "a number >= 1"),
    "tflops": (_NUM, "a positive number (TFLOP/s)"),
    "profiles": ((dict,), "a mapping of unit kind -> settings for that kind"),
}
NOT_IN_PROFILES = {"kind", "profiles", "poll_s", "max_queued", "local_gpus", "max_parallel", "budget_gpu_hours",
                   "chain_priority"}  # driver-wide
_MIN = {"max_parallel": 1, "gpus_per_node": 0, "cpus_per_task": 1, "mem_gb": 0, "timeout_min": 1,
        "array_parallelism": 1, "max_array_size": 1, "max_num_timeout": 0, "units_per_job": 1, "poll_s": 0,
        "max_queued": 1, "max_retries": 0, "oom_mem_factor": 1, "max_mem_gb": 0, "time_safety_factor": 1,
        "tflops": 0, "budget_gpu_hours": 0}
_STRICT_MIN = {"mem_gb", "poll_s", "max_mem_gb", "tflops", "budget_gpu_hours"}
_REQUIRED = ("kind", "extra", "setup", "max_array_size", "max_num_timeout", "max_retries", "oom_mem_factor",
             "tflops", "profiles", "check_gpus", "chain_priority")


def _did_you_mean(word: str, options: tp.Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(options), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def validate_fields(values: tp.Mapping[str, tp.Any], source: str) -> None:
    """Raises ExecutorConfigError naming `source`, the key, the bad value and what is allowed."""
    for key in values:
        if key not in _FIELD_TYPES:
            raise ExecutorConfigError(
                f"{source}: unknown key {brief(key)}{_did_you_mean(str(key), _FIELD_TYPES)}; "
                f"allowed keys: {', '.join(sorted(_FIELD_TYPES))}")
    for key, value in values.items():
        if value is None and key not in _REQUIRED:
            continue
        types, allowed = _FIELD_TYPES[key]
        if not is_a(value, types):
            raise ExecutorConfigError(
                f"{source}: key {key!r} must be {allowed}, got {brief(value)} ({type(value).__name__})")
        if key in _MIN and (value < _MIN[key] or (key in _STRICT_MIN and value == _MIN[key])):
            raise ExecutorConfigError(f"{source}: key {key!r} must be {allowed}, got {brief(value)}")
    kind = values.get("kind", "local")
    if kind not in KINDS:
        raise ExecutorConfigError(
            f"{source}: unknown executor kind {brief(kind)}{_did_you_mean(str(kind), KINDS)}; allowed: "
            f"{', '.join(KINDS)}")
    for line in values.get("setup") or []:
        if not isinstance(line, str):
            raise ExecutorConfigError(f"{source}: key 'setup' must be a list of shell lines, got item {brief(line)}")
    for gpu in values.get("local_gpus") or []:
        if not is_int(gpu) or gpu < 0:
            raise ExecutorConfigError(f"{source}: key 'local_gpus' must list GPU indices >= 0, got item "
                                      f"{brief(gpu)}")
    for kind, profile in (values.get("profiles") or {}).items():
        where = f"{source}: profiles.{kind}"
        if not isinstance(kind, str) or not KIND_RE.match(kind):
            raise ExecutorConfigError(f"{source}: key 'profiles' maps unit kinds (train, autoattack, prune, ...) to "
                                      f"settings, got kind {brief(kind)}")
        if not isinstance(profile, dict):
            raise ExecutorConfigError(f"{where} must be a mapping of settings, got {brief(profile)}")
        driver_wide = sorted(NOT_IN_PROFILES & set(profile))
        if driver_wide:
            raise ExecutorConfigError(f"{where}: {', '.join(map(repr, driver_wide))} can only be set at the top "
                                      "level (they apply to the whole driver)")
        validate_fields(profile, where)
    for opt, value in (values.get("extra") or {}).items():
        if not isinstance(opt, str) or not isinstance(value, (str, int, float, bool)):
            raise ExecutorConfigError(
                f"{source}: key 'extra' maps sbatch options to str/number/bool values, got {brief(opt)}: "
                f"{brief(value)}")


def load_executor_config(path: str | Path | None = None) -> ExecutorConfig:
    """Settings from a YAML file (`path`, else $AWD_EXECUTOR_CONFIG, else ./executor.yaml if present); the kind
    can be overridden with $AWD_EXECUTOR. Without either: local."""
    values: dict[str, tp.Any] = {}
    if path is None and os.environ.get(ENV_FILE):
        path = os.environ[ENV_FILE]
        if not Path(path).is_file():
            raise ExecutorConfigError(f"${ENV_FILE}={path!r}: no such file")
    elif path is None and Path(DEFAULT_FILE).is_file():
        path = DEFAULT_FILE
    source = "defaults"
    if path is not None:
        source = str(path)
        try:
            loaded = bounded_yaml.load(path, yaml_version="1.1")  # caps: an alias bomb or 100k `[` is refused
        except FileNotFoundError:
            raise ExecutorConfigError(f"executor config {source!r}: no such file") from None
        except bounded_yaml.SettingsFileError as e:
            raise ExecutorConfigError(f"executor config {e}") from None
        except yaml.YAMLError as e:
            raise ExecutorConfigError(f"executor config {source}: not valid YAML: {e}") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ExecutorConfigError(f"executor config {source}: must be a mapping of settings, got "
                                      f"{type(loaded).__name__}")
        validate_fields(loaded, source)
        values.update(loaded)
    env_kind = os.environ.get(ENV_KIND)
    if env_kind:
        env_kind = env_kind.strip().lower()
        if env_kind not in KINDS:
            raise ExecutorConfigError(f"${ENV_KIND}: unknown executor kind {env_kind!r}"
                                      f"{_did_you_mean(env_kind, KINDS)}; allowed: {', '.join(KINDS)}")
        values["kind"] = env_kind
    return ExecutorConfig(**values)


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


SCHEDULER_TIMEOUT_S = 60  # sbatch / sacct / squeue / scancel: a controller that does not answer is retried later
# sbatch's refusals that mean "too many of your jobs are queued": wait for some to end, never a crash
SUBMIT_LIMIT_RE = re.compile(r"QOSMaxSubmitJob\w*|AssocMaxSubmitJob\w*|MaxSubmitJobs\w*|job submit limit", re.I)


def timed(command: tp.Sequence[str], seconds: float = SCHEDULER_TIMEOUT_S) -> list[str]:
    """`command` killed after `seconds` (exit status 124): for calls made by submitit, which sets no timeout."""
    return ["timeout", "-k", "5", str(int(seconds)), *command]


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


_partition_limits: dict[str | None, int | None] = {}


def partition_time_limit_min(partition: str | None) -> int | None:
    """The partition's MaxTime in minutes (sinfo; the default partition when None); None when unlimited/unknown."""
    if partition not in _partition_limits:
        cmd = ["sinfo", "-h", "-o", "%P|%l"]
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=SCHEDULER_TIMEOUT_S).stdout
        except (OSError, subprocess.SubprocessError):
            return None  # not cached: asked again at the next submission
        rows = [line.split("|", 1) for line in out.splitlines() if "|" in line]
        row = next((r for r in rows if (r[0].rstrip("*") == partition if partition else r[0].endswith("*"))), None)
        _partition_limits[partition] = _slurm_minutes(row[1]) if row else None
    return _partition_limits[partition]


_submit_limits: dict[str | None, int | None] = {}


def _sacctmgr_rows(*args: str) -> list[list[str]]:
    out = subprocess.run(["sacctmgr", "-n", "-P", "show", *args], capture_output=True, text=True, check=True,
                         timeout=SCHEDULER_TIMEOUT_S).stdout
    return [line.split("|") for line in out.splitlines() if line.strip()]


def submit_limit(qos: str | None) -> int | None:
    """How many jobs (array tasks) of this user the scheduler accepts at once: the smaller of the association's
    MaxSubmitJobs and the QOS's MaxSubmitJobsPerUser (`qos`, else the association's default QOS), from sacctmgr.
    None when neither is set or sacctmgr cannot tell (no accounting, several associations that disagree): the
    driver then learns the limit from sbatch's refusals instead of being refused first."""
    if qos not in _submit_limits:
        user = pwd.getpwuid(os.getuid()).pw_name
        try:
            assoc = [r for r in _sacctmgr_rows("assoc", "where", f"user={user}", "format=MaxSubmit,DefaultQOS,QOS")
                     if len(r) == 3]
            # with no DefaultQOS an association's jobs run under its only QOS
            defaults = {r[1] or (r[2] if "," not in r[2] else "") for r in assoc}
            name = qos if qos is not None else (defaults.pop() if len(defaults) == 1 else "")
            assoc_limits = {r[0] for r in assoc}
            found = [int(v) for v in assoc_limits if v.isdigit()] if len(assoc_limits) == 1 else []
            if name:
                found += [int(r[0]) for r in _sacctmgr_rows("qos", name, "format=MaxSubmitPU") if r[0].isdigit()]
        except (OSError, subprocess.SubprocessError, ValueError):
            return None  # not cached: asked again by the next driver
        _submit_limits[qos] = min(found) if found else None
    return _submit_limits[qos]


def _slurm_minutes(text: str) -> int | None:
    """'1-00:00:00', '12:00:00', '30:00', '45' -> minutes; 'infinite' / 'UNLIMITED' -> None."""
    text = text.strip()
    if not text or not text[0].isdigit():
        return None
    days, _, rest = text.rpartition("-")
    parts = [int(p) for p in rest.split(":")]
    if days:  # days-hours[:minutes[:seconds]]
        h, m, sec = (parts + [0, 0])[:3]
    else:  # minutes, minutes:seconds or hours:minutes:seconds
        h, m, sec = [0] * (3 - len(parts)) + parts if len(parts) == 3 else (0, parts[0], parts[1] if len(parts) > 1 else 0)
    return int(days or 0) * 1440 + h * 60 + m + (1 if sec else 0)


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
    params: dict[str, tp.Any] = {"time": cfg.timeout_min or DEFAULT_SLURM_TIMEOUT_MIN}
    if not {"job-name", "job_name"} & set(cfg.extra):
        # squeue/sacct name the stage (awd-train, awd-attack, ...) rather than submitit's "submitit"
        params["job_name"] = f"awd-{log_dir.name}"
    for name in ("partition", "gpus_per_node", "cpus_per_task", "account", "qos", "constraint",
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
    ex.update_parameters(**params)
    return ex


# -- liveness and cancellation of recorded jobs (any driver process, any time) ---------------------------------------
SLURM_ACTIVE = {"PENDING", "RUNNING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "COMPLETING", "CONFIGURING",
                "RESIZING", "SUSPENDED", "STAGE_OUT", "SIGNALING", "READY", "UNKNOWN"}
SQUEUE_FALLBACK_AFTER_S = 300.0  # sacct may not list a job for a while (or at all without accounting)


class ElsewhereError(RuntimeError):
    """A local job recorded by a driver on another host: this host cannot see whether it still runs."""


def _proc_alive(pid: int) -> bool:
    stat = Path(f"/proc/{pid}/stat")
    if Path("/proc/self/stat").exists():
        try:
            state = stat.read_text().rsplit(")", 1)[1].split()[0]
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, IndexError):
            return False  # gone, or another user's process reusing the pid: not our job either way
        # a zombie has exited; a live pid without "submitit" in its command line is a reused pid
        return state not in ("Z", "X") and b"submitit" in cmdline
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _proc_owner(pid: int) -> int | None:
    try:
        return os.stat(f"/proc/{pid}").st_uid
    except OSError:
        return None if Path("/proc/self").exists() else os.geteuid()  # no /proc: os.killpg's EPERM decides


class JobWatch:
    """Answers "is this recorded job still queued or running?" for jobs submitted by this or an earlier driver."""

    def __init__(self, sacct_every_s: float = 30.0):
        _time_sacct()
        self._children: dict[str, tp.Any] = {}  # job id -> Popen of local jobs this process started
        self._sacct_every_s = sacct_every_s
        self._last_sacct = float("-inf")
        self._squeue: dict[str, str] = {}

    def track(self, job: tp.Any) -> None:
        process = getattr(job, "_process", None)
        if process is not None:
            self._children[str(job.job_id)] = process

    def refresh(self, records: tp.Iterable[tp.Mapping[str, tp.Any]], force: bool = False) -> None:
        """One sacct call for every recorded slurm job, at most every `sacct_every_s` unless forced."""
        slurm = sorted({str(r["job_id"]) for r in records if r.get("executor") == "slurm"})
        if not slurm:
            return
        now = time.time()
        if not force and now - self._last_sacct < self._sacct_every_s:
            return
        watcher = submitit.SlurmJob.watcher
        for job_id in slurm:
            watcher.register_job(job_id)  # idempotent; we poll with update() ourselves
        watcher.update()
        self._last_sacct = now
        stale = [j for j, r in ((str(r["job_id"]), r) for r in records if r.get("executor") == "slurm")
                 if watcher.get_state(j, mode="cache") == "UNKNOWN"
                 and now - float(r.get("submitted_at", now)) > SQUEUE_FALLBACK_AFTER_S]
        self._squeue = _squeue_states(stale) if stale else {}

    def state(self, record: tp.Mapping[str, tp.Any]) -> tuple[bool, str]:
        """(alive, state in words)."""
        job_id = str(record["job_id"])
        kind = record.get("executor")
        if kind == "local":
            if job_id in self._children:
                alive = self._children[job_id].poll() is None  # also reaps our own finished children
                return alive, "RUNNING" if alive else "ENDED"
            host = record.get("host")
            if host and host != _hostname():
                raise ElsewhereError(
                    f"local job {job_id} was started on host {host!r} and this is {_hostname()!r}; run the "
                    "pipeline there, cancel the job there (python -m jobs cancel), or delete the entry's job.json "
                    "to resubmit")
            alive = _proc_alive(int(job_id))
            return alive, "RUNNING" if alive else "ENDED"
        if kind == "slurm":
            folder = record.get("folder")
            if folder and submitit.core.utils.JobPaths(folder, job_id=job_id).result_pickle.exists():
                return False, "ENDED"
            state = submitit.SlurmJob.watcher.get_state(job_id, mode="cache").split(" ")[0].upper()
            if state == "UNKNOWN" and job_id in self._squeue:
                state = self._squeue[job_id] or "GONE (not in squeue)"
            return state in SLURM_ACTIVE, state
        # debug units run inside the driver: a record left behind means that driver is gone
        return False, "ENDED"


def _time_sacct() -> None:
    """submitit's shared sacct watcher calls sacct without a timeout (and survives a failed call): add one."""
    watcher = submitit.SlurmJob.watcher
    if getattr(watcher, "_awd_timed", False):
        return
    make = watcher._make_command
    watcher._make_command = lambda: None if (cmd := make()) is None else timed(cmd)  # type: ignore[method-assign]
    setattr(watcher, "_awd_timed", True)  # noqa: B010 -- a marker on submitit's object, not one of its attributes


def _hostname() -> str:
    return socket.gethostname()


def _squeue_states(job_ids: tp.Sequence[str]) -> dict[str, str]:
    try:
        out = subprocess.run(["squeue", "-h", "-o", "%i|%T", "-j", ",".join(job_ids)], capture_output=True,
                             text=True, timeout=SCHEDULER_TIMEOUT_S).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    states = {j: "" for j in job_ids}
    for line in out.splitlines():
        if "|" in line:
            jid, state = line.strip().split("|", 1)
            states[jid] = state.upper()
    return states


def cancel_jobs(records: tp.Sequence[tp.Mapping[str, tp.Any]], say: tp.Callable[[str], None] = print) -> int:
    """Cancels recorded jobs: scancel for slurm, SIGINT to the process group for local. Returns how many."""
    slurm = sorted({str(r["job_id"]) for r in records if r.get("executor") == "slurm"})
    n = 0
    if slurm:
        subprocess.run(["scancel", *slurm], check=True, timeout=SCHEDULER_TIMEOUT_S)
        say(f"scancel {' '.join(slurm)}")
        n += len(slurm)
    for job_id in sorted({str(r["job_id"]) for r in records if r.get("executor") == "local"}):
        rec = next(r for r in records if str(r["job_id"]) == job_id)
        if rec.get("host") and rec["host"] != _hostname():
            say(f"local job {job_id} runs on host {rec['host']}; cancel it there")
            continue
        if not _proc_alive(int(job_id)):
            continue
        owner = _proc_owner(int(job_id))
        if owner != os.geteuid():  # a record only names a pid: the process itself says whose it is
            say(f"local job {job_id} is a process of uid {owner}, not yours: not cancelled")
            continue
        try:
            os.killpg(int(job_id), signal.SIGINT)  # the controller and its task: they share the job's session
        except ProcessLookupError:
            continue
        except PermissionError as e:
            say(f"local job {job_id}: not cancelled ({e.strerror})")
            continue
        say(f"interrupted local job {job_id}")
        n += 1
    return n
