"""The pipeline on the real local SLURM cluster (scripts/local-slurm.sh start), end to end, no mocks.

One throwaway git + DVC repo (tests/e2e_util.make_repo) with an even smaller params file than the local e2e test
and `executor.yaml` `kind: slurm` (one fake GPU and one CPU per job) is built once per module, the hard way:

1. `dvc repro` is interrupted with Ctrl-C (SIGINT to its process group) right after it submitted the training array;
2. a second `dvc repro` re-attaches to the running jobs and is SIGKILLed (driver and DVC) while they still run;
3. a third `dvc repro` finishes the whole DAG.

The tests then check what each step must have left: the cancel hint, results built from GPU job arrays, every unit
run in exactly one SLURM job (nothing submitted twice), AutoAttack shards merged to the unsharded result. The last
of them adds a diverging grid cell to the same repo. Separate tests requeue a training job mid-run with `scontrol
requeue` (it must resume from its checkpoint) and run a driver inside a batch job (its jobs must not inherit its
allocation). The last test needs no cluster: the sbatch script of a stage.

The SLURM tests skip without a cluster unless AWD_REQUIRE_SLURM=1. Jobs a failing test leaves behind are cancelled.
The whole module takes 3-4 minutes on the 2-core test machine.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import typing as tp
from pathlib import Path

import pytest
import submitit
import torch

from jobs.executors import ExecutorConfig, make_executor
from jobs.store import RunStore
from tests.e2e_util import ROOT, VENV_BIN, env, make_repo, reduced_params, run, write_params
from tests.slurm_util import sacct_final_state, sacct_rows, wait_until

TABLES = ("T2", "T3", "T4", "T5", "T6", "F12")
# the test cluster's GPUs are fake (/dev/null): jobs get CUDA_VISIBLE_DEVICES but torch sees no GPU
EXECUTOR_YAML = "kind: slurm\ngpus_per_node: 1\ncheck_gpus: false\ncpus_per_task: 1\ntimeout_min: 15\npoll_s: 1\n"
SACCT_FIELDS = ("JobID", "JobName", "State", "ReqTRES", "AllocTRES", "WorkDir")
FINAL = re.compile(r"^(COMPLETED|FAILED|CANCELLED|TIMEOUT|OUT_OF_MEMORY|NODE_FAIL|PREEMPTED|BOOT_FAIL|DEADLINE)")
STAGE_TIMEOUT_S = 900  # bounds a hang; the whole module takes a few minutes


def tiny_params() -> dict:
    """tests/e2e_util.reduced_params() cut further: 1 epoch, one grid cell, one noise rate, one prune amount, and
    AutoAttack on 10 test examples in 2 shards of one 5-example block each (3 attacked models -> 6 array tasks)."""
    p = reduced_params()
    p["train"]["epochs"] = 1
    p["autoattack"].update(n_test=10, shards=2, batch_size=5, block_size=5)
    p["prune"]["amounts"] = [0.5]
    s = p["suites"]
    s["grid"][0].update(lrs=[0.1], wds=[5.0e-4])
    s["noisy"][0].update(rates=[0.4])
    return p


def slurm_repo(tmp: Path, params: dict | None = None) -> Path:
    repo = make_repo(tmp, params or tiny_params(), executor="slurm")
    (repo / "executor.yaml").write_text(EXECUTOR_YAML)  # ignored by git, like a user's
    return repo


# ------------------------------------------------------------------------------------------------------- helpers
def _as_from_a_terminal() -> None:
    # `make test` runs this tier as a script's background command, where SIGINT is ignored, and an ignored signal
    # survives exec: a terminal's `dvc repro` has SIGINT at its default, so Ctrl-C reaches it whenever it comes
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_driver(repo: Path, log: Path, *args: str) -> subprocess.Popen:
    """`dvc repro` in its own session (process group = its pid), as a terminal would run it."""
    with open(log, "wb") as out:
        return subprocess.Popen([str(VENV_BIN / "dvc"), "repro", *args], cwd=repo, env=env(), stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                                preexec_fn=_as_from_a_terminal)


def entries(store: Path, kind: str, name: str) -> dict[str, Path]:
    """key -> entry dir, for the entries of `kind` holding file `name`."""
    return {p.parent.name: p.parent for p in (store / kind).glob(f"??/*/{name}")}


def committed(store: Path, kind: str) -> dict[str, Path]:
    return entries(store, kind, "manifest.json")


def meta_job_id(entry: Path) -> str:
    return json.loads((entry / "manifest.json").read_text())["meta"]["job_id"]


def repo_jobs(repo: Path) -> list[dict[str, str]]:
    """Every sacct row (-X allocations, -D including earlier runs of requeued jobs) of jobs started from `repo`."""
    out = subprocess.run(["sacct", "-n", "-X", "-D", "-P", "-S", "now-6hours", "-o", ",".join(SACCT_FIELDS)],
                         check=True, capture_output=True, text=True, timeout=30).stdout
    rows = [dict(zip(SACCT_FIELDS, line.split("|"))) for line in out.splitlines() if line.strip()]
    return [r for r in rows if r["WorkDir"] == str(repo)]


def final_repo_jobs(repo: Path, n: int, timeout: float = 60) -> list[dict[str, str]]:
    """repo_jobs once accounting lists at least `n` tasks, each on its own row and in a final state."""

    def ready():
        rows = repo_jobs(repo)
        settled = all(FINAL.match(r["State"]) and "[" not in r["JobID"] for r in rows)
        return rows if settled and len(rows) >= n else None

    try:
        return wait_until(ready, timeout, interval=1, what=f"sacct to list {n} finished jobs from {repo}")
    except TimeoutError:
        pytest.fail(f"sacct does not list {n} finished jobs from {repo}: {repo_jobs(repo)}")


def cancel_jobs_under(root: Path) -> None:
    """scancel whatever this module left queued or running (jobs whose working directory is under `root`)."""
    out = subprocess.run(["squeue", "-h", "-o", "%i|%Z"], capture_output=True, text=True, timeout=30).stdout
    ids = [line.split("|")[0] for line in out.splitlines()
           if "|" in line and Path(line.split("|", 1)[1]).is_relative_to(root)]
    if ids:
        subprocess.run(["scancel", *ids], capture_output=True, timeout=30)


def _log_text(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


def unit_counts(params: dict, repo: Path) -> tuple[int, int]:
    """(distinct phase-1 training units, phase-2 natural AWD runs) of `params`."""
    from pipeline.params import validate
    from pipeline.suites import independent_runs, natural_fixed
    from pipeline.train import unit_for

    p = validate(params, source="tiny params")
    return len({unit_for(s, p).key for s in independent_runs(p)}), len(natural_fixed(p))


# ------------------------------------------------------------------------------------------------------- the build
@dataclasses.dataclass
class Built:
    repo: Path
    store: Path
    n_phase1: int
    n_phase2: int
    sigint_rc: int
    sigint_out: str
    in_flight_at_sigint: set[str]
    reattach_out: str
    in_flight_at_kill: set[str]
    final_out: str
    jobs: list[dict[str, str]]
    seconds: dict[str, float]


def _in_flight(store: Path) -> set[str]:
    return set(entries(store, "train", "job.json")) - set(committed(store, "train"))


def _build(repo: Path, tmp: Path) -> Built:
    store = repo / "runs"
    n_phase1, n_phase2 = unit_counts(tiny_params(), repo)
    seconds: dict[str, float] = {}
    t0 = time.monotonic()

    # 1. Ctrl-C once the training array is submitted and recorded
    log1 = tmp / "driver1.log"
    driver = start_driver(repo, log1)
    try:
        wait_until(lambda: driver.poll() is not None or len(entries(store, "train", "job.json")) >= n_phase1,
                   STAGE_TIMEOUT_S, interval=0.2, what="the training array to be submitted")
        assert driver.poll() is None, f"dvc repro ended before it was interrupted:\n{_log_text(log1)[-3000:]}"
        in_flight_at_sigint = _in_flight(store)
        os.killpg(driver.pid, signal.SIGINT)
        sigint_rc = driver.wait(timeout=120)
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
    seconds["submit+sigint"] = time.monotonic() - t0

    # 2. a second driver re-attaches; SIGKILL it (dvc and the stage) while the jobs still run
    log2 = tmp / "driver2.log"
    driver = start_driver(repo, log2)
    try:
        wait_until(lambda: driver.poll() is not None or "re-attached to" in _log_text(log2), STAGE_TIMEOUT_S,
                   interval=0.2, what="the second dvc repro to re-attach")
        in_flight_at_kill = _in_flight(store)
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait(timeout=60)
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
    seconds["reattach+kill"] = time.monotonic() - t0 - seconds["submit+sigint"]

    # 3. the third one finishes the DAG
    t3 = time.monotonic()
    final = run(repo, "dvc", "repro", timeout=STAGE_TIMEOUT_S)
    seconds["final repro"] = time.monotonic() - t3
    n_units = sum(len(committed(store, kind)) for kind in ("train", "autoattack", "prune"))
    jobs = final_repo_jobs(repo, n_units)
    seconds["total"] = time.monotonic() - t0
    return Built(repo, store, n_phase1, n_phase2, sigint_rc, _log_text(log1), in_flight_at_sigint,
                 _log_text(log2), in_flight_at_kill, final.stdout + final.stderr, jobs, seconds)


@pytest.fixture(scope="module")
def built(slurm_cluster, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("slurm-e2e")
    try:
        b = _build(slurm_repo(tmp), tmp)
        print(f"slurm e2e build: {', '.join(f'{k} {v:.0f}s' for k, v in b.seconds.items())}")
        yield b
    finally:
        cancel_jobs_under(tmp)


# ------------------------------------------------------------------------------------------------------- tests
@pytest.mark.slurm
@pytest.mark.e2e
def test_ctrl_c_leaves_jobs_running_and_says_how_to_cancel_them(built):
    out = built.sigint_out
    assert built.sigint_rc != 0, out[-3000:]
    assert built.in_flight_at_sigint, "every training unit was done before Ctrl-C: the test proves nothing"
    assert "Interrupted:" in out and "keep running" in out, out[-3000:]
    ids = re.search(r"cancel them: scancel ((?:\d+_\d+ ?)+)", out)
    assert ids, out[-3000:]
    recorded = {json.loads((e / "job.json").read_text())["job_id"]
                for e in entries(built.store, "train", "job.json").values()}
    assert set(ids.group(1).split()) <= recorded  # the ids printed are the training jobs the store records
    assert f"-m jobs cancel --store {built.store} --kind train" in out, out[-3000:]


@pytest.mark.slurm
@pytest.mark.e2e
def test_dvc_repro_on_slurm_builds_results_from_gpu_job_arrays(built):
    repo = built.repo
    for table in TABLES:
        assert (repo / "results" / "tables" / f"{table}.md").stat().st_size > 0, table
    assert list((repo / "results" / "plots").glob("*.png"))
    assert json.loads((repo / "results" / "metrics.json").read_text())
    status = run(repo, "dvc", "status").stdout  # nothing pending in the store: no stage is listed (pipeline/pending.py)
    assert "changed deps" not in status and "changed outs" not in status and "aggregate" not in status, status

    train = [r for r in built.jobs if r["JobName"] == "awd-train"]
    assert train and all(re.fullmatch(r"\d+_\d+", r["JobID"]) for r in train), train
    (base,) = {r["JobID"].split("_")[0] for r in train}  # phase 1: one array, submitted by the first driver
    assert sorted(int(r["JobID"].split("_")[1]) for r in train) == list(range(built.n_phase1))
    names = {r["JobName"] for r in built.jobs}
    assert {"awd-train", "awd-train-awd-with-estimated-dog", "awd-attack", "awd-prune"} <= names, names
    for r in built.jobs:  # every job asked for one GPU and was given one
        assert "gres/gpu=1" in r["ReqTRES"] and "gres/gpu=1" in r["AllocTRES"], r
        assert r["State"] == "COMPLETED", r

    # jobs run the repo's .venv interpreter, from the repo (sacct WorkDir), so they import its packages
    scripts = list((built.store / "_logs").glob("*/*/*_submission.sh"))
    assert len(scripts) >= 4, scripts
    for script in scripts:
        text = script.read_text()
        assert f"{VENV_BIN / 'python'} -u -m jobs.owned_submission" in text, text
        assert "#SBATCH --gpus-per-node=1" in text and "#SBATCH --cpus-per-task=1" in text, text


@pytest.mark.slurm
@pytest.mark.e2e
def test_killed_driver_then_rerun_submits_nothing_twice(built):
    assert "re-attached to" in built.reattach_out, built.reattach_out[-3000:]
    assert built.in_flight_at_kill, "no training unit was in flight when the driver was killed: nothing proven"
    store = built.store
    train_entries = committed(store, "train")
    assert len(train_entries) == built.n_phase1 + built.n_phase2
    # each unit ran in exactly one SLURM job/array task, and no job ran that committed nothing
    train_jobs = [r["JobID"] for r in built.jobs if r["JobName"].startswith("awd-train")]
    assert len(train_jobs) == len(set(train_jobs)) == len(train_entries), train_jobs
    assert {meta_job_id(e) for e in train_entries.values()} == set(train_jobs)
    all_entries = [e for kind in ("train", "autoattack", "prune") for e in committed(store, kind).values()]
    assert len(built.jobs) == len({r["JobID"] for r in built.jobs}) == len(all_entries), built.jobs
    assert {meta_job_id(e) for e in all_entries} == {r["JobID"] for r in built.jobs}
    # and started once: the job logs say "start" once per unit
    starts: dict[str, int] = {}
    for err in (store / "_logs").glob("*/*/*_log.err"):
        for key in re.findall(r"\((?:train|autoattack|prune)/([0-9a-f]{64})\): start", err.read_text()):
            starts[key] = starts.get(key, 0) + 1
    assert starts == {e.name: 1 for e in all_entries}


@pytest.mark.slurm
@pytest.mark.e2e
def test_autoattack_shards_ran_as_separate_tasks_and_merge_to_the_one_shard_result(built, tmp_path):
    from awd.autoattack import load_shard
    from pipeline.units.autoattack import autoattack_unit

    results = json.loads((built.repo / "artifacts" / "attack" / "results.json").read_text())
    shards: dict[str, list[tuple[dict, Path]]] = {}
    for entry in committed(built.store, "autoattack").values():
        config = json.loads((entry / "config.json").read_text())
        shards.setdefault(config["train_key"], []).append((config, entry))
    assert {r["key"] for r in results} == set(shards)
    store = RunStore(built.store)
    # a model listed by two suites (a Table 4 row reusing a Table 3 sweep run) was attacked once
    for rec in {r["key"]: r for r in results}.values():
        parts = sorted(shards[rec["key"]], key=lambda ce: ce[0]["start"])
        assert len(parts) == 2 and [c["start"] for c, _ in parts] == [0, 5] and parts[-1][0]["stop"] == 10, parts
        jobs = [meta_job_id(e) for _, e in parts]
        assert len(set(jobs)) == len(jobs) and all(j.split("_")[0] == jobs[0].split("_")[0] for j in jobs), jobs
        robust = torch.cat([load_shard(e / "shard.pt")["correct"] for _, e in parts])
        clean = torch.cat([load_shard(e / "shard.pt")["clean_correct"] for _, e in parts])
        assert rec["n"] == 10 and rec["robust_acc"] == robust.sum().item() / 10 and \
            rec["clean_acc"] == clean.sum().item() / 10, rec
        # the same model attacked as a single shard, in this process, gives the same per-example outcome
        whole = dict(parts[0][0], start=0, stop=10)
        workdir = tmp_path / rec["key"]
        workdir.mkdir()
        one = autoattack_unit(whole, workdir, store)
        single = load_shard(workdir / "shard.pt")
        assert torch.equal(single["correct"], robust) and torch.equal(single["clean_correct"], clean), rec
        assert one["robust_correct"] == robust.sum().item() and one["clean_correct"] == clean.sum().item()


@pytest.mark.slurm
@pytest.mark.e2e
def test_diverging_run_is_recorded_as_a_result_while_the_others_finish(built):
    """Runs last: it edits the module's repo (a diverging grid cell next to a new good one)."""
    repo, store = built.repo, built.store
    params = tiny_params()
    params["suites"]["grid"][0]["lrs"] = [0.1, 1.0e6, 0.05]
    write_params(repo, params)
    before = set(committed(store, "train"))
    proc = run(repo, "dvc", "repro", "train", check=False, timeout=STAGE_TIMEOUT_S)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "1 diverged (a result: marked in the tables, never retried)" in out, out[-3000:]
    new = set(committed(store, "train")) - before
    by_lr = {json.loads((committed(store, "train")[k] / "config.json").read_text())["lr"]: k for k in new}
    assert sorted(by_lr) == [0.05, 1.0e6], by_lr
    result = json.loads((committed(store, "train")[by_lr[1.0e6]] / "result.json").read_text())
    assert result["diverged"] is True and result["diverged_epoch"] >= 1
    log = json.loads((committed(store, "train")[by_lr[1.0e6]] / "job.json").read_text())["log_paths"]["stdout"]
    assert log.startswith(str(RunStore(store).log_dir("train"))) and "diverged: training loss became non-finite" in \
        Path(log).read_text()


