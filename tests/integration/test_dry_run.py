"""`python -m pipeline.dry_run` lists what would run and estimates GPU-hours; it submits nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


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


def test_dry_run_leaves_a_damaged_store_entry_in_place(tmp_path, monkeypatch, capsys):
    """A dry run reads the store: a damaged training entry is reported pending, and stays where it is (the train
    stage quarantines and recomputes it: tests/e2e/test_reliability_pipeline.py)."""
    from jobs.store import RunStore
    from pipeline import dry_run
    from pipeline.params import load_params
    from pipeline.suites import independent_runs
    from pipeline.train import unit_for

    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("AWD_STORE", str(tmp_path / "store"))
    store = RunStore(tmp_path / "store")
    params = load_params("params.yaml")
    units = {u.key: u for u in (unit_for(s, params) for s in independent_runs(params))}
    damaged, done = list(units)[:2]
    for key in (damaged, done):
        (store.workdir("train", key) / "model.pt").write_bytes(b"\0" * 64)
        store.commit("train", key, {"acc": 1.0})
    (store.path("train", damaged) / "model.pt").write_bytes(b"\0" * 32)

    monkeypatch.setattr("sys.argv", ["dry_run", "--params", "params.yaml"])
    dry_run.main()
    out = capsys.readouterr().out
    assert f"train:  {len(units) - 1} runs to train, 1 cached" in out and "nothing was submitted" in out
    assert (store.path("train", damaged) / "model.pt").stat().st_size == 32
    assert not (store.root / "_quarantine").exists()
