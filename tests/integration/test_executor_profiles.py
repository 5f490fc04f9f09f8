"""Resources per kind of unit: profiles in executor.yaml, --time from the estimate, GPUs that must be visible."""

from __future__ import annotations

import io
import re
import subprocess
import sys
from pathlib import Path

import pytest

import jobs.driver as submit_mod
import jobs.executors as ex
from jobs import ExecutorConfig, ExecutorConfigError, RunStore, Unit, load_executor_config, unit_key
from jobs.progress import Progress

YAML = """\
kind: slurm
partition: gpu
gpus_per_node: 1
mem_gb: 32
timeout_min: 720
time_safety_factor: 2
max_retries: 3
profiles:
  autoattack: {mem_gb: 16, max_retries: 5}
  prune: {gpus_per_node: 1, units_per_job: 8, timeout_min: 60}
"""


def test_profiles_replace_the_shared_settings_for_their_kind_only(tmp_path):
    path = tmp_path / "executor.yaml"
    path.write_text(YAML)
    cfg = load_executor_config(path)
    assert (cfg.for_kind("train").mem_gb, cfg.for_kind("train").max_retries) == (32, 3)
    aa = cfg.for_kind("autoattack")
    assert (aa.mem_gb, aa.max_retries, aa.partition, aa.timeout_min) == (16, 5, "gpu", 720)
    assert (cfg.for_kind("prune").units_per_job, cfg.for_kind("prune").timeout_min) == (8, 60)


@pytest.mark.parametrize("profiles, message", [
    ({"train": {"mem_gp": 3}}, "profiles.train.mem_gp: unknown key 'mem_gp' (did you mean 'mem_gb'?)"),
    ({"train": {"max_queued": 3}}, "profiles.train.max_queued: can only be set at the top level"),
    ({"train": {"mem_gb": -1}}, "profiles.train.mem_gb: must be a positive number, got -1"),
    ({"train": 5}, "profiles.train: must be a mapping of settings, got 5"),
    ({"Train!": {}}, "profiles: maps unit kinds (train, autoattack, prune, ...) to settings, got kind 'Train!'"),
])
def test_bad_profiles_are_refused_naming_the_key(tmp_path, profiles, message):
    with pytest.raises(ExecutorConfigError, match=re.escape(message)):
        ExecutorConfig(kind="slurm", profiles=profiles)


@pytest.mark.parametrize("estimate_s, partition_limit, expected", [
    (60, None, 15),          # 2 x 1 min + 5 min start-up -> the 15 min step: backfills
    (3600, None, 240),       # 2 h + 5 min -> the 240 min step
    (5 * 3600, None, 720),   # capped by timeout_min
    (60, 10, 10),            # capped by the partition's MaxTime
])
def test_time_from_the_estimate_times_the_safety_factor_clamped(estimate_s, partition_limit, expected):
    cfg = ExecutorConfig(kind="slurm", timeout_min=720, time_safety_factor=2)
    got = ex.unit_time_min(cfg, estimate_s, partition_limit)
    assert got == expected
    assert ex.unit_time_min(ExecutorConfig(kind="slurm"), estimate_s, None) is None  # no factor: timeout_min


@pytest.mark.parametrize("text, minutes", [("1-00:00:00", 1440), ("12:00:00", 720), ("30:00", 30), ("45", 45),
                                           ("2-03:30", 3090), ("1-12", 2160), ("infinite", None),
                                           ("UNLIMITED", None)])
def test_slurm_time_limits_parse(text, minutes):
    assert ex._slurm_minutes(text) == minutes


def test_units_are_submitted_in_one_array_per_resource_request(tmp_path, use_backend):
    use_backend("slurm", partition_limit_min=600)
    cfg = ExecutorConfig(kind="slurm", timeout_min=720, time_safety_factor=2, mem_gb=8,
                         profiles={"prune": {"mem_gb": 4}})
    d = submit_mod._Driver(RunStore(tmp_path / "runs"), cfg, "x", Progress(1, 0, "x", io.StringIO()), None)

    def unit(kind, x, estimate):
        return Unit(kind, unit_key(kind, {"x": x}, "c0de"), "jobfns:record", {"x": x}, estimate_s=estimate)

    short, long_, none, pruned = unit("train", 1, 60), unit("train", 2, 10 * 3600), unit("train", 3, None), \
        unit("prune", 4, 60)
    assert (d.unit_cfg(short).timeout_min, d.unit_cfg(short).mem_gb) == (15, 8)
    assert d.unit_cfg(long_).timeout_min == 600  # the partition's limit
    assert d.unit_cfg(none).timeout_min == 720
    assert (d.unit_cfg(pruned).timeout_min, d.unit_cfg(pruned).mem_gb) == (15, 4)
    d.retry.mem[short.key] = 12.0  # after an out-of-memory end
    assert d.unit_cfg(short).mem_gb == 12.0


def test_a_job_that_asked_for_a_gpu_and_sees_none_fails_clearly():
    code = ("import os; os.environ['CUDA_VISIBLE_DEVICES'] = ''; from jobs.job import check_gpus_visible; "
            "check_gpus_visible(0); print('no GPU asked: fine'); check_gpus_visible(1)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[2])
    assert proc.returncode != 0 and "no GPU asked: fine" in proc.stdout
    assert "RuntimeError: this job asked for 1 GPU(s) but torch sees none (CUDA_VISIBLE_DEVICES=''" in proc.stderr


def test_batches_carry_the_gpu_request_unless_checks_are_off(tmp_path, use_backend):
    batches = []

    class Executor:
        def submit_array(self, group):
            batches.extend(group)
            raise RuntimeError("stop here")

    use_backend("slurm", lambda cfg, log_dir: Executor())
    store = RunStore(tmp_path / "runs")
    pack = [[Unit("toy", unit_key("toy", {"x": 1}, "c0de"), "jobfns:record", {"x": 1})]]
    submit_mod._submit(pack, store, ExecutorConfig(kind="slurm", gpus_per_node=2), "x", ex.JobWatch())
    submit_mod._submit(pack, store, ExecutorConfig(kind="slurm", gpus_per_node=2, check_gpus=False), "x",
                       ex.JobWatch())
    assert [b.gpus for b in batches] == [2, 0]
