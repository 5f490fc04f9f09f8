"""The rules for faults that outlast a poll (jobs/outages.py), without SLURM or a process: ENOSPC/EDQUOT
recognised, the space a full store's units need, each outage said once when it starts and once when it ends (fake
clock), job states from squeue while sacct fails. The driver under each fault: tests/integration/test_faults_driver.py
(a scheduler stand-in) and tests/slurm/test_faults_*.py (the real cluster)."""

from __future__ import annotations

import errno

import jobs.liveness as liveness
from jobs import Unit
from jobs.outages import Faults, StoreSpace, is_full_error, says_full

DOWN = "sbatch: error: Batch job submission failed: Unable to contact slurm controller (connect failure)"


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_disk_full_is_recognised_in_words_and_errnos():
    assert says_full("OSError: [Errno 28] No space left on device: '/store/x'")
    assert says_full("OSError: [Errno 122] Disk quota exceeded")
    assert not says_full("RuntimeError: asked to fail", None, "")
    assert is_full_error(OSError(errno.ENOSPC, "No space left on device"))
    assert is_full_error(OSError(errno.EDQUOT, "Disk quota exceeded"))
    assert not is_full_error(OSError(errno.EACCES, "Permission denied")) and not is_full_error(ValueError("x"))


def test_store_space_explains_by_free_space_and_sizes_what_is_left(tmp_path):
    free = {"bytes": 50 << 20}
    space = StoreSpace(tmp_path, free=lambda root: free["bytes"])
    assert not space.explains("job 7 ended (FAILED) without committing a result")  # space left: a plain failure
    free["bytes"] = 4096
    assert space.explains("job 7 ended (FAILED) without committing a result")  # nothing left: the store is full

    class Store:
        def manifest(self, kind, key):
            return {"files": {"model.pt": {"size": 3 << 20}}, "dropped": {"resume/ckpt": {"size": 1 << 20}}}

    space.committed(Unit("train", "k0", "m:f", {}), Store())
    assert space.block("train", "k1") and not space.block("train", "k2")  # said once
    message = space.message(["train", "train", "train"])
    assert message.startswith(f"the run store {tmp_path} is full (0.0 MB free now): 3 units need about 12 MB more; "
                              "free space and rerun")
    (tmp_path / "partial").write_bytes(b"x" * (2 << 20))
    space.block("prune", "k3", tmp_path)  # no prune unit committed: what it had written is a floor
    assert "4 units need at least 14 MB more" in space.message(["train", "train", "train", "prune"])


def test_an_outage_is_said_once_when_it_starts_and_once_when_it_ends():
    clock, said, up = Clock(), [], {"now": False}
    faults = Faults(lambda: up["now"], said.append, clock)
    assert faults.controller_down(RuntimeError(f"toy: submitting 2 slurm jobs failed: {DOWN}"), "3 units in 2 jobs")
    clock.t += 120
    assert faults.controller_down(RuntimeError(DOWN), "3 units in 2 jobs") and not faults.controller_back()
    up["now"] = True
    assert faults.controller_back() and faults.controller_back()
    assert len(said) == 2
    assert said[0].startswith("slurmctld unreachable since ")
    assert said[0].endswith("(Unable to contact slurm controller (connect failure)); waiting (3 units in 2 jobs "
                            "keep running); submitting again when it answers")
    assert said[1] == "slurmctld answers again after 120s; submitting again"
    assert not faults.controller_down(RuntimeError("sbatch: error: Socket timed out"), "")  # it answers: a hiccup
    faults.accounting(clock.t)
    faults.accounting(clock.t)
    clock.t += 3600
    faults.accounting(None)
    assert said[2].startswith("slurmdbd (accounting) unreachable: sacct fails since ")
    assert said[3] == "sacct answers again after 3600s" and len(said) == 4


def test_without_sacct_job_states_come_from_squeue(monkeypatch):
    """sacct's cache would keep a job that ended meanwhile RUNNING forever; squeue says it is gone; when squeue does
    not answer either, nothing is taken for ended."""
    watch = liveness.JobWatch()
    monkeypatch.setattr(liveness, "_sacct_update", lambda watcher: False)
    monkeypatch.setattr(liveness.submitit.SlurmJob.watcher, "get_state", lambda job_id, mode="": "RUNNING")
    monkeypatch.setattr(liveness, "_squeue_states", lambda ids: {"11": "RUNNING", "12": ""})
    records = [{"job_id": "11", "executor": "slurm", "submitted_at": 0}, {"job_id": "12", "executor": "slurm"}]
    watch.refresh(records, force=True)
    assert watch.accounting_down_since is not None and watch.controller_answered
    assert watch.state(records[0]) == (True, "RUNNING")
    assert watch.state(records[1]) == (False, "GONE (not in squeue)")
    monkeypatch.setattr(liveness, "_squeue_states", lambda ids: None)  # slurmctld down as well
    watch.refresh(records, force=True)
    assert not watch.controller_answered and watch.state(records[1]) == (True, "RUNNING")
    monkeypatch.setattr(liveness, "_sacct_update", lambda watcher: True)
    watch.refresh(records, force=True)
    assert watch.accounting_down_since is None
