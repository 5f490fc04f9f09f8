"""executor.yaml against the live local SLURM cluster (scripts/local-slurm.sh): settings the cluster cannot honour are
refused by `dvc repro` before any job exists, naming the key; sbatch's own refusals are classified with the key to
change and end the stage at once; `awd-bench init` writes a file that `awd-bench check` passes unchanged.

"No job" is what sacct says: no job whose working directory is this test's repository. The time from `dvc repro`
to each refusal is printed (`-s` shows it) and written to `refusal_seconds.json` beside the repository; no test
asserts a duration.
"""

from __future__ import annotations

import io
import json
import subprocess
import time
from pathlib import Path

import pytest

import jobs.driver as driver
from jobs import ExecutorConfig, RunStore, backends
from jobs.backends.slurm import Site, SlurmBackend
from jobs.cluster_check import check_cluster
from jobs.executor_config import load_executor_config
from jobs.sbatch_errors import FIX, classify
from tests.e2e_util import VENV_BIN, env, make_repo, run
from tests.integration.test_submit_local import make_units
from tests.slurm.test_slurm_pipeline import cancel_jobs_under, tiny_params
from tests.slurm_util import SlurmCluster

pytestmark = pytest.mark.slurm
BASE = "kind: slurm\ngpus_per_node: 1\ncheck_gpus: false\ncpus_per_task: 1\ntimeout_min: 15\npoll_s: 1\n"


def jobs_from(root: Path, since: str) -> list[str]:
    """sacct's jobs (allocations) submitted since `since` whose working directory is under `root`."""
    out = subprocess.run(["sacct", "-X", "-n", "-P", "-a", "-o", "JobID,WorkDir", "-S", since], capture_output=True,
                         text=True, timeout=30, check=True).stdout
    return [line.split("|")[0] for line in out.splitlines()
            if "|" in line and Path(line.split("|", 1)[1] or "/").is_relative_to(root)]


@pytest.fixture(scope="module")
def repo(slurm_cluster: SlurmCluster, tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("cluster-check")
    path = make_repo(tmp, tiny_params(), executor="slurm")
    (path / "executor.yaml").write_text(BASE)
    run(path, "dvc", "repro", "prepare")  # the stage before train, done once: each case times train's refusal
    try:
        yield path
    finally:
        cancel_jobs_under(tmp)


BAD = {  # key -> (the line that breaks it, what the refusal must say)
    "partition": ("partition: gpuu\n", "partition: no partition 'gpuu' on this cluster"),
    "account": ("account: no_such_account\n", "account: no account 'no_such_account' in the accounting database"),
    "qos": ("qos: no_such_qos\n", "qos: no QOS 'no_such_qos' on this cluster"),
    "gpus_per_node": ("gpus_per_node: 64\n", "gpus_per_node: 64 GPU(s) per job, but no node of partition"),
    "constraint": ("constraint: a100\n", "constraint: no node of partition"),
}


@pytest.mark.parametrize("key", list(BAD))
def test_a_setting_the_cluster_cannot_honour_stops_dvc_repro_naming_the_key_before_any_job(repo, key):
    line, says = BAD[key]
    text = BASE.replace("gpus_per_node: 1\n", "") if key == "gpus_per_node" else BASE
    (repo / "executor.yaml").write_text(text + line)
    since = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(time.time() - 1))
    start = time.monotonic()
    proc = run(repo, "dvc", "repro", check=False, timeout=600)
    seconds = time.monotonic() - start
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert f"ERROR: executor.yaml: {says}" in out, out[-3000:]
    assert "nothing was submitted" in out
    assert jobs_from(repo, since) == []
    logs = repo / "runs" / "_logs"
    assert not list(logs.rglob("*submission*")) if logs.exists() else True
    assert not list((repo / "runs").rglob("job.json"))
    times = repo.parent / "refusal_seconds.json"
    measured = json.loads(times.read_text()) if times.exists() else {}
    times.write_text(json.dumps({**measured, key: round(seconds, 1)}, indent=1))
    print(f"dvc repro refused {key} after {seconds:.1f} s")


@pytest.mark.parametrize("option, key", [("--partition=gpuu", "partition"), ("--account=no_such_account", "account"),
                                         ("--qos=no_such_qos", "qos"), ("--constraint=a100", "constraint"),
                                         ("--gres=gpx:1", "gres")])
def test_sbatch_s_own_refusals_are_classified_with_the_key_to_change(tmp_path, option, key):
    since = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(time.time() - 1))
    proc = subprocess.run(["sbatch", "--hold", "-J", "awd-refusal", option, "--wrap", "true"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    accepted = proc.stdout.split()[-1] if proc.returncode == 0 else None
    if accepted:
        subprocess.run(["scancel", accepted], timeout=30)
    assert accepted is None, f"the cluster accepted {option}: {proc.stdout}"
    verdict = classify(proc.stderr)
    assert verdict.action == FIX and key in verdict.keys and verdict.words in proc.stderr.replace("\n", " / ")
    assert jobs_from(tmp_path, since) == []


class UncheckedSite(Site):
    """The cluster itself, but with the start-up check unanswered."""

    def preflight(self, cfg, say):
        return None


def test_when_the_check_cannot_run_sbatch_s_refusal_still_ends_the_stage_at_once(tmp_path, monkeypatch):
    """With the start-up check unanswered (scheduler commands failing), the first sbatch refusal is final: the
    driver stops at once with sbatch's words and the key, instead of retrying for an hour."""
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1]))  # the units' functions: tests/jobfns.py
    monkeypatch.chdir(tmp_path)
    since = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(time.time() - 1))
    cfg = ExecutorConfig(kind="slurm", partition="gpuu", cpus_per_task=1, timeout_min=5, poll_s=0.5)
    previous = backends.use("slurm", SlurmBackend(site=UncheckedSite()))
    try:
        with pytest.raises(driver.SubmitRejected) as info:
            driver.run_units_report(make_units(tmp_path, [1]), RunStore(tmp_path / "runs"), cfg, desc="toy",
                                    stream=io.StringIO())
    finally:
        backends.use("slurm", previous)
    assert "Invalid partition name specified; change `partition` in ExecutorConfig" in str(info.value)
    assert jobs_from(tmp_path, since) == []


def test_awd_bench_init_writes_a_file_that_check_passes_unchanged(tmp_path, slurm_cluster: SlurmCluster):
    (tmp_path / "params.yaml").write_text((Path(__file__).parents[2] / "params.yaml").read_text())
    awd = str(VENV_BIN / "awd-bench")
    init = subprocess.run([awd, "init"], cwd=tmp_path, env=env(), capture_output=True, text=True, timeout=120)
    assert init.returncode == 0, init.stderr
    cfg = load_executor_config(tmp_path / "executor.yaml")
    assert (cfg.kind, cfg.partition, cfg.gpus_per_node) == ("slurm", slurm_cluster.partition, 1)
    assert cfg.cpus_per_task <= slurm_cluster.cpus and check_cluster(cfg).problems == []
    check = subprocess.run([awd, "check"], cwd=tmp_path, env=env(), capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, check.stderr
    assert "executor.yaml: ok (kind slurm), checked against the cluster:" in check.stdout
    assert "sbatch --test-only: accepted" in check.stdout
    again = subprocess.run([awd, "init"], cwd=tmp_path, env=env(), capture_output=True, text=True, timeout=120)
    assert again.returncode == 1 and "executor.yaml exists: not replaced" in again.stderr
