"""No accidental local campaign: on this machine's CPUs (the default executor, no executor.yaml) a stage whose new
work exceeds `budget_cpu_hours` (from a measured CPU throughput) refuses before submitting anything, pointing to the
cluster guide; the embedded default fits with room to spare."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from jobs.executor_config import DEFAULT_LOCAL_BUDGET_CPU_HOURS
from jobs.executors import ExecutorConfig, ExecutorConfigError, load_executor_config
from jobs.store import RunStore
from pipeline.params import load_params
from pipeline.suites import independent_runs

ROOT = Path(__file__).resolve().parents[2]


def clean_env(**extra: str) -> dict[str, str]:
    """No executor settings from the caller's environment, no GPU in sight, this checkout's code."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWD_EXECUTOR", "AWD_CONFIRM"))}
    return dict(env, PYTHONPATH=str(ROOT), CUDA_VISIBLE_DEVICES="", **extra)


@pytest.fixture()
def cpus_only(monkeypatch):
    monkeypatch.setattr("pipeline.cost._local_gpus_visible", lambda: False)
    for name in ("AWD_CONFIRM_CPU_HOURS", "AWD_EXECUTOR", "AWD_EXECUTOR_CONFIG"):
        monkeypatch.delenv(name, raising=False)


def units_of(path: Path) -> list:
    from pipeline.train import unit_for

    params = load_params(path)
    return [unit_for(s, params) for s in independent_runs(params)]


def test_the_paper_config_without_executor_yaml_refuses_before_training_anything(tmp_path):
    """The train stage itself, as `dvc repro` runs it, on the paper's settings in a workspace with no executor.yaml
    (stand-in CIFAR files: the stage reads the test sets' sizes before its guard)."""
    from pipeline.rehearsal.cifar import write_datasets

    write_datasets(tmp_path / "data" / "raw", ["cifar10", "cifar100"])
    store = tmp_path / "store"
    proc = subprocess.run([sys.executable, "-m", "pipeline.train", "--params", str(ROOT / "configs" / "paper.yaml")],
                          cwd=tmp_path, env=clean_env(AWD_STORE=str(store)), capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 1, proc.stderr[-3000:]
    err = proc.stderr
    assert "Traceback" not in err and err.startswith("train: the new work is about "), err
    hours = float(err.split("about ")[1].split(" CPU-hours")[0])
    assert hours > 1000 * DEFAULT_LOCAL_BUDGET_CPU_HOURS
    assert "executor kind local (no executor.yaml: the default)" in err and "nothing was submitted" in err
    assert f"over the local budget of {DEFAULT_LOCAL_BUDGET_CPU_HOURS:g} CPU-hours" in err
    assert "cluster guide (docs/cluster.md)" in err and "train units" in err
    assert not store.exists()  # no entry, no log folder, no job: nothing was trained or submitted


def test_the_embedded_default_fits_the_local_budget(tmp_path, cpus_only):
    from pipeline.cost import check_budget

    store = RunStore(tmp_path / "store")
    for kind in ("local", "debug"):
        check_budget(units_of(ROOT / "params.yaml"), store, ExecutorConfig(kind=kind), "train")


def test_the_local_budget_is_a_setting_and_can_be_confirmed(tmp_path, monkeypatch, cpus_only):
    from pipeline.cost import check_budget

    store = RunStore(tmp_path / "store")
    units = [u for u in units_of(ROOT / "configs" / "paper.yaml") if u.config["model"] == "resnet32"][:20]
    with pytest.raises(SystemExit) as refused:
        check_budget(units, store, ExecutorConfig(kind="local"), "train")
    message = str(refused.value)
    hours = float(message.split("about ")[1].split(" CPU-hours")[0])
    # the number to confirm is the next whole hour above the estimate (shown rounded to 0.1: 180.0 may be 179.97)
    confirm = int(message.split("rerun with AWD_CONFIRM_CPU_HOURS=")[1].split(",")[0])
    assert hours - 0.05 < confirm <= hours + 1.05 and "raise budget_cpu_hours" in message
    check_budget(units, store, ExecutorConfig(kind="local", budget_cpu_hours=hours + 1), "train")
    monkeypatch.setenv("AWD_CONFIRM_CPU_HOURS", str(confirm))
    check_budget(units, store, ExecutorConfig(kind="local"), "train")
    monkeypatch.setenv("AWD_CONFIRM_CPU_HOURS", "lots")
    with pytest.raises(SystemExit, match=r"\$AWD_CONFIRM_CPU_HOURS='lots' is not a number of CPU-hours"):
        check_budget(units, store, ExecutorConfig(kind="local"), "train")
    # a slurm executor's guard stays in GPU-hours, at the executor's tflops
    monkeypatch.delenv("AWD_CONFIRM_CPU_HOURS")
    with pytest.raises(SystemExit, match=r"GPU-hours .* over the budget of 0.001 GPU-hours"):
        check_budget(units, store, ExecutorConfig(kind="slurm", budget_gpu_hours=0.001), "train")
    assert not store.root.exists()

    monkeypatch.chdir(tmp_path)
    Path("executor.yaml").write_text("kind: local\nbudget_cpu_hours: 500\n")
    assert load_executor_config().cpu_budget() == 500
    assert ExecutorConfig(kind="local").cpu_budget() == DEFAULT_LOCAL_BUDGET_CPU_HOURS
    Path("executor.yaml").write_text("kind: local\nbudget_cpu_hours: 0\n")
    with pytest.raises(ExecutorConfigError, match=r"executor.yaml: budget_cpu_hours: .*positive number"):
        load_executor_config()


def test_the_dry_run_says_where_units_run_and_that_the_paper_config_would_refuse_here(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "pipeline.dry_run", "--params", "configs/paper.yaml"], cwd=ROOT,
                          env=clean_env(AWD_STORE=str(tmp_path / "store")), capture_output=True, text=True,
                          timeout=600, check=True)
    out = proc.stdout
    where = [line for line in out.splitlines() if line.startswith("where: ")]
    assert [line.split(" run on ")[0].split()[-2] for line in where] == ["train", "autoattack", "prune"], where
    assert all(" run on local: this machine " in line and "assumed (cost model at " in line for line in where)
    assert "budget: " in out and "over budget_cpu_hours (24)" in out and "docs/cluster.md" in out
    assert "lower bound: wall-clock " in out and "nothing was submitted" in out
    assert not (tmp_path / "store").exists()
