"""On the real cluster: a queued job runs the code its key names even when the checkout changes before it starts."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from jobs.keys import code_digest
from jobs.snapshot import snapshot_path
from tests.integration.test_snapshot import make_project, probe_key, set_value
from tests.slurm_util import slurm_cluster, wait_until  # noqa: F401  (the fixture)

pytestmark = [pytest.mark.slurm]

DRIVER = """
    import json, sys
    from jobs.executors import ExecutorConfig
    from jobs.keys import code_digest, unit_key
    from jobs.driver import run_units
    from jobs.job import Unit
    code = code_digest("pipeline.units.probe")
    unit = Unit("probe", unit_key("probe", {{}}, code), "pipeline.units.probe:probe_unit", {{}}, code=code)
    cfg = ExecutorConfig(kind="slurm", partition={partition!r}, cpus_per_task=1, timeout_min=5, poll_s=1,
                         extra={{"hold": True}})
    print(json.dumps(run_units([unit], {store!r}, cfg, desc="probe")[unit.key]))
"""


def test_held_job_released_after_a_checkout_edit_runs_the_submitted_code(slurm_cluster, tmp_path):
    project = make_project(tmp_path / "checkout")
    store = tmp_path / "store"
    digest = code_digest("pipeline.units.probe", root=project)
    entry = store / "probe" / probe_key(digest)[:2] / probe_key(digest)
    driver = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(DRIVER.format(partition=slurm_cluster.partition, store=str(store)))],
        cwd=project, env={"PATH": "/usr/bin:/bin:/usr/local/bin", "PYTHONPATH": str(project)},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    job_id = None
    try:
        # the driver first writes a claim (executor "claim"), then the job's id once sbatch answered
        record = wait_until(lambda: (entry / "job.json").exists() and (r := json.loads((entry / "job.json").read_text()))
                            and r.get("executor") != "claim" and r, 60, what="the held job to be submitted")
        job_id = record["job_id"].split("_")[0]
        state = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%T %r"], capture_output=True, text=True,
                               timeout=10).stdout.split()
        assert state[:1] == ["PENDING"], state
        set_value(project, "after")  # a `git pull` while the job is queued
        subprocess.run(["scontrol", "release", job_id], check=True, timeout=10)
        out, err = driver.communicate(timeout=120)
    finally:
        if driver.poll() is None:
            driver.kill()
            if job_id:
                subprocess.run(["scancel", job_id], timeout=10)
    assert driver.returncode == 0, err
    result = json.loads(out.strip().splitlines()[-1])
    assert result == {"value": "before", "file": str(snapshot_path(store, digest) / "awd" / "probe_value.py")}
    # the checkout itself now says "after": a unit keyed on it gets another key, and would run that code
    assert code_digest("pipeline.units.probe", root=project) != digest
