"""run_units with the debug and local executors, re-attaching, concurrent drivers, and executor settings."""

import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import submitit

import jobs.driver as submit_mod
import jobs.unit_driver as loop
from jobs import ExecutorConfig, RunStore, Unit, UnitsFailed, dry_run, run_units, unit_key
from jobs.driver import _packs
from jobs.executors import ExecutorConfigError, load_executor_config, make_executor
from jobs.progress import estimate_eta_s
from jobs.submission import sigint_deferred

TESTS = Path(__file__).resolve().parents[1]
REPO = TESTS.parent
LOCAL = ExecutorConfig(kind="local", max_parallel=2, poll_s=0.2)
DEBUG = ExecutorConfig(kind="debug")


@pytest.fixture(autouse=True)
def importable_jobfns(monkeypatch):
    # job subprocesses import the unit functions by name, so they need tests/ (and the project) on their path
    monkeypatch.syspath_prepend(str(TESTS))
    paths = [str(TESTS), str(REPO), os.environ.get("PYTHONPATH")]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, paths)))


def make_units(tmp_path, xs, **extra):
    units = []
    for x in xs:
        config = {"x": x, "counter": str(tmp_path / f"count-{x}.txt"), **extra}
        units.append(Unit("toy", unit_key("toy", {"x": x, **extra}, "c0de"), "jobfns:record", config, label=f"x={x}"))
    return units


def runs(tmp_path, x):
    p = tmp_path / f"count-{x}.txt"
    return len(p.read_text().splitlines()) if p.exists() else 0


def wait_for(predicate, what, limit_s=90.0):
    # a safety limit so a broken test fails instead of hanging; no test asserts how long anything takes
    deadline = time.time() + limit_s
    while not predicate():
        if time.time() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.05)


def no_submission(*args, **kwargs):
    raise AssertionError("nothing should be submitted")


# -- debug -----------------------------------------------------------------------------------------------------------
def test_debug_runs_in_process_and_rerun_is_a_no_op(tmp_path, monkeypatch, use_backend):
    store = RunStore(tmp_path / "runs")
    units = make_units(tmp_path, [1, 2, 3])
    stream = io.StringIO()
    out = run_units(units + units[:1], store, DEBUG, desc="toy", stream=stream)  # a duplicate is run once
    assert out == {u.key: {"double": 2 * u.config["x"]} for u in units}
    assert [runs(tmp_path, x) for x in (1, 2, 3)] == [1, 1, 1]
    assert "3/3" in stream.getvalue()
    # another executor later reuses the same entries: keys never include executor settings
    use_backend(LOCAL.kind, no_submission)
    assert run_units(units, store, LOCAL, desc="toy") == out
    assert [runs(tmp_path, x) for x in (1, 2, 3)] == [1, 1, 1]
    assert dry_run(units, store) == []


def test_debug_failure_does_not_open_a_debugger(tmp_path):
    store = RunStore(tmp_path / "runs")
    marker = tmp_path / "fail"
    marker.touch()
    units = make_units(tmp_path, [1], fail_if_exists=str(marker)) + make_units(tmp_path, [2])
    with pytest.raises(UnitsFailed) as info:
        run_units(units, store, DEBUG, desc="toy", stream=io.StringIO())
    msg = str(info.value)
    assert f"unit x=1 ({units[0].key}) failed: RuntimeError: asked to fail for x=1" in msg
    assert "error.txt" in msg and store.is_done("toy", units[1].key)


def test_corrupted_entry_is_recomputed(tmp_path):
    store = RunStore(tmp_path / "runs")
    (unit,) = make_units(tmp_path, [5])
    run_units([unit], store, DEBUG, stream=io.StringIO())
    with open(store.path("toy", unit.key) / "data.txt", "a") as f:
        f.write("bit rot")
    assert dry_run([unit], store) == [unit]
    assert store.path("toy", unit.key).is_dir() and not (store.root / "_quarantine").exists()  # a dry run reads
    assert run_units([unit], store, DEBUG, stream=io.StringIO()) == {unit.key: {"double": 10}}
    assert runs(tmp_path, 5) == 2
    assert len(list((store.root / "_quarantine" / "toy").iterdir())) == 1


