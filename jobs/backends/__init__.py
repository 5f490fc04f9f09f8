"""Where jobs run: one `Backend` per executor kind, behind one protocol. The driver, the placement lines, the
throughput model and the cluster check ask the backend of a config what to do; none of them names a kind.

A new kind is one module here with a class that satisfies `Backend`, named in `REGISTRY` (the one place that lists
the kinds: executor.yaml's `kind` accepts exactly these). Modules load on first use: `python -m jobs` on a
machine without SLURM never imports the slurm backend's helpers.
"""

from __future__ import annotations

import importlib
import typing as tp

if tp.TYPE_CHECKING:
    import submitit

    from jobs.executor_config import ExecutorConfig
    from jobs.sbatch_errors import Verdict

# kind -> "module:class"; the order is the order error messages list the kinds in
REGISTRY: dict[str, str] = {
    "debug": "jobs.backends.debug:DebugBackend",
    "local": "jobs.backends.local:LocalBackend",
    "slurm": "jobs.backends.slurm:SlurmBackend",
}
KINDS = tuple(REGISTRY)
Say = tp.Callable[[str], object]


@tp.runtime_checkable
class Backend(tp.Protocol):
    """What the driver needs of a place jobs run. Attributes are capabilities; methods ask the place."""

    name: str  # the executor kind (job.json's `executor`)
    in_process: bool  # units run inside the driver, one at a time: no jobs, no waiting, no early units
    starts_all: bool  # every submitted job starts at once (no queue): units are dealt over the free slots
    is_cluster: bool  # a scheduler shared with others: settings are checked against it, GPU-hours are budgeted
    lost_grace_s: float  # how long a job the scheduler no longer shows may still commit (shared-filesystem lag)
    poll_s: float  # the driver's default wait between polls

    def queue_cap(self, cfg: ExecutorConfig) -> int | None:
        """Most jobs of this driver queued or running at once (None: no cap)."""

    def limits(self, cfg: ExecutorConfig) -> int | None:
        """The site's own cap on this user's jobs, when it can be read up front (None: unknown or none)."""

    def preflight(self, cfg: ExecutorConfig, say: Say) -> None:
        """Raises ExecutorConfigError naming every key the place refuses, before anything is submitted."""

    def array_size(self, cfg: ExecutorConfig, n_jobs: int) -> int:
        """Jobs per submitted array."""

    def job_gpus(self, cfg: ExecutorConfig) -> int:
        """GPUs a job must find before it runs a unit (0: not checked)."""

    def submit_error(self, text: str) -> Verdict | None:
        """What a refused submission's message means (wait, fix the settings), or None: a plain failure."""

    def job_request(self, cfg: ExecutorConfig, job_s: float | None, nice: int | None) -> dict[str, tp.Any]:
        """Changes to `cfg` for one job: its time limit from its estimate, its priority from its chain."""

    def executor(self, cfg: ExecutorConfig, log_dir: str) -> submitit.Executor:
        """The submitit executor that submits (`submit_array`) jobs for `cfg`, its files under `log_dir`."""

    def describe(self, cfg: ExecutorConfig) -> str:
        """The machines and resources of the jobs, in words (the placement lines)."""

    def job_cpus(self, cfg: ExecutorConfig) -> int:
        """CPU threads one job gets on this machine (the throughput model's hardware)."""

    def place(self, cfg: ExecutorConfig) -> str:
        """Where the jobs run as far as their speed goes (the throughput samples' hardware key)."""

    def controller_up(self) -> bool:
        """Whether the scheduler answers now (False: wait for it, keep every job; True where there is none)."""


_loaded: dict[str, Backend] = {}


def backend(kind: str) -> Backend:
    """The backend of executor kind `kind` (one instance per process)."""
    if kind not in _loaded:
        if kind not in REGISTRY:
            raise ValueError(f"unknown executor kind {kind!r}; allowed: {', '.join(KINDS)}")
        module, _, name = REGISTRY[kind].partition(":")
        _loaded[kind] = getattr(importlib.import_module(module), name)()
    return _loaded[kind]


def of(cfg: ExecutorConfig) -> Backend:
    """The backend `cfg` names."""
    return backend(cfg.kind)


def use(kind: str, replacement: Backend | None) -> Backend | None:
    """Installs `replacement` as the backend of `kind` for this process (None: the registered one again) and
    returns the one it replaces: the seam tests use to stand in a fake scheduler, or a site without accounting."""
    previous = _loaded.pop(kind, None)
    if replacement is not None:
        _loaded[kind] = replacement
    return previous
