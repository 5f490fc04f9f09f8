"""The rehearsal's cluster faults at small scale (issue 27): slurmctld stopped, slurmdbd stopped, the copy's run
store (a tmpfs) filled to the limit then freed with a rerun, a node set down with jobs on it then resumed; beside the
time-limit requeues and a killed driver. 32 GPU slots (two nodes: one set down leaves the other, as on a site's
cluster; the only node set down would leave a restarted stage nothing `sbatch --test-only` accepts). ~4-5 minutes.

Needs root and the SLURM packages; skipped without them unless AWD_REQUIRE_SLURM=1.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.slurm.test_rehearsal_slurm import REPO, _need_slurm_daemons, _test_cluster_healthy

pytestmark = [pytest.mark.slurm, pytest.mark.rehearsal]
CLUSTER_FAULTS = ("slurmctld", "slurmdbd", "store_full", "node_down")


def test_reduced_rehearsal_survives_the_four_cluster_faults(tmp_path):
    _need_slurm_daemons()
    healthy_before = _test_cluster_healthy()
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "pipeline.rehearsal", "--params", "params.yaml", "--gpus", "32", "--tflops", "0.001",
           "--minutes-per-gpu-hour", "1", "--faults", "survivable," + ",".join(CLUSTER_FAULTS),
           "--timeout-rate", "0.08", "--slurmctld-down-min", "20", "--slurmdbd-down-min", "30", "--node-down-min", "20",
           "--workdir", str(tmp_path / "work"), "--out", str(out), "--label", "ci-cluster-faults"]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    r = json.loads((out / "rehearsal.json").read_text())
    assert r["exit_status"] == 0 and r["lost"] == 0 and r["tables_complete"] is True and not r["breaks"]
    assert all(r["faults_injected"][f] == 1 == r["faults_survived"][f] for f in CLUSTER_FAULTS), r["faults_injected"]
    rows = {row["name"]: row for row in r["cluster_faults"]}
    assert set(rows) == set(CLUSTER_FAULTS) and all(row["lasted_h"] > 0 for row in rows.values())
    # the full store: the driver said once how much space it needs, dvc repro stopped, and a rerun finished
    assert rows["store_full"]["driver_stopped"] is True
    assert "is full" in rows["store_full"]["user_saw"] and "free space and rerun" in rows["store_full"]["user_saw"]
    assert sum(1 for d in r["dvc_runs"] if d["exit_status"] != 0) == 2 and r["dvc_runs"][-1]["exit_status"] == 0
    assert rows["slurmdbd"]["user_saw"].startswith("slurmdbd (accounting) unreachable")
    assert rows["node_down"]["jobs_on_node"] >= 1
    assert all(v["submitted"] == v["done"] > 0 for v in r["units"].values())  # each unit once, none duplicated
    assert "## Cluster faults" in (out / "rehearsal.md").read_text()
    # the store was a tmpfs only while the rehearsal ran: its files are kept on disk for the report
    assert subprocess.run(["mountpoint", "-q", str(tmp_path / "work" / "repo" / "runs")]).returncode != 0
    assert list((tmp_path / "work" / "repo" / "runs" / "train").glob("*/*/manifest.json"))
    if healthy_before:
        assert _test_cluster_healthy(), "the rehearsal disturbed the test cluster"
