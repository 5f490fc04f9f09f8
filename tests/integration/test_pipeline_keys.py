"""Keys of the pipeline's real units: what a run computes changes its key; where it runs or reads from does not."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from pipeline.common import make_unit
from pipeline.params import load_params
from pipeline.suites import independent_runs
from pipeline.train import TRAIN_FN, unit_for

ROOT = Path(__file__).resolve().parents[2]


def _specs():
    return independent_runs(load_params(ROOT / "params.yaml"))


def test_keys_are_distinct_per_distinct_config_and_shared_by_identical_cells():
    specs = _specs()
    params = load_params(ROOT / "params.yaml")
    keys = {}
    for spec in specs:
        key = unit_for(spec, params).key
        keys.setdefault(key, set()).add(repr(sorted(spec.config.items())))
    assert all(len(configs) == 1 for configs in keys.values())  # one key <-> one config
    assert len(keys) < len(specs)  # identical cells of different suites share a trained run


def test_input_locations_and_executor_never_change_a_key(monkeypatch, tmp_path):
    spec = _specs()[0]
    base = make_unit("train", TRAIN_FN, dict(spec.config, _prepared="/a/x.npz", _data_root="/a"))
    moved = make_unit("train", TRAIN_FN, dict(spec.config, _prepared="/b/y.npz", _data_root="/elsewhere"))
    assert base.key == moved.key
    monkeypatch.setenv("AWD_EXECUTOR", "slurm")
    (tmp_path / "executor.yaml").write_text("kind: slurm\npartition: gpu\ngpus_per_node: 4\n")
    monkeypatch.chdir(tmp_path)
    assert make_unit("train", TRAIN_FN, dict(spec.config, _prepared="/a/x.npz", _data_root="/a")).key == base.key


def test_a_changed_config_value_changes_the_key():
    spec = _specs()[0]
    a = make_unit("train", TRAIN_FN, spec.config)
    b = make_unit("train", TRAIN_FN, dict(spec.config, lr=spec.config["lr"] * 2))
    assert a.key != b.key


def _key_in_copy(tmp_path: Path, edit=None) -> str:
    copy = tmp_path / "copy"
    for name in ("awd", "jobs", "pipeline", "params.yaml"):
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, copy / name)
    if edit:
        edit(copy)
    # the key alone: no run-time estimate (that would import torch to count the model's operations)
    code = ("from pipeline.params import load_params; from pipeline.suites import independent_runs; "
            "from pipeline.plan import unit_for; p = load_params('params.yaml'); "
            "print(unit_for(independent_runs(p)[0], p, estimate=False).key)")
    out = subprocess.run([sys.executable, "-c", code], cwd=copy, capture_output=True, text=True, check=True,
                         env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(copy)})
    shutil.rmtree(copy)
    return out.stdout.strip()


def test_code_a_run_depends_on_changes_its_key_and_unrelated_code_does_not(tmp_path):
    base = _key_in_copy(tmp_path)
    assert _key_in_copy(tmp_path, lambda c: (c / "awd" / "weight_decay.py").write_text(
        (c / "awd" / "weight_decay.py").read_text() + "\nCHANGED = 1\n")) != base
    assert _key_in_copy(tmp_path, lambda c: (c / "awd" / "weight_decay.py").write_text(
        (c / "awd" / "weight_decay.py").read_text() + "\n# only a comment\n")) == base
    assert _key_in_copy(tmp_path, lambda c: (c / "pipeline" / "aggregate.py").write_text(
        (c / "pipeline" / "aggregate.py").read_text() + "\n# changed\n")) == base
