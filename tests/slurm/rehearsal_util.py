"""What the reduced rehearsals (tests/slurm/test_rehearsal_*.py) share: each starts and stops its own rehearsal cluster
(scripts/local-slurm.sh, profile rehearsal) beside the test cluster, which must stay healthy. They need root and
the SLURM packages; skipped without them unless AWD_REQUIRE_SLURM=1."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.slurm.faults_util import LOCK as FAULTS_LOCK
from tests.slurm_util import require_slurm

REPO = Path(__file__).resolve().parents[2]


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
