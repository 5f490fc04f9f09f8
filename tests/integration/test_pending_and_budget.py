"""Why units are pending, what a stage may spend without confirmation, how grouped units are packed into jobs, and
the environment recorded with every result."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from jobs.driver import _packs, run_units
from jobs.executors import ExecutorConfig, ExecutorConfigError, load_executor_config
from jobs.job import Unit
from jobs.keys import code_digest, config_digest, unit_key
from jobs.snapshot import write_snapshot
from jobs.store import RunStore
from jobs.why import NEW_CONFIG, pending_reasons, summary
from tests.integration.test_snapshot import PROBE, make_project, set_value

ROOT = Path(__file__).resolve().parents[2]


def commit_as_if_computed(store: RunStore, unit: Unit, code: str) -> None:
    """A committed entry for unit's config, computed by `code` (what execute_unit records)."""
    key = unit_key(unit.kind, {"old": unit.key}, code)  # any other key: the old code's entry
    store.commit(unit.kind, key, {"ok": True}, meta={"config": config_digest(unit.config), "code": code})


# -- why pending ------------------------------------------------------------------------------------------------------
def test_pending_reasons_name_the_changed_file_or_a_new_config(tmp_path):
    project = make_project(tmp_path / "checkout")
    store = RunStore(tmp_path / "store")
    old = code_digest("pipeline.units.probe", root=project)
    write_snapshot(store.root, "pipeline.units.probe", old, root=project)
    set_value(project, "after")
    new = code_digest("pipeline.units.probe", root=project)
    seen = Unit("probe", unit_key("probe", {"x": 1}, new), PROBE, {"x": 1, "_where": "/a"}, code=new)
    fresh = Unit("probe", unit_key("probe", {"x": 2}, new), PROBE, {"x": 2}, code=new)
    commit_as_if_computed(store, Unit("probe", "0" * 64, PROBE, {"x": 1, "_where": "/elsewhere"}), old)
    reasons = pending_reasons([seen, fresh], store.root, root=project)
    assert reasons == {seen.key: "awd/probe_value.py changed", fresh.key: NEW_CONFIG}
    assert summary([seen, fresh, seen], reasons, "probe units") == [
        "2 probe units pending because awd/probe_value.py changed", "1 probe units pending: new config"]


def test_dry_run_groups_pending_runs_by_the_code_file_that_changed(tmp_path):
    """Three runs computed by a training loop that differs from today's by one token: the dry run blames it."""
    from pipeline.params import load_params
    from pipeline.suites import independent_runs
    from pipeline.train import TRAIN_FN, unit_for

    copy = tmp_path / "old"
    for pkg in ("awd", "jobs", "pipeline"):
        shutil.copytree(ROOT / pkg, copy / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    train_py = copy / "awd" / "train.py"
    train_py.write_text(train_py.read_text().replace("import math\n", "import math as math\n", 1))
    old = code_digest("pipeline.units.train", root=copy)
    store = RunStore(tmp_path / "store")
    write_snapshot(store.root, "pipeline.units.train", old, root=copy)
    params = load_params(ROOT / "params.yaml")
    units = {u.key: u for u in (unit_for(s, params) for s in independent_runs(params))}
    assert all(u.fn == TRAIN_FN for u in units.values())
    for unit in list(units.values())[:3]:
        commit_as_if_computed(store, unit, old)
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "AWD_STORE": str(store.root)}
    out = subprocess.run([sys.executable, "-m", "pipeline.dry_run", "--list"], cwd=ROOT, env=env,
                         capture_output=True, text=True, check=True).stdout
    assert "  3 training runs pending because awd/train.py changed" in out, out
    assert f"  {len(units) - 3} training runs pending: new config" in out
    assert "  awd/train.py changed (3):" in out and f"  new config ({len(units) - 3}):" in out


# -- spending guard ---------------------------------------------------------------------------------------------------
def paper_units():
    from pipeline.params import load_params
    from pipeline.suites import independent_runs
    from pipeline.train import unit_for

    params = load_params(ROOT / "configs" / "paper.yaml")
    return [unit_for(s, params) for s in independent_runs(params) if s.suite == "grid"]


