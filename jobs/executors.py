"""Where units run: executor settings (from $AWD_EXECUTOR / executor.yaml, never a DVC param) and the submitit
executor of each kind. The kinds themselves are jobs/backends/ (`debug`, `local`, `slurm`); this module keeps the
names the project imported from here before they moved out."""

from __future__ import annotations

from pathlib import Path

import submitit

from jobs import backends
from jobs.backends.local import DetachedLocalExecutor  # noqa: F401
from jobs.backends.slurm import (  # noqa: F401
    JOB_START_MIN,
    KEPT_SLURM_VARS,
    TIME_STEPS_MIN,
    CleanEnvSlurmExecutor,
    _outside_allocation,
    _timed_sbatch,
    slurm_parameters,
    unit_time_min,
)
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
from jobs.private_files import OWNED_ENTRY, UnsafeLogDir, owner_only_files, private_folder  # noqa: F401
from jobs.sbatch_errors import SUBMIT_LIMIT_RE  # noqa: F401
from jobs.slurm_info import SCHEDULER_TIMEOUT_S, partition_time_limit_min, submit_limit  # noqa: F401
from jobs.slurm_info import slurm_minutes as _slurm_minutes  # noqa: F401


def make_executor(cfg: ExecutorConfig, log_dir: str | Path) -> submitit.Executor:
    """The submitit executor for `cfg`, writing submission files and job logs under `log_dir` (its backend's).

    For `debug`, jobs.driver runs units in-process itself rather than through the returned DebugExecutor: that
    one opens pdb on any exception, which hangs a pipeline and fails under captured stdio.
    """
    return backends.of(cfg).executor(cfg, str(log_dir))
