"""A reduced rehearsal through the real path on the rehearsal cluster (scripts/local-slurm.sh, profile rehearsal):
the embedded params, 16 GPU slots, with the faults today's design survives (time-limit requeues, a SIGKILL of
the train stage driver then a restart). ~2-3 minutes.

Needs root and the SLURM packages (it starts and stops its own rehearsal cluster beside the test cluster, which
must stay healthy); skipped without them unless AWD_REQUIRE_SLURM=1.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.slurm.faults_util import LOCK as FAULTS_LOCK
from tests.slurm_util import require_slurm

REPO = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.slurm, pytest.mark.rehearsal]


def _need_slurm_daemons():
    missing = [b for b in ("slurmctld", "slurmd", "slurmdbd", "mariadbd", "sbatch", "sacct") if not shutil.which(b)]
    why = f"missing {missing}" if missing else ("not root" if os.geteuid() != 0 else "")
    if why:
        if require_slurm():
            pytest.fail(f"AWD_REQUIRE_SLURM=1 but the rehearsal cluster cannot start: {why}", pytrace=False)
        pytest.skip(f"the rehearsal cluster cannot start: {why}")


def _test_cluster_healthy() -> bool:
    """The test cluster's health, asked while no fault test holds it down on purpose (`make test` runs the rehearsals
    beside the rest of the SLURM tier: a paused slurmctld there is not the rehearsal's doing)."""
    env = {k: v for k, v in os.environ.items() if k not in ("AWD_SLURM_PROFILE", "SLURM_CONF")}
    with open(FAULTS_LOCK, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_SH)
        return subprocess.run([str(REPO / "scripts" / "local-slurm.sh"), "status"], env=env, capture_output=True,
                              timeout=60).returncode == 0


def test_reduced_rehearsal_survives_requeues_and_a_driver_kill(tmp_path):
    _need_slurm_daemons()
    healthy_before = _test_cluster_healthy()
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "pipeline.rehearsal", "--params", "params.yaml", "--gpus", "16", "--tflops", "0.001",
           "--minutes-per-gpu-hour", "1", "--faults", "survivable", "--timeout-rate", "0.08",
           "--kill-driver-at", "0.3", "--workdir", str(tmp_path / "work"), "--out", str(out), "--label", "ci"]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    r = json.loads((out / "rehearsal.json").read_text())
    assert r["rehearsal"] is True and r["exit_status"] == 0
    assert r["lost"] == 0 and r["tables_complete"] is True
    assert r["faults_injected"].get("timeout", 0) >= 1 and r["faults_injected"]["driver_kill"] == 1
    assert r["faults_survived"] == r["faults_injected"]
    assert r["requeued_attempts"] >= r["faults_injected"]["timeout"]
    assert [d["exit_status"] != 0 for d in r["dvc_runs"]] == [True, False]  # killed, then restarted to the end
    assert set(r["units"]) == {"train", "autoattack", "prune"}
    assert all(v["submitted"] == v["done"] > 0 for v in r["units"].values())
    assert 0 < r["lower_bound_h"] <= r["makespan_h"] and 0 < r["efficiency"] <= 1
    assert r["peak_running"] <= r["gpus"] == 16 and r["sbatch_calls"] >= 4
    assert (out / "rehearsal_gpus.png").stat().st_size > 0 and "rehearsal" in (out / "rehearsal.md").read_text()
    # stand-in results live in the throwaway copy's store, marked, never in this repository's
    store = tmp_path / "work" / "repo" / "runs" / "train"
    result = json.loads(next(store.glob("*/*/result.json")).read_text())
    assert result["rehearsal"] is True
    if healthy_before:
        assert _test_cluster_healthy(), "the rehearsal disturbed the test cluster"