def test_result_must_be_a_dict(tmp_path):
    store = RunStore(tmp_path / "runs")
    unit = Unit("toy", "ee" * 32, "jobfns:not_a_dict", {"x": 1, "counter": str(tmp_path / "c")})
    with pytest.raises(UnitsFailed, match="returned list; it must return a dict"):
        run_units([unit], store, DEBUG, stream=io.StringIO())


@pytest.mark.parametrize("fn,match", [("jobfns.record", "must be 'module:function'"),
                                      ("jobfns:nope", "has no function 'nope'"),
                                      ("no_such_module_xyz:f", "No module named 'no_such_module_xyz'")])
def test_bad_fn_is_refused_before_submitting(tmp_path, monkeypatch, fn, match, use_backend):
    use_backend(LOCAL.kind, no_submission)
    unit = Unit("toy", "ee" * 32, fn, {"x": 1})
    with pytest.raises(ValueError, match=match):
        run_units([unit], RunStore(tmp_path / "runs"), LOCAL)


def test_conflicting_duplicates_and_missing_deps_are_refused(tmp_path):
    store = RunStore(tmp_path / "runs")
    a, b = make_units(tmp_path, [1, 2])
    with pytest.raises(ValueError, match="given twice with different fn/config"):
        run_units([a, Unit(a.kind, a.key, a.fn, b.config)], store, DEBUG)
    b.deps = (("toy", a.key),)
    with pytest.raises(ValueError, match=f"depends on toy/{a.key}, which is not done"):
        run_units([b], store, DEBUG)
    run_units([a], store, DEBUG, stream=io.StringIO())
    assert run_units([b], store, DEBUG, stream=io.StringIO())[b.key] == {"double": 4}


# -- local -----------------------------------------------------------------------------------------------------------
def test_local_failure_others_finish_and_rerun_retries_only_it(tmp_path, monkeypatch, use_backend):
    store = RunStore(tmp_path / "runs")
    marker = tmp_path / "fail"
    marker.touch()
    # x=1 fails; with max_parallel=2, x=1 and x=3 share a job: x=3 must still run after x=1 failed
    marker_units = make_units(tmp_path, [1], fail_if_exists=str(marker)) + make_units(tmp_path, [2, 3])
    stream = io.StringIO()
    with pytest.raises(UnitsFailed) as info:
        run_units(marker_units, store, LOCAL, desc="toy", stream=stream)
    failed_key = marker_units[0].key
    assert [f.unit.key for f in info.value.failures] == [failed_key]
    failure = info.value.failures[0]
    assert failure.error == "RuntimeError: asked to fail for x=1"
    assert Path(failure.log).is_file() and Path(failure.log).parent == store.log_dir("toy")
    assert "asked to fail for x=1" in Path(failure.log).read_text()  # the job's stderr has the traceback
    assert f"({failed_key}) failed" in str(info.value) and failure.log in str(info.value)
    assert f"({failed_key}) failed" in stream.getvalue()  # reported while the others were still running
    assert [store.is_done("toy", u.key) for u in marker_units] == [False, True, True]
    # the default budget: 2 resubmissions, each recorded with its cause in the entry and the progress output
    assert [runs(tmp_path, x) for x in (1, 2, 3)] == [3, 1, 1]
    assert failure.retries == 2 and "failed after 2 retries" in str(info.value)
    attempts = store.attempts("toy", failed_key)
    assert [a["retry"] for a in attempts] == [True, True, False]
    assert all(a["cause"] == "RuntimeError: asked to fail for x=1" for a in attempts)
    assert stream.getvalue().count(f"retrying unit x=1 ({failed_key}), attempt ") == 2

    marker.unlink()
    out = run_units(marker_units, store, LOCAL, desc="toy", stream=io.StringIO())
    assert out[failed_key] == {"double": 2}
    assert [runs(tmp_path, x) for x in (1, 2, 3)] == [4, 1, 1]
    assert len(store.manifest("toy", failed_key)["meta"]["failed_attempts"]) == 3
    assert store.error("toy", failed_key) is None

    use_backend(LOCAL.kind, no_submission)
    job_files = sorted(store.root.glob("toy/*/*/job.json"))
    before = [p.stat().st_mtime_ns for p in job_files]
    assert run_units(marker_units, store, LOCAL, desc="toy") == out
    assert [p.stat().st_mtime_ns for p in job_files] == before


