"""slurmctld stopped mid-run on the real local cluster (scripts/local-slurm.sh pause/resume): sbatch fails
meanwhile (`Unable to contact slurm controller`), the jobs keep running. The driver says once that the controller is
unreachable and what keeps running, marks nothing failed, resubmits nothing, and finishes the campaign once the
controller answers again. About a minute."""

from __future__ import annotations

import pytest

from tests.slurm.faults_util import Driver, cancel_under, local_slurm, outage
from tests.slurm_util import slurm_cluster, wait_until  # noqa: F401  (the fixture)

pytestmark = pytest.mark.slurm


def test_the_driver_waits_for_a_stopped_controller_and_finishes(slurm_cluster, tmp_path):  # noqa: F811
    store = tmp_path / "runs"
    driver = None
    try:
        with outage():
            # two jobs at a time: the third and fourth units wait to be submitted while the controller is down
            driver = Driver(tmp_path, store, 4, "ctld", cfg={"max_queued": 2}, sleep_s=6)
            wait_until(lambda: driver.started(0) and driver.started(1), 90, what="the first two jobs to start")
            local_slurm("pause", "slurmctld")
            line = driver.says("slurmctld unreachable since", timeout=90)
            assert "Unable to contact slurm controller" in line
            assert "keep running); submitting again when it answers" in line
            wait_until(lambda: driver.runs(0) and driver.runs(1) and (store / "toy").exists(), 30)
            local_slurm("resume", "slurmctld")
            driver.says("slurmctld answers again after", timeout=60)
        rc, results = driver.wait(120)
        log = driver.text()
        assert rc == 0, log
        assert sorted(r["double"] for r in results.values()) == [0, 2, 4, 6]
        assert [driver.runs(x) for x in range(4)] == [1, 1, 1, 1]  # nothing resubmitted, nothing run twice
        assert log.count("slurmctld unreachable since") == 1 and log.count("slurmctld answers again") == 1
        assert "Traceback" not in log and "retrying" not in log and "failed=0" in log and "failed=1" not in log
        assert "sbatch: error" not in log  # sbatch's words are in the one line, not printed again per attempt
    finally:
        if driver is not None:
            driver.stop()
        cancel_under(store)
