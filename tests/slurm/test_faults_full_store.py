"""The run store's filesystem full mid-run on the real local cluster: the store is a 64 MB tmpfs (mounted as root;
the test skips where mounting is refused), filled to the limit once the first unit has committed. The jobs then fail
for want of space; the driver recognises it, spends no retry, stops submitting, and ends with one line saying how
much space the units left need; after the filler is removed a plain rerun finishes the campaign."""

from __future__ import annotations

import subprocess

import pytest

from tests.slurm.faults_util import Driver, cancel_under, outage
from tests.slurm_util import slurm_cluster, wait_until  # noqa: F401  (the fixture)

pytestmark = pytest.mark.slurm


@pytest.fixture
def small_store(tmp_path):
    mount = tmp_path / "fs"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mount)], capture_output=True,
                          text=True, timeout=30)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a size-limited tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        cancel_under(mount)
        subprocess.run(["umount", "-l", str(mount)], capture_output=True, timeout=30)


def test_a_full_store_stops_the_driver_with_the_space_needed_and_a_rerun_finishes(slurm_cluster, tmp_path,  # noqa: F811
                                                                                  small_store):
    store, filler = small_store / "runs", small_store / "filler"
    with outage():
        driver = Driver(tmp_path, store, 4, "full", cfg={"max_queued": 1, "max_retries": 2}, sleep_s=3)
        try:
            wait_until(lambda: list(store.glob("toy/*/*/manifest.json")), 90, what="the first unit to commit")
            subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=1M"], capture_output=True, timeout=60)
            rc, results = driver.wait(150)
        finally:
            driver.stop()
        log = driver.text()
        assert rc == 1 and not results, log
        error = next(line for line in log.splitlines() if line.startswith("ERROR: "))
        assert error.startswith(f"ERROR: the run store {store} is full (0.0 MB free now): ")
        assert "units need about 1 MB more; free space and rerun" in error
        assert log.count(f"the run store {store} is full") == 2  # said when it happened, and as the run's end
        assert "retrying unit" not in log and "Traceback" not in log
        filler.unlink()
        rerun = Driver(tmp_path, store, 4, "full", cfg={"max_queued": 2})
        rc, results = rerun.wait(150)
    assert rc == 0, rerun.text()
    assert sorted(r["double"] for r in results.values()) == [0, 2, 4, 6]
    assert len(list(store.glob("toy/*/*/manifest.json"))) == 4  # one entry per unit, nothing duplicated