DRIVER = textwrap.dedent("""
    import json, sys
    from jobs import ExecutorConfig, RunStore, Unit, run_units
    spec = json.load(open(sys.argv[1]))
    units = [Unit(**u) for u in spec["units"]]
    out = run_units(units, RunStore(spec["store"]), ExecutorConfig(kind="local", max_parallel=2, poll_s=0.2),
                    desc="toy")
    json.dump(out, open(sys.argv[2], "w"))
""")


def start_driver(tmp_path, units, name):
    spec = tmp_path / f"{name}.json"
    spec.write_text(json.dumps({"store": str(tmp_path / "runs"), "units": [
        {"kind": u.kind, "key": u.key, "fn": u.fn, "config": u.config, "label": u.label} for u in units]}))
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    log = open(tmp_path / f"{name}.log", "w")
    return subprocess.Popen([sys.executable, str(script), str(spec), str(tmp_path / f"{name}.out")],
                            stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)


class ReleaseOnReattach(io.StringIO):
    """A progress stream that lets the blocked unit finish once the driver says it re-attached."""

    def __init__(self, release: Path):
        super().__init__()
        self.release = release

    def write(self, s):
        if "re-attached" in s:
            self.release.touch()
        return super().write(s)


def test_killed_driver_is_reattached_without_rerunning(tmp_path, monkeypatch, use_backend):
    started, release = tmp_path / "started", tmp_path / "release"
    (unit,) = make_units(tmp_path, [7], started=str(started), release=str(release))
    driver = start_driver(tmp_path, [unit], "first")
    wait_for(lambda: started.exists() or driver.poll() is not None, "the unit to start in its job")
    assert driver.poll() is None, (tmp_path / "first.log").read_text()
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    store = RunStore(tmp_path / "runs")
    record = store.job_record("toy", unit.key)
    assert record["executor"] == "local" and record["driver_pid"] == driver.pid

    use_backend(LOCAL.kind, no_submission)
    stream = ReleaseOnReattach(release)
    out = run_units([unit], store, LOCAL, desc="toy", stream=stream)
    assert "re-attached to 1 units in 1 running jobs" in stream.getvalue()
    assert out == {unit.key: {"double": 14}}
    assert runs(tmp_path, 7) == 1


def test_two_drivers_run_each_unit_once(tmp_path):
    units = make_units(tmp_path, [1, 2, 3])
    drivers = [start_driver(tmp_path, units, name) for name in ("a", "b")]
    for d, name in zip(drivers, "ab"):
        assert d.wait(timeout=120) == 0, (tmp_path / f"{name}.log").read_text()
    outs = [json.loads((tmp_path / f"{name}.out").read_text()) for name in "ab"]
    assert outs[0] == outs[1] == {u.key: {"double": 2 * u.config["x"]} for u in units}
    assert [runs(tmp_path, x) for x in (1, 2, 3)] == [1, 1, 1]


def test_ctrl_c_leaves_jobs_running_and_prints_how_to_cancel(tmp_path, monkeypatch):
    started, release = tmp_path / "started", tmp_path / "release"
    (unit,) = make_units(tmp_path, [4], started=str(started), release=str(release))
    store = RunStore(tmp_path / "runs")

    def interrupt(_):
        wait_for(started.exists, "the unit to start")
        raise KeyboardInterrupt

    monkeypatch.setattr(loop, "_sleep", interrupt)
    stream = io.StringIO()
    with pytest.raises(KeyboardInterrupt):
        run_units([unit], store, LOCAL, desc="toy", stream=stream)
    text = stream.getvalue()
    assert "1 jobs keep running" in text and "re-attach" in text
    assert f"-m jobs cancel --store {store.root} --kind toy" in text
    pid = int(store.job_record("toy", unit.key)["job_id"])
    os.kill(pid, 0)  # still running

    from jobs.__main__ import main

    assert main(["cancel", "--store", str(store.root)]) == 0
    wait_for(lambda: not Path(f"/proc/{pid}").exists() or " Z " in Path(f"/proc/{pid}/stat").read_text(),
             "the cancelled job to exit")
    assert not store.is_done("toy", unit.key)
    monkeypatch.setattr(loop, "_sleep", time.sleep)
    release.touch()
    assert run_units([unit], store, LOCAL, desc="toy", stream=io.StringIO()) == {unit.key: {"double": 8}}
    assert runs(tmp_path, 4) == 2  # the cancelled attempt, then the rerun


