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
import yaml

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


def small_params(tmp_path: Path) -> Path:
    """The embedded params with every suite (every table and figure is asked for) but the grids that only add
    training jobs of one kind cut down: the grid to 2 lrs x (2 λ_wd + 1 DoG), label noise to 2 values a method and
    one seed, under-fitting to one seed. The natural, adversarial, variants and lr-sensitivity studies stay whole:
    the same DAG shape and critical path (DoG hand-off, extra seeds, AutoAttack, pruning) with about half the train
    jobs, so a CI rehearsal costs the two cores less."""
    from jobs import bounded_yaml

    params = bounded_yaml.load(REPO / "params.yaml")
    suites = params["suites"]
    suites["grid"][0].update(lrs=[0.01, 0.1], wds=[5.0e-5, 5.0e-4], dogs=[0.1])
    suites["noisy"][0].update(wds=[5.0e-3, 5.0e-2], dogs=[0.1, 0.2], seeds=[0])
    suites["underfit"][0].update(seeds=[0])
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path