@pytest.mark.slurm
def test_requeued_training_job_resumes_from_its_checkpoint(slurm_cluster, tmp_path, monkeypatch):
    """`scontrol requeue` kills a running training job and queues it again: the rerun resumes from last.pt."""
    from jobs.driver import run_units
    from pipeline.params import validate
    from pipeline.suites import independent_runs
    from pipeline.train import unit_for

    # ~0.3 s an epoch on an idle core: the job must outlive the ~4 s SLURM takes to kill it after the requeue
    # (submitit ignores SIGTERM; srun waits, then SIGKILLs), or it finishes first and there is nothing to resume
    epochs, batch_size = 60, 32
    monkeypatch.setenv("AWD_CHECKPOINT_EVERY_S", "0")  # a checkpoint every epoch: the job inherits it
    repo = slurm_repo(tmp_path)
    run(repo, "python", "-m", "pipeline.prepare")
    monkeypatch.chdir(repo)  # jobs run where they are submitted from: the repo
    params = validate(tiny_params(), source="tiny params")
    spec = next(s for s in independent_runs(params) if s.suite == "natural")
    unit = unit_for(dataclasses.replace(spec, config=dict(spec.config, epochs=epochs, batch_size=batch_size)), params)
    store = RunStore(tmp_path / "store")
    cfg = ExecutorConfig(kind="slurm", gpus_per_node=1, check_gpus=False, cpus_per_task=1, timeout_min=15, poll_s=1)
    outcome: dict[str, tp.Any] = {}

    def drive():
        try:
            outcome["results"] = run_units([unit], store, cfg, desc="train", stream=io.StringIO())
        except BaseException as e:  # noqa: BLE001 -- reported by the test thread
            outcome["error"] = e

    driver = threading.Thread(target=drive, daemon=True)
    driver.start()
    entry = store.path("train", unit.key)
    try:
        def epochs_done() -> int:
            try:
                return len(json.loads((entry / "history.json").read_text()))
            except (OSError, ValueError):
                return 0

        wait_until(lambda: epochs_done() >= 1 or not driver.is_alive(), 300, interval=0.1,
                   what="the first epoch of the training job")
        assert driver.is_alive() and epochs_done() < epochs, (outcome, epochs_done())
        job_id = store.job_record("train", unit.key)["job_id"]
        subprocess.run(["scontrol", "requeue", job_id], check=True, capture_output=True, text=True)
        at_requeue = epochs_done()
        driver.join(timeout=300)
        assert not driver.is_alive(), "the driver did not see the requeued job finish"
    except BaseException:
        cancel_jobs_under(tmp_path)  # not on success: a job still COMPLETING would end up CANCELLED in sacct
        raise
    assert "error" not in outcome, outcome.get("error")
    assert outcome["results"][unit.key]["epochs_run"] == epochs
    history = json.loads((entry / "history.json").read_text())
    assert [row["epoch"] for row in history] == list(range(1, epochs + 1))

    log = Path(store.job_record("train", unit.key)["log_paths"]["stdout"]).read_text()
    resumed = re.findall(r"resumed from epoch (\d+)", log)
    assert len(resumed) == 1, log
    k = int(resumed[0])
    assert at_requeue <= k < epochs, (at_requeue, k, log)
    first_run, rerun = log.split(f"resumed from epoch {k}")
    epoch_lines = rf"^epoch (\d+)/{epochs} "
    assert all(int(e) <= k for e in re.findall(epoch_lines, first_run, re.M)), first_run
    # the rerun trained only the epochs after the checkpoint
    assert [int(e) for e in re.findall(epoch_lines, rerun, re.M)] == list(range(k + 1, epochs + 1)), rerun
    sacct_final_state(job_id)
    runs = sacct_rows(job_id, "JobID", "State", duplicates=True)
    assert [r["State"] for r in runs][-2:] == ["REQUEUED", "COMPLETED"], runs
    assert meta_job_id(entry) == job_id