def test_a_job_submitted_where_sigint_is_ignored_still_ends_when_cancelled(tmp_path):
    """A driver started as a script's background command (or from a pytest-xdist worker) ignores SIGINT, and an
    ignored signal survives exec: the local job puts SIGINT back to its default, so a cancel ends it."""
    from jobs.executors import JobWatch
    from jobs.liveness import _proc_alive, cancel_jobs
    from jobs.submission import submit_packs

    started = tmp_path / "started"
    (unit,) = make_units(tmp_path, [5], started=str(started), release=str(tmp_path / "release"))
    store = RunStore(tmp_path / "runs")
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        records, error = submit_packs([[unit]], store, LOCAL, "toy", JobWatch())
    finally:
        signal.signal(signal.SIGINT, previous)
    assert error is None, error
    wait_for(started.exists, "the unit to start")
    assert cancel_jobs([records[unit.key]], say=lambda line: None) == 1
    wait_for(lambda: not _proc_alive(int(records[unit.key]["job_id"])), "the cancelled job to exit", limit_s=60)
    assert not store.is_done("toy", unit.key)


def test_ctrl_c_right_after_submission_still_prints_how_to_cancel(tmp_path, monkeypatch):
    """A Ctrl-C held back during submission, or one landing just after, before the wait loop: same hint."""
    release = tmp_path / "release"
    (unit,) = make_units(tmp_path, [6], release=str(release))
    store = RunStore(tmp_path / "runs")
    real = submit_mod._Driver.submit_some

    def then_interrupt(self):
        real(self)
        raise KeyboardInterrupt

    monkeypatch.setattr(submit_mod._Driver, "submit_some", then_interrupt)
    stream = io.StringIO()
    with pytest.raises(KeyboardInterrupt):
        run_units([unit], store, LOCAL, desc="toy", stream=stream)
    text = stream.getvalue()
    assert "1 jobs keep running" in text and f"-m jobs cancel --store {store.root} --kind toy" in text, text
    monkeypatch.setattr(submit_mod._Driver, "submit_some", real)
    release.touch()
    assert run_units([unit], store, LOCAL, desc="toy", stream=io.StringIO()) == {unit.key: {"double": 12}}
    assert runs(tmp_path, 6) == 1  # the interrupted driver's job finished it; nothing was submitted again


def run_pids(tmp_path, x):
    p = tmp_path / f"count-{x}.txt"
    return [int(line.split()[1]) for line in p.read_text().splitlines()] if p.exists() else []


def test_preempted_job_is_requeued_and_the_unit_resumes(tmp_path, monkeypatch):
    release = tmp_path / "release"
    (unit,) = make_units(tmp_path, [3], release=str(release), report_resume=True)
    preempted = []

    def driver_wait(seconds):
        pids = run_pids(tmp_path, 3)
        if len(pids) == 1 and not preempted:
            os.kill(pids[0], signal.SIGUSR2)  # what SLURM sends before preempting (submitit's default signal)
            preempted.append(pids[0])
        if len(pids) == 2:
            release.touch()
        time.sleep(seconds)

    monkeypatch.setattr(loop, "_sleep", driver_wait)
    out = run_units([unit], RunStore(tmp_path / "runs"), LOCAL, desc="toy", stream=io.StringIO())
    assert out == {unit.key: {"double": 6, "resumed": True}}
    pids = run_pids(tmp_path, 3)
    assert len(pids) == 2 and pids[0] == preempted[0] and pids[1] != pids[0]


def kill_first_attempt(store, unit, started, release=None):
    """A driver wait that SIGKILLs the unit's job once it has started (as the OOM killer or a node failure would),
    then lets the next attempt finish (touches `release`)."""
    killed = []

    def driver_wait(seconds):
        if started.exists() and not killed:
            job = int(store.job_record("toy", unit.key)["job_id"])
            os.killpg(job, signal.SIGKILL)
            killed.append(job)
            if release is not None:
                release.touch()
        time.sleep(seconds)

    return driver_wait, killed


