"""slurmdbd stopped mid-run on the real local cluster: sacct fails while jobs run, finish and new ones are
submitted. The driver says so once, takes job states from squeue and the store's heartbeats and results, takes no
job for lost for want of an sacct row, and finishes the campaign with the accounting database still down."""

from __future__ import annotations

import pytest

from tests.slurm.faults_util import Driver, cancel_under, local_slurm, outage
from tests.slurm_util import slurm_cluster, wait_until  # noqa: F401  (the fixture)

pytestmark = pytest.mark.slurm


def test_the_campaign_finishes_while_accounting_is_down(slurm_cluster, tmp_path):  # noqa: F811
    store = tmp_path / "runs"
    driver = None
    try:
        with outage():
            # jobs outlast the 30 s between two sacct calls: the driver asks sacct while it is down
            driver = Driver(tmp_path, store, 3, "dbd", cfg={"max_queued": 2}, sleep_s=25)
            wait_until(lambda: driver.started(0) or driver.started(1), 90, what="the first job to start")
            local_slurm("pause", "slurmdbd")
            line = driver.says("slurmdbd (accounting) unreachable: sacct fails since", timeout=90)
            assert "job states come from squeue and the jobs' heartbeats meanwhile" in line
            rc, results = driver.wait(150)  # slurmdbd stays down until the campaign is over
        log = driver.text()
        assert rc == 0, log
        assert sorted(r["double"] for r in results.values()) == [0, 2, 4]
        assert [driver.runs(x) for x in range(3)] == [1, 1, 1]  # no job taken for lost, nothing run twice
        assert log.count("slurmdbd (accounting) unreachable") == 1
        assert "Traceback" not in log and "retrying" not in log and "Bypassing sacct error" not in log
    finally:
        if driver is not None:
            driver.stop()
        cancel_under(store)
