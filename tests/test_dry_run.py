"""`python -m pipeline.dry_run` lists what would run and estimates GPU-hours; it submits nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_dry_run_lists_pending_runs_with_an_estimate_and_submits_nothing(tmp_path):
    store = tmp_path / "store"
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "AWD_STORE": str(store)}
    out = subprocess.run([sys.executable, "-m", "pipeline.dry_run", "--list", "--params", "configs/paper.yaml"],
                         cwd=ROOT, env=env, capture_output=True, text=True, check=True).stdout
    assert "runs to train, 0 cached" in out and "GPU-hours training" in out and "nothing was submitted" in out
    pending = int(out.split("train:")[1].split("runs to train")[0])
    assert pending > 400  # the paper's grids
    assert sum(1 for line in out.splitlines() if line.startswith("  ") and "[" in line) == pending
    assert not store.exists() or not any(store.rglob("manifest.json"))
