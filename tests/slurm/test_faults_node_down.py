"""A node set down with jobs on it (`scontrol update nodename=... state=down reason=test`) on the real local
cluster: SLURM kills the jobs and requeues them (JobRequeue=1). The driver resubmits nothing and fails nothing: the
requeued jobs run again (ReturnToService=2 brings the node back as soon as its slurmd registers), resume from their
checkpoints, and each unit is committed once. The driver's "requeued by the scheduler" line needs a poll that sees
the job PENDING again (sacct is asked every 30 s): a requeue shorter than that goes unsaid, and is harmless. Skips while other sessions' jobs run on the
cluster (setting the only node down would kill them too)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.slurm.faults_util import Driver, cancel_under, foreign_jobs, outage
from tests.slurm_util import slurm_cluster, wait_until  # noqa: F401  (the fixture)

pytestmark = pytest.mark.slurm


def requeued(store: Path) -> bool:
    """Whether sacct lists a job of this test more than once (-D: every run of a requeued job)."""
    ids = {json_id for p in store.glob("toy/*/*/job.json") if (json_id := p.read_text().split('"job_id": "')[-1]
                                                                .split('"')[0])}
    if not ids:
        return False
    out = subprocess.run(["sacct", "-n", "-X", "-D", "-P", "-o", "JobID,State", "-j", ",".join(sorted(ids))],
                         capture_output=True, text=True, timeout=30).stdout
    rows = [line.split("|")[0] for line in out.splitlines() if line.strip()]
    return len(rows) > len(set(rows)) or "REQUEUED" in out or "NODE_FAIL" in out


def test_jobs_on_a_node_set_down_are_requeued_and_resume(slurm_cluster, tmp_path):  # noqa: F811
    store, node = tmp_path / "runs", slurm_cluster.node
    driver = None
    try:
        with outage(node=node):
            if others := foreign_jobs(store):
                pytest.skip(f"other jobs run on the cluster ({' '.join(others)}): not setting node {node} down")
            driver = Driver(tmp_path, store, 2, "node", cfg={"max_queued": 2}, sleep_s=15, report_resume=True)
            wait_until(lambda: driver.started(0) and driver.started(1), 90, what="both jobs to start")
            subprocess.run(["scontrol", "update", f"nodename={node}", "state=down", "reason=test"], check=True,
                           timeout=30)
            wait_until(lambda: requeued(store), 60, what="SLURM to requeue a job of the node set down")
            subprocess.run(["scontrol", "update", f"nodename={node}", "state=resume"], capture_output=True, timeout=30)
            rc, results = driver.wait(150)
        log = driver.text()
        assert rc == 0, log
        assert sorted(r["double"] for r in results.values()) == [0, 2]
        assert any(r["resumed"] for r in results.values())  # a requeued unit went on from its checkpoint
        assert len(list(store.glob("toy/*/*/manifest.json"))) == 2 and "retrying unit" not in log
        assert log.count("was requeued by the scheduler") <= 2  # said per requeue the driver's poll saw, no more
    finally:
        if driver is not None:
            driver.stop()
        cancel_under(store)
