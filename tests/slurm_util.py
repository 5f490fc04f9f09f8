"""Helpers for tests that need the local SLURM cluster (scripts/local-slurm.sh).

Import from a test module (tests/ is a package):

    from tests.slurm_util import slurm_cluster  # noqa: F401  (the fixture)

`slurm_cluster` skips the test when no healthy cluster answers, unless AWD_REQUIRE_SLURM=1, in which case the
absence is a test failure (CI sets it after `scripts/local-slurm.sh start`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import typing as tp
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
START_HINT = "start it with `scripts/local-slurm.sh start` (as root)"


@dataclass(frozen=True)
class SlurmCluster:
    partition: str
    node: str
    node_state: str
    cpus: int
    gpus: int


def _run(cmd: tp.Sequence[str], timeout: float = 10) -> str:
    return subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=timeout).stdout


def _why(e: BaseException) -> str:
    detail = getattr(e, "stderr", None) or str(e)
    if isinstance(detail, bytes):
        detail = detail.decode(errors="replace")
    if isinstance(e, subprocess.TimeoutExpired):
        detail = f"timed out after {e.timeout:g}s: {detail}"
    return detail.strip().splitlines()[0] if detail.strip() else type(e).__name__


def probe_cluster() -> tuple[SlurmCluster | None, str]:
    """Returns (cluster, "") when SLURM answers with a usable node and accounting, else (None, why not)."""
    for tool in ("sinfo", "sbatch", "sacct", "scontrol", "srun"):
        if shutil.which(tool) is None:
            return None, f"`{tool}` is not on PATH"
    try:
        # %P partition (default marked with *), %N node, %T state, %c CPUs, %G gres
        lines = _run(["sinfo", "-h", "-N", "-o", "%P|%N|%T|%c|%G"]).strip().splitlines()
    except (subprocess.SubprocessError, OSError) as e:
        return None, f"`sinfo` does not answer: {_why(e)}"
    usable = [line.split("|") for line in lines if line.split("|")[2] in ("idle", "mixed", "allocated")]
    if not usable:
        return None, f"no idle/mixed/allocated node: sinfo says {lines!r}"
    default = [u for u in usable if u[0].endswith("*")] or usable
    part, node, state, cpus, gres = default[0]
    gpus = 0
    for g in gres.split(","):
        if g.startswith("gpu:"):
            gpus = int(g.split(":")[-1].split("(")[0])
    try:
        _run(["sacct", "-n", "-X", "-o", "JobID"])
    except (subprocess.SubprocessError, OSError) as e:
        return None, f"`sacct` does not answer (no accounting; submitit needs it): {_why(e)}"
    return SlurmCluster(partition=part.rstrip("*"), node=node, node_state=state, cpus=int(cpus), gpus=gpus), ""


def require_slurm() -> bool:
    return os.environ.get("AWD_REQUIRE_SLURM", "") == "1"


@pytest.fixture(scope="session")
def slurm_cluster() -> SlurmCluster:
    cluster, why = probe_cluster()
    if cluster is None:
        message = f"no usable SLURM cluster: {why}; {START_HINT}"
        if require_slurm():
            pytest.fail(f"AWD_REQUIRE_SLURM=1 but {message}", pytrace=False)
        pytest.skip(message)
    return cluster


def wait_until(predicate: tp.Callable[[], tp.Any], timeout: float, interval: float = 0.2, what: str = "") -> tp.Any:
    """Polls predicate until it returns something truthy; raises TimeoutError after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(interval)


def sacct_rows(job_id: str, *fields: str, duplicates: bool = False) -> list[dict[str, str]]:
    """Allocation rows (-X: no .batch/.0 steps) sacct has for job_id (an array's base id lists its tasks)."""
    fields = fields or ("JobID", "State")
    cmd = ["sacct", "-n", "-X", "-P", "-o", ",".join(fields), "-j", str(job_id)]
    if duplicates:
        cmd.append("-D")  # requeued jobs: one row per run
    out = _run(cmd)
    return [dict(zip(fields, line.split("|"))) for line in out.strip().splitlines() if line]


def sacct_final_state(job_id: str, timeout: float = 30) -> str:
    """Waits until sacct reports a final state for job_id and returns it (e.g. COMPLETED, FAILED, CANCELLED)."""
    running = {"PENDING", "RUNNING", "REQUEUED", "COMPLETING", "CONFIGURING", "RESIZING", "SUSPENDED", ""}

    def final() -> str | None:
        rows = sacct_rows(job_id)
        states = [r["State"].split(" ")[0] for r in rows]
        if states and all(s not in running for s in states):
            return ",".join(states)
        return None

    return wait_until(final, timeout, what=f"a final sacct state of job {job_id}")


def fast_submitit_polling(monkeypatch: pytest.MonkeyPatch, results_timeout_s: int = 2) -> None:
    """Makes submitit notice finished jobs sooner, for tests only.

    - `Job._results_timeout_s` (15 s): how long `result()` waits for a result file once SLURM says the job is over
      (a cancelled or killed job never writes one, so this is pure delay there).
    - `SlurmJob.watcher._delay_s` (600 s): the *maximum* interval between sacct calls; submitit polls at
      max(2 s, half the age of the newest job), so the 2 s floor is hard-coded and only the cap can be lowered.
    """
    import submitit.core.core as core
    import submitit.slurm.slurm as slurm

    monkeypatch.setattr(core.Job, "_results_timeout_s", results_timeout_s)
    monkeypatch.setattr(slurm.SlurmJob.watcher, "_delay_s", 5)