def test_job_killed_without_result_is_reported_with_its_log(tmp_path, monkeypatch):
    started = tmp_path / "started"
    (unit,) = make_units(tmp_path, [9], started=str(started), release=str(tmp_path / "never"))
    store = RunStore(tmp_path / "runs")
    driver_wait, killed = kill_first_attempt(store, unit, started)
    monkeypatch.setattr(loop, "_sleep", driver_wait)
    with pytest.raises(UnitsFailed) as info:
        run_units([unit], store, LOCAL.replace(max_retries=0), desc="toy", stream=io.StringIO())
    (failure,) = info.value.failures
    assert failure.error.startswith(f"job {killed[0]} ended (ENDED) without committing a result")
    assert failure.log == str(store.log_dir("toy") / f"{killed[0]}_0_log.err")
    assert failure.retries == 0 and [a["retry"] for a in store.attempts("toy", unit.key)] == [False]


def test_job_killed_is_retried_and_resumes(tmp_path, monkeypatch):
    started, release = tmp_path / "started", tmp_path / "release"
    (unit,) = make_units(tmp_path, [10], started=str(started), release=str(release), report_resume=True)
    store = RunStore(tmp_path / "runs")
    driver_wait, killed = kill_first_attempt(store, unit, started, release)
    monkeypatch.setattr(loop, "_sleep", driver_wait)
    stream = io.StringIO()
    # the retry found the killed attempt's checkpoint in the entry's workdir
    assert run_units([unit], store, LOCAL, desc="toy", stream=stream) == {unit.key: {"double": 20, "resumed": True}}
    (attempt,) = store.attempts("toy", unit.key)
    assert attempt["cause"].startswith(f"job {killed[0]} ended (ENDED) without committing a result")
    assert attempt["retry"] is True and attempt["job_id"] == str(killed[0])
    assert f"retrying unit x=10 ({unit.key}), attempt 2 of 3: job {killed[0]} ended" in stream.getvalue()
    meta = store.manifest("toy", unit.key)["meta"]
    assert meta["failed_attempts"] == [attempt] and meta["job_id"] != str(killed[0])


def test_ctrl_c_during_submission_is_held_until_jobs_are_recorded():
    # Python's own handler, as in a user's `dvc repro` (a pytest-xdist worker ignores SIGINT)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        _ctrl_c_is_deferred_then_restored()
    finally:
        signal.signal(signal.SIGINT, previous)


def _ctrl_c_is_deferred_then_restored():
    with sigint_deferred() as caught:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.01)  # let the handler run
    assert caught == [signal.SIGINT]
    with pytest.raises(KeyboardInterrupt):  # the normal handler is back
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(1)


# -- packing, ETA ----------------------------------------------------------------------------------------------------
def test_packing(tmp_path):
    units = make_units(tmp_path, range(5))
    local = _packs(units, ExecutorConfig(kind="local", max_parallel=2), slots=2)
    assert [[u.config["x"] for u in p] for p in local] == [[0, 2, 4], [1, 3]]
    assert len(_packs(units, ExecutorConfig(kind="local", max_parallel=8), slots=8)) == 5
    assert len(_packs(units, ExecutorConfig(kind="local", max_parallel=3), slots=1)) == 1  # adopted jobs count
    slurm = _packs(units, ExecutorConfig(kind="slurm", units_per_job=2), slots=10)
    assert [[u.config["x"] for u in p] for p in slurm] == [[0, 1], [2, 3], [4]]
    capped = _packs(units, ExecutorConfig(kind="slurm", units_per_job=2, max_queued=2), slots=2)
    assert [[u.config["x"] for u in p] for p in capped] == [[0, 1], [2, 3]]  # the rest waits for a free slot


def test_eta():
    assert estimate_eta_s(4, [], 2) is None
    assert estimate_eta_s(0, [], 2) == 0.0
    assert estimate_eta_s(4, [10.0, 30.0, 20.0], 2) == 40.0  # 2 rounds of the median
    assert estimate_eta_s(5, [10.0], 2) == 30.0


