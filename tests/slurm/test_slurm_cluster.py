"""submitit against the real local SLURM cluster (scripts/local-slurm.sh start).

Skipped when no cluster answers, unless AWD_REQUIRE_SLURM=1 (then a missing cluster fails).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import cloudpickle
import pytest
import submitit
from submitit.core.utils import FailedJobError, UncompletedJobError

from tests.slurm_util import fast_submitit_polling, sacct_final_state, sacct_rows, slurm_cluster, wait_until  # noqa: F401

pytestmark = pytest.mark.slurm

# Functions defined here are shipped to the job by value: the job's interpreter cannot import this test module.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

JOB_TIMEOUT_S = 60  # a single job on an idle node finishes in ~1-3 s; this bounds a hang, it is not expected


@pytest.fixture
def executor(slurm_cluster, tmp_path, monkeypatch):
    fast_submitit_polling(monkeypatch)
    ex = submitit.AutoExecutor(folder=tmp_path / "submitit")
    assert ex.cluster == "slurm", f"AutoExecutor picked {ex.cluster!r} although SLURM answers"
    ex.update_parameters(timeout_min=5, slurm_partition=slurm_cluster.partition, cpus_per_task=1)
    return ex


def result_within(job, timeout: float = JOB_TIMEOUT_S):
    """job.result(), but a hang becomes a test failure instead of a stuck suite."""
    wait_until(lambda: job.done(), timeout, interval=0.2, what=f"job {job.job_id} to finish")
    return job.result()


# --------------------------------------------------------------------------------------------- job functions
def where_am_i(out_dir: str, x: int) -> dict:
    marker = Path(out_dir) / f"written-by-{os.environ['SLURM_JOB_ID']}.txt"
    marker.write_text(str(x * 2))
    return {
        "job_id": os.environ.get("SLURM_JOB_ID"),
        "array_job_id": os.environ.get("SLURM_ARRAY_JOB_ID"),
        "array_task_id": os.environ.get("SLURM_ARRAY_TASK_ID"),
        "executable": sys.executable,
        "value": x * 2,
    }


def square(x: int) -> int:
    return x * x


def visible_gpus() -> str | None:
    return os.environ.get("CUDA_VISIBLE_DEVICES")


def boom(tag: str) -> None:
    raise ValueError(f"deliberate failure {tag}")


def sleep_for(seconds: float, started: str) -> str:
    Path(started).write_text("started")
    time.sleep(seconds)
    return "not cancelled"


class CountRuns(submitit.helpers.Checkpointable):
    """Counts its runs in a file; the first run blocks until it is requeued, the second one returns."""

    def __call__(self, counter: str) -> int:
        path = Path(counter)
        n = int(path.read_text()) + 1 if path.exists() else 1
        path.write_text(str(n))
        if n == 1:
            time.sleep(300)
        return n


class Resumable(submitit.helpers.Checkpointable):
    """Keeps its progress in its own state: submitit's USR2 handler pickles it (checkpoint) and requeues."""

    def __init__(self) -> None:
        self.progress = 0

    def __call__(self, started: str) -> int:
        if self.progress == 0:
            self.progress = 41
            Path(started).write_text("first run")
            time.sleep(300)
        return self.progress + 1


# --------------------------------------------------------------------------------------------- tests
def test_single_job_returns_result_from_venv_python(executor, tmp_path):
    t0 = time.monotonic()
    job = executor.submit(where_am_i, str(tmp_path), 21)
    out = result_within(job)
    latency = time.monotonic() - t0
    assert out["job_id"] == job.job_id, "the function did not run inside the SLURM job that submitit submitted"
    assert out["value"] == 42
    assert Path(out["executable"]).resolve() == Path(sys.executable).resolve()
    assert (tmp_path / f"written-by-{job.job_id}.txt").read_text() == "42"  # job wrote to the submission folder
    assert sacct_final_state(job.job_id) == "COMPLETED"
    print(f"single job {job.job_id}: submit -> result {latency:.2f} s")


