"""On the real local SLURM cluster: a job started through jobs.owned_submission under a shared store's umask
(002) still checkpoints on preemption (USR2) and resumes, because the submission file submitit rewrites stays
owner-only; a group-writable one would be refused by the requeued job."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import cloudpickle
import pytest
import submitit

from jobs.executors import ExecutorConfig, make_executor
from jobs.store import RunStore
from tests.slurm_util import fast_submitit_polling, slurm_cluster, wait_until  # noqa: F401

pytestmark = pytest.mark.slurm
cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the job cannot import this test module


class Resumable(submitit.helpers.Checkpointable):
    def __init__(self) -> None:
        self.progress = 0

    def __call__(self, started: str) -> int:
        if self.progress == 0:
            self.progress = 41
            Path(started).write_text("first run")
            time.sleep(300)
        return self.progress + 1


def test_preempted_job_under_a_shared_umask_resumes_through_the_owner_check(slurm_cluster, tmp_path, monkeypatch):
    fast_submitit_polling(monkeypatch)
    cfg = ExecutorConfig(kind="slurm", partition=slurm_cluster.partition, cpus_per_task=1, timeout_min=5,
                         setup=["umask 002"])
    job = make_executor(cfg, RunStore(tmp_path / "runs").log_dir("toy")).submit(Resumable(), str(tmp_path / "s"))
    wait_until((tmp_path / "s").exists, 60, what="the first run")
    time.sleep(0.5)  # submitit's signal handlers are installed before the function runs; margin only
    subprocess.run(["scancel", "--signal=USR2", job.job_id], check=True, capture_output=True, text=True)
    wait_until(job.done, 90, interval=0.2, what="the requeued run")
    assert job.result() == 42, job.paths.stderr.read_text()
    assert not job.paths.submitted_pickle.stat().st_mode & 0o022
    assert "refusing" not in job.paths.stderr.read_text()