def test_budget_guard_refuses_with_the_breakdown_and_how_to_confirm(tmp_path, monkeypatch):
    from pipeline.cost import CONFIRM_ENV, check_budget

    monkeypatch.delenv(CONFIRM_ENV, raising=False)
    store = RunStore(tmp_path / "store")
    units = paper_units()
    with pytest.raises(SystemExit) as refused:
        check_budget(units, store, ExecutorConfig(kind="slurm"), "train")
    message = str(refused.value)
    assert message.startswith("train: the new work is about ") and "over the budget of 100 GPU-hours" in message
    assert "train units" in message and "new config" in message and "nothing was submitted" in message
    hours = float(message.split("about ")[1].split(" GPU-hours")[0])
    assert hours > 100
    assert f"rerun with {CONFIRM_ENV}={int(hours) + 1}" in message and "raise budget_gpu_hours" in message
    assert not (store.root / "train").exists()  # nothing written, nothing submitted
    monkeypatch.setenv(CONFIRM_ENV, str(int(hours) + 1))
    check_budget(units, store, ExecutorConfig(kind="slurm"), "train")  # confirmed
    monkeypatch.setenv(CONFIRM_ENV, str(int(hours) - 1))
    with pytest.raises(SystemExit):
        check_budget(units, store, ExecutorConfig(kind="slurm"), "train")  # confirming less is not enough
    monkeypatch.delenv(CONFIRM_ENV)
    check_budget(units, store, ExecutorConfig(kind="slurm", budget_gpu_hours=hours + 1), "train")
    # local and debug on CPUs have their own guard, in CPU-hours: tests/integration/test_local_budget.py


def test_budget_setting_is_validated(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("executor.yaml").write_text("kind: slurm\nbudget_gpu_hours: 0\n")
    with pytest.raises(ExecutorConfigError, match=r"executor.yaml: budget_gpu_hours: must be a positive number"):
        load_executor_config()
    Path("executor.yaml").write_text("kind: slurm\nbudget_gpu_hours: 2500\n")
    assert load_executor_config().gpu_budget() == 2500
    assert ExecutorConfig(kind="slurm").gpu_budget() == 100
    assert ExecutorConfig(kind="local", budget_gpu_hours=5).gpu_budget() is None


# -- grouped packing (AutoAttack shards) --------------------------------------------------------------------------------
def _toy(x, group=""):
    return Unit("toy", unit_key("toy", {"x": x}, "c0de"), "jobfns:record", {"x": x}, group=group)


def test_a_group_runs_in_one_job_and_ungrouped_units_pack_as_before():
    units = [_toy(0, "a"), _toy(1, "a"), _toy(2, "b"), _toy(3), _toy(4), _toy(5, "b")]
    slurm = _packs(units, ExecutorConfig(kind="slurm", units_per_job=2), slots=10)
    assert [[u.config["x"] for u in p] for p in slurm] == [[0, 1], [2, 5], [3, 4]]
    assert _packs(units, ExecutorConfig(kind="slurm", units_per_job=2), slots=2) == slurm[:2]  # max_queued
    local = _packs(units, ExecutorConfig(kind="local", max_parallel=2), slots=2)
    assert sorted(sorted(u.config["x"] for u in p) for p in local) == [[0, 1, 3], [2, 4, 5]]


# -- environment --------------------------------------------------------------------------------------------------------
def test_every_result_records_its_environment(tmp_path):
    import numpy
    import torch

    sys.path.insert(0, str(ROOT / "tests"))
    try:
        unit = Unit("toy", unit_key("toy", {"x": 3}, "c0de"), "jobfns:record",
                    {"x": 3, "counter": str(tmp_path / "count")})
        run_units([unit], tmp_path / "store", ExecutorConfig(kind="debug"), desc="toy")
    finally:
        sys.path.remove(str(ROOT / "tests"))
    env = RunStore(tmp_path / "store").manifest("toy", unit.key)["meta"]["env"]
    assert env["torch"] == torch.__version__.split("+")[0] and env["numpy"] == numpy.__version__
    assert env["python"] == ".".join(map(str, sys.version_info[:3]))
    assert set(env) == {"python", "torch", "torchvision", "pyautoattack", "numpy", "cuda", "gpu"}
    assert env["cuda"] == torch.version.cuda and (env["gpu"] is None) == (not torch.cuda.is_available())
    assert json.dumps(env)  # plain JSON


def test_the_report_shows_the_environments_behind_its_results(tmp_path):
    from pipeline.report.inputs import _environments
    from pipeline.report.readme import _environment_lines

    cpu = {"python": "3.11.2", "torch": "2.14.1", "torchvision": "0.29.1", "pyautoattack": "0.2.0",
           "numpy": "2.4.6", "cuda": None, "gpu": None}
    gpu = dict(cpu, cuda="12.8", gpu="NVIDIA H200")
    for rel, data in {"train/runs.json": [{"env": cpu}, {"env": cpu}, {"env": gpu}],
                      "attack/results.json": [{"env": [gpu, cpu]}],
                      "prune/results.json": [{"amount": 0.0, "env": gpu}, {"amount": 0.5, "env": gpu}]}.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(json.dumps(data))
    envs = _environments(tmp_path)
    assert envs == [(cpu, 3), (gpu, 3)]

    class Inp:
        environments = envs

    lines = _environment_lines(Inp)
    assert lines[1] == "- 3 results: Python 3.11.2, torch 2.14.1, torchvision 0.29.1, pyautoattack 0.2.0, numpy 2.4.6; CPU"
    assert lines[2].endswith("; CUDA 12.8, NVIDIA H200")