DRIVER = """
import sys
from jobs.executors import ExecutorConfig
from jobs.keys import unit_key
from jobs.driver import run_units
from jobs.job import Unit

store, counter = sys.argv[1:]
config = {"x": 21, "counter": counter}
unit = Unit("toy", unit_key("toy", config, "c0de"), "jobfns:record", config)
cfg = ExecutorConfig(kind="slurm", cpus_per_task=1, mem_gb=1, timeout_min=5, poll_s=1)
print("result:", run_units([unit], store, cfg, desc="nested")[unit.key])
"""


@pytest.mark.slurm
def test_driver_inside_a_slurm_job_submits_jobs_that_do_not_inherit_its_allocation(slurm_cluster, tmp_path):
    """Where login nodes forbid long processes the driver runs as a batch job (README: the cluster guide). Its jobs must not
    inherit its SLURM_* variables: with the driver's --mem-per-cpu next to a job's --mem, srun in the job dies."""
    driver, out, store = tmp_path / "driver.py", tmp_path / "driver.out", tmp_path / "store"
    driver.write_text(DRIVER)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "tests"), str(ROOT)]))  # jobfns, jobs
    cmd = ["sbatch", "--parsable", "--job-name=awd-driver-test", "--cpus-per-task=1", "--mem-per-cpu=200M",
           "--time=5", f"--output={out}", f"--chdir={tmp_path}",
           f"--wrap={sys.executable} {driver} {store} {tmp_path / 'counter'}"]
    parent = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout.strip()
    try:
        state = sacct_final_state(parent, timeout=300)
    except BaseException:
        cancel_jobs_under(tmp_path)
        raise
    assert state == "COMPLETED", _log_text(out)
    assert "result: {'double': 42}" in _log_text(out), _log_text(out)
    (entry,) = committed(store, "toy").values()
    child = meta_job_id(entry)
    assert sacct_final_state(child) == "COMPLETED"

    def accounted():  # ReqTRES reaches accounting a moment after the state
        (row,) = sacct_rows(child, "JobID", "ReqTRES")
        return row if row["ReqTRES"] else None

    assert "mem=1G" in wait_until(accounted, 30, what=f"sacct ReqTRES of job {child}")["ReqTRES"]


def test_sbatch_script_names_the_stage_and_drops_false_options(tmp_path, monkeypatch):
    """No cluster needed: the script make_executor writes for a stage."""
    monkeypatch.setattr(submitit.SlurmExecutor, "affinity", classmethod(lambda cls: 2))  # pretend srun exists
    cfg = ExecutorConfig(kind="slurm", gpus_per_node=1, extra={"requeue": True, "exclusive": False})
    text = make_executor(cfg, tmp_path / "_logs" / "attack")._make_submission_file_text("python -m x", "uid")
    assert "#SBATCH --job-name=awd-attack" in text and "#SBATCH --requeue" in text, text
    assert "exclusive" not in text, text
    cfg = ExecutorConfig(kind="slurm", extra={"job-name": "mine"})
    text = make_executor(cfg, tmp_path / "_logs" / "train")._make_submission_file_text("python -m x", "uid")
    assert "#SBATCH --job-name=mine" in text and "awd-train" not in text, text