# -- executor settings -----------------------------------------------------------------------------------------------
@pytest.fixture()
def no_env(monkeypatch, tmp_path):
    monkeypatch.delenv("AWD_EXECUTOR", raising=False)
    monkeypatch.delenv("AWD_EXECUTOR_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)


def test_executor_defaults_and_sources(no_env, tmp_path, monkeypatch):
    assert load_executor_config() == ExecutorConfig(kind="local")
    with monkeypatch.context() as m:  # the default: one local job per core, 1 when the count is unknown
        m.setattr(os, "cpu_count", lambda: 6)
        assert (ExecutorConfig().parallel, ExecutorConfig(max_parallel=2).parallel) == (6, 2)
        m.setattr(os, "cpu_count", lambda: None)
        assert ExecutorConfig().parallel == 1
    Path("executor.yaml").write_text("kind: slurm\npartition: gpu\nmem_gb: 32\nextra: {exclusive: true}\n")
    cfg = load_executor_config()
    assert (cfg.kind, cfg.partition, cfg.mem_gb, cfg.extra) == ("slurm", "gpu", 32, {"exclusive": True})
    monkeypatch.setenv("AWD_EXECUTOR", "local")  # the kind alone, overriding the file
    assert load_executor_config().kind == "local" and load_executor_config().partition == "gpu"
    other = tmp_path / "other.yaml"
    other.write_text("kind: debug\n")
    monkeypatch.setenv("AWD_EXECUTOR_CONFIG", str(other))
    monkeypatch.delenv("AWD_EXECUTOR")
    assert load_executor_config().kind == "debug"


@pytest.mark.parametrize("text,match", [
    ("kind: slurm\npartiton: gpu\n", r"executor.yaml: partiton: unknown key 'partiton' \(did you mean 'partition'\?\)"),
    ("kind: slrum\n", r"executor.yaml: kind: unknown executor kind 'slrum' \(did you mean 'slurm'\?\); allowed: debug"),
    ("mem_gb: lots\n", r"executor.yaml: mem_gb: must be a positive number, got 'lots' \(str\)"),
    ("max_parallel: 0\n", r"max_parallel: must be a positive integer, got 0"),
    ("max_parallel: true\n", r"max_parallel: must be a positive integer, got True \(bool\)"),
    ("setup: [1]\n", r"setup: must be a list of shell lines"),
    ("- kind: local\n", r"must be a mapping of settings, got list"),
    ("kind: [\n", r"not valid YAML"),
])
def test_executor_file_errors(no_env, text, match):
    Path("executor.yaml").write_text(text)
    with pytest.raises(ExecutorConfigError, match=match):
        load_executor_config()


def test_executor_env_errors(no_env, monkeypatch):
    monkeypatch.setenv("AWD_EXECUTOR", "lcoal")
    with pytest.raises(ExecutorConfigError, match=r"\$AWD_EXECUTOR: unknown executor kind 'lcoal' \(did you mean "
                                                  r"'local'\?\)"):
        load_executor_config()
    monkeypatch.delenv("AWD_EXECUTOR")
    monkeypatch.setenv("AWD_EXECUTOR_CONFIG", "missing.yaml")
    with pytest.raises(ExecutorConfigError, match=r"\$AWD_EXECUTOR_CONFIG='missing.yaml': no such file"):
        load_executor_config()


def test_slurm_settings_reach_sbatch(tmp_path, monkeypatch):
    monkeypatch.setattr(submitit.SlurmExecutor, "affinity", classmethod(lambda cls: 2))  # pretend srun exists
    cfg = ExecutorConfig(kind="slurm", partition="gpu", gpus_per_node=1, cpus_per_task=8, mem_gb=32.5,
                         timeout_min=120, account="proj", qos="high", constraint="a100", array_parallelism=4,
                         extra={"exclusive": True, "mail-type": "END"}, setup=["module load cuda"])
    ex = make_executor(cfg, tmp_path / "logs")
    ex.parameters["map_count"] = 10
    text = ex._make_submission_file_text("python -m x", "uid")
    for line in ["--partition=gpu", "--gpus-per-node=1", "--cpus-per-task=8", "--mem=33280MB", "--time=120",
                 "--account=proj", "--qos=high", "--constraint=a100", "--array=0-9%4", "--exclusive",
                 "--mail-type=END", "module load cuda"]:
        assert line in text, line
    assert f"{tmp_path}/logs/%A_%a_0_log.err" in text


def test_slurm_without_srun_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(submitit.SlurmExecutor, "affinity", classmethod(lambda cls: -1))
    with pytest.raises(ExecutorConfigError, match="srun` is not on PATH"):
        make_executor(ExecutorConfig(kind="slurm"), tmp_path)
