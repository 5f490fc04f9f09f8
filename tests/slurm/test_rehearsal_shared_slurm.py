"""The rehearsal's shared-cluster profile at small scale (issue 27): two other users (local users awdlab1/awdlab2,
accounts lab_a/lab_b) keep the cluster contested with a seeded stream of sleep jobs under the multifactor priority
with fair share; the campaign still finishes with nothing lost, and the report says what the scheduler granted us.
~3-4 minutes.

Needs root and the SLURM packages; skipped without them unless AWD_REQUIRE_SLURM=1.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.slurm.rehearsal_util import REPO, _need_slurm_daemons, _test_cluster_healthy, small_params

pytestmark = [pytest.mark.slurm, pytest.mark.rehearsal]


def test_reduced_rehearsal_on_a_shared_cluster_reports_what_it_was_granted(tmp_path):
    _need_slurm_daemons()
    healthy_before = _test_cluster_healthy()
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "pipeline.rehearsal", "--params", str(small_params(tmp_path)), "--gpus", "32", "--tflops", "0.001",
           "--minutes-per-gpu-hour", "1", "--faults", "none", "--profile", "shared", "--others-load", "0.6",
           "--workdir", str(tmp_path / "work"), "--out", str(out), "--label", "ci-shared"]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    r = json.loads((out / "rehearsal.json").read_text())
    assert r["profile"] == "shared" and r["exit_status"] == 0 and r["lost"] == 0 and r["tables_complete"] is True
    assert all(n > 0 for n in r["others"]["submitted"].values()) and not r["others"]["refused"]
    assert all(h > 0 for h in r["others_gpu_h"].values())  # the other users' jobs ran beside ours
    # we were granted less than the whole cluster, and the bound uses what we were granted
    assert 0 < r["granted_mean_gpus"] < r["gpus"] and r["granted_gpu_h"] == r["busy_gpu_h"]
    assert 0 < r["granted_bound_h"] <= r["makespan_h"] and 0 < r["granted_efficiency"] <= 1
    assert r["granted_over_time"] and "## Shared cluster" in (out / "rehearsal.md").read_text()
    if healthy_before:
        assert _test_cluster_healthy(), "the rehearsal disturbed the test cluster"