@pytest.mark.parametrize("how", ["map_array", "batch"])
def test_array_of_four_is_one_slurm_array_job(executor, how):
    xs = [1, 2, 3, 4]
    executor.update_parameters(slurm_array_parallelism=4)
    if how == "map_array":
        jobs = executor.map_array(square, xs)
    else:
        with executor.batch():
            jobs = [executor.submit(square, x) for x in xs]
    assert len(jobs) == 4
    base_ids = {j.job_id.split("_")[0] for j in jobs}
    assert len(base_ids) == 1, f"expected one array job, got ids {[j.job_id for j in jobs]}"
    (base,) = base_ids
    assert sorted(j.job_id for j in jobs) == [f"{base}_{i}" for i in range(4)]
    assert [result_within(j) for j in jobs] == [1, 4, 9, 16]
    # accounting lags slurmctld by a moment: wait until all four tasks are recorded as finished
    expected = [f"{base}_{i}" for i in range(4)]

    def recorded():
        rows = sacct_rows(base, "JobID", "State")
        return rows if sorted(r["JobID"] for r in rows) == expected and {r["State"] for r in rows} == {"COMPLETED"} else None

    try:
        wait_until(recorded, 30, what=f"sacct to list {expected} as COMPLETED")
    except TimeoutError:
        pytest.fail(f"sacct -j {base} lists {sacct_rows(base, 'JobID', 'State')}, expected {expected} all COMPLETED")


def test_gpu_request_is_accepted_and_sets_cuda_visible_devices(executor, slurm_cluster):
    if slurm_cluster.gpus < 1:
        pytest.fail(f"the cluster's default partition has no GPU gres (node {slurm_cluster.node}); "
                    "scripts/local-slurm.sh configures gpu:2")
    executor.update_parameters(gpus_per_node=1)
    job = executor.submit(visible_gpus)
    cvd = result_within(job)
    assert cvd is not None and cvd != "", "the job got no CUDA_VISIBLE_DEVICES"
    assert len(cvd.split(",")) == 1, cvd
    sacct_final_state(job.job_id)
    (row,) = sacct_rows(job.job_id, "JobID", "AllocTRES")
    assert "gres/gpu=1" in row["AllocTRES"], row


def test_raising_job_gives_failed_job_error_with_log_path(executor):
    job = executor.submit(boom, "xyzzy")
    with pytest.raises(FailedJobError) as info:
        result_within(job)
    message = str(info.value)
    assert "deliberate failure xyzzy" in message
    assert str(job.paths.stderr) in message
    assert job.paths.stderr.exists()
    assert "deliberate failure xyzzy" in job.paths.stderr.read_text()
    assert sacct_final_state(job.job_id) == "FAILED"


def test_cancelled_job_resolves_through_accounting(executor, tmp_path):
    """A cancelled job writes no result: only sacct can tell submitit it is over (no accounting = hangs forever)."""
    started = tmp_path / "started"
    job = executor.submit(sleep_for, 300, str(started))
    wait_until(started.exists, JOB_TIMEOUT_S, what="the job to start")
    job.cancel()
    with pytest.raises(UncompletedJobError) as info:
        result_within(job, timeout=30)
    assert "CANCELLED" in str(info.value)
    assert sacct_final_state(job.job_id).startswith("CANCELLED")


def test_scontrol_requeue_reruns_checkpointable_job(executor, tmp_path):
    counter = tmp_path / "runs"
    job = executor.submit(CountRuns(), str(counter))
    wait_until(lambda: counter.exists() and counter.read_text() == "1", JOB_TIMEOUT_S, what="the first run")
    subprocess.run(["scontrol", "requeue", job.job_id], check=True, capture_output=True, text=True)
    assert result_within(job, timeout=90) == 2
    assert counter.read_text() == "2"
    assert sacct_final_state(job.job_id) == "COMPLETED"
    runs = sacct_rows(job.job_id, "JobID", "State", duplicates=True)
    assert [r["State"] for r in runs] == ["REQUEUED", "COMPLETED"], runs


def test_usr2_preemption_checkpoints_state_and_requeues(executor, tmp_path):
    """submitit's preemption path: USR2 -> Checkpointable.checkpoint() pickles self -> `scontrol requeue` from
    inside the job -> the second run resumes from the checkpointed state (progress 41 -> returns 42)."""
    started = tmp_path / "started"
    job = executor.submit(Resumable(), str(started))
    wait_until(started.exists, JOB_TIMEOUT_S, what="the first run")
    time.sleep(0.5)  # let submitit's handlers be installed (they are, before the function runs; margin only)
    subprocess.run(["scancel", "--signal=USR2", job.job_id], check=True, capture_output=True, text=True)
    assert result_within(job, timeout=90) == 42
    assert sacct_final_state(job.job_id) == "COMPLETED"  # accounting lags the result file by a moment
    runs = sacct_rows(job.job_id, "JobID", "State", duplicates=True)
    assert len(runs) == 2 and runs[-1]["State"] == "COMPLETED", runs
