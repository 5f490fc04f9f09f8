"""The dataflow of jobs.driver: units of later stages submitted as soon as their inputs exist (early), longest first,
adopted by the stage that needs them, cancelled when params changed since, and never submitted twice after the
driver is killed. Local executor (real subprocess jobs); the pipeline's own use is in test_flow_pipeline.py."""

from __future__ import annotations

import io
import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import jobs.driver as driver_mod
import jobs.unit_driver as loop
from jobs import ExecutorConfig, RunStore, Unit, run_units_report, unit_key
from jobs.executors import _proc_alive
from tests.integration.test_submit_local import ReleaseOnReattach, importable_jobfns, no_submission, runs, wait_for

LOCAL = ExecutorConfig(kind="local", max_parallel=4, poll_s=0.1)
DEBUG = ExecutorConfig(kind="debug")
__all__ = ["importable_jobfns"]  # the autouse fixture: job subprocesses import tests/jobfns.py


def toy(tmp_path: Path, kind: str, name: str, estimate_s: float | None = None, **config) -> Unit:
    config = {"x": len(name), "counter": str(tmp_path / f"count-{name}.txt"), **config}
    keyed = {k: v for k, v in config.items() if k not in ("counter", "started", "release")}
    return Unit(kind, unit_key(kind, {"name": name, **keyed}, "c0de"), "jobfns:record", config, label=name,
                estimate_s=estimate_s)


class Follow:
    """A stand-in for the train stage's Flow: a done `train` unit hands on its evaluation (an `autoattack` unit
    under the given `aa_seed`, blocked until `release` exists) and, for t1, an awaited phase-2 `train` unit."""

    def __init__(self, tmp_path: Path, aa_seed: int, block: bool = True):
        self.tmp, self.seed, self.block, self.calls = tmp_path, aa_seed, block, []

    def evaluation(self, name: str) -> Unit:
        extra = {"started": str(self.tmp / f"started-aa-{name}"), "release": str(self.tmp / "release")}
        return toy(self.tmp, "autoattack", f"aa-{name}", seed=self.seed, **(extra if self.block else {}))

    def __call__(self, unit: Unit, result: dict | None) -> list[Unit]:
        self.calls.append((unit.kind, unit.label, result))
        if unit.kind != "train" or result is None:
            return []
        out = [self.evaluation(unit.label)]
        if unit.label == "t1":
            out.append(toy(self.tmp, "train", "p2", started=str(self.tmp / "started-p2"),
                           **({"release": str(self.tmp / "release")} if self.block else {})))
        return out


def test_follow_runs_phase2_awaited_and_leaves_early_units_running(tmp_path, monkeypatch, use_backend):
    store = RunStore(tmp_path / "runs")
    trains = [toy(tmp_path, "train", "t1"), toy(tmp_path, "train", "t2")]
    phase2 = toy(tmp_path, "train", "p2")
    (tmp_path / "release").touch()  # the phase-2 run may finish; the evaluations block on their own file below
    follow_block = Follow(tmp_path, aa_seed=0)
    follow_block.evaluation = lambda name: toy(tmp_path, "autoattack", f"aa-{name}", seed=0,
                                               started=str(tmp_path / f"started-aa-{name}"),
                                               release=str(tmp_path / "release-aa"))
    stream = io.StringIO()
    report = run_units_report(trains, store, LOCAL, desc="train", stream=stream, follow=follow_block,
                              awaited=("train",))
    assert set(report.results) == {u.key for u in trains} | {phase2.key}  # the followed phase-2 run was awaited
    early = [follow_block.evaluation(n) for n in ("t1", "t2", "p2")]
    records = [store.job_record("autoattack", u.key) for u in early]
    assert all(r is not None and r["early"] == "train" for r in records), records  # marked for cancel_early
    assert not any(store.is_done("autoattack", u.key) for u in early)  # not waited for
    assert "leaving 3 early units of later stages" in stream.getvalue()
    assert "autoattack 0/3" in stream.getvalue() and "train 3/3" in stream.getvalue()  # every kind on one line

    # the later stage adopts them (re-attach), submits nothing, and collects exactly these
    wait_for(lambda: all((tmp_path / f"started-aa-{n}").exists() for n in ("t1", "t2", "p2")), "the early units")
    stream = ReleaseOnReattach(tmp_path / "release-aa")
    use_backend("local", no_submission)
    report = run_units_report(early, store, LOCAL, desc="attack", stream=stream)
    assert "re-attached to 3 units" in stream.getvalue()
    assert not report.failures and set(report.results) == {u.key for u in early}
    assert [runs(tmp_path, n) for n in ("t1", "t2", "p2", "aa-t1", "aa-t2", "aa-p2")] == [1] * 6


def test_debug_executor_follows_phase2_but_runs_no_early_units(tmp_path):
    store = RunStore(tmp_path / "runs")
    follow = Follow(tmp_path, aa_seed=0, block=False)
    trains = [toy(tmp_path, "train", "t1"), toy(tmp_path, "train", "t2")]
    report = run_units_report(trains, store, DEBUG, desc="train", stream=io.StringIO(), follow=follow,
                              awaited=("train",))
    assert len(report.results) == 3 and runs(tmp_path, "p2") == 1
    assert runs(tmp_path, "aa-t1") == 0 and runs(tmp_path, "aa-t2") == 0
    # a second call finds everything done, and still hands every done unit to `follow` (phase 2 is derived again)
    follow2 = Follow(tmp_path, aa_seed=0, block=False)
    report = run_units_report(trains, store, DEBUG, desc="train", stream=io.StringIO(), follow=follow2,
                              awaited=("train",))
    assert len(report.results) == 3 and runs(tmp_path, "p2") == 1
    assert sorted(label for kind, label, _ in follow2.calls if kind == "train") == ["p2", "t1", "t2"]


def test_longest_estimated_units_are_submitted_first(tmp_path, monkeypatch):
    store = RunStore(tmp_path / "runs")
    units = [toy(tmp_path, "train", name, estimate_s=est) for name, est in
             (("short", 10.0), ("long", 1000.0), ("none", None), ("mid", 100.0))]
    submitted: list[list[str]] = []
    real = loop._submit

    def spy(packs, *args, **kwargs):
        submitted.append([u.label for pack in packs for u in pack])
        return real(packs, *args, **kwargs)

    monkeypatch.setattr(loop, "_submit", spy)
    one_at_a_time = ExecutorConfig(kind="local", max_parallel=1, poll_s=0.1)
    report = run_units_report(units, store, one_at_a_time, desc="train", stream=io.StringIO())
    assert not report.failures
    # one local slot: a single job runs them in this order (no estimate counts as the shortest)
    assert [label for labels in submitted for label in labels] == ["long", "mid", "short", "none"]


def test_edited_autoattack_params_early_units_are_not_used_and_pending_ones_cancelled(tmp_path, monkeypatch):
    """(a) The train stage submitted evaluations early under aa_seed=0; the user then edits the AutoAttack params
    (aa_seed=1) before the attack stage runs. The attack stage cancels the early units it does not need (still
    queued: for the local executor, still alive), collects only units of the new params, and a unit whose key did
    not change is adopted, not cancelled."""
    store = RunStore(tmp_path / "runs")
    old = Follow(tmp_path, aa_seed=0)
    trains = [toy(tmp_path, "train", "t1"), toy(tmp_path, "train", "t2")]
    (tmp_path / "release").touch()  # lets the phase-2 run finish; the early evaluations block on release-aa
    old.evaluation = lambda name: toy(tmp_path, "autoattack", f"aa-{name}", seed=0,
                                      started=str(tmp_path / f"started-aa-{name}"),
                                      release=str(tmp_path / "release-aa"))
    run_units_report(trains, store, LOCAL, desc="train", stream=io.StringIO(), follow=old, awaited=("train",))
    stale = [old.evaluation(n) for n in ("t1", "t2")]
    kept = old.evaluation("p2")  # stands for a unit whose key the edit leaves alone
    wait_for(lambda: all((tmp_path / f"started-aa-{n}").exists() for n in ("t1", "t2", "p2")), "the early units")
    pids = [int(store.job_record("autoattack", u.key)["job_id"]) for u in stale]

    new = [toy(tmp_path, "autoattack", f"aa-{n}", seed=1) for n in ("t1", "t2")]  # the edited params' keys
    said: list[str] = []
    cancelled = driver_mod.cancel_early(store, "autoattack", {u.key for u in new} | {kept.key}, say=said.append)
    assert cancelled == 2, said
    assert all(store.job_record("autoattack", u.key) is None for u in stale)  # nothing can adopt them now
    assert store.job_record("autoattack", kept.key) is not None
    wait_for(lambda: not any(_proc_alive(p) for p in pids), "the cancelled jobs to end")

    stream = ReleaseOnReattach(tmp_path / "release-aa")
    report = run_units_report(new + [kept], store, LOCAL, desc="attack", stream=stream)
    assert not report.failures
    assert {report.results[u.key]["double"] for u in new} == {2 * len("aa-t1")}
    assert not any(store.is_done("autoattack", u.key) for u in stale)  # never collected, never finished
    assert runs(tmp_path, "aa-p2") == 1  # adopted, not cancelled and run again
    # a unit this stage needs is never cancelled, even if submitted early
    assert driver_mod.cancel_early(store, "autoattack", {u.key for u in new} | {kept.key}) == 0


DRIVER = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    sys.path[:0] = [sys.argv[3], str(Path(sys.argv[3]).parent)]
    from jobs import ExecutorConfig, RunStore, run_units_report
    from integration.test_flow import Follow, toy
    tmp = Path(sys.argv[1])
    follow = Follow(tmp, aa_seed=0)
    trains = [toy(tmp, "train", "t1"), toy(tmp, "train", "t2")]
    report = run_units_report(trains, RunStore(tmp / "runs"), ExecutorConfig(**json.loads(sys.argv[4])),
                              desc="train", follow=follow, awaited=("train",))
    json.dump(sorted(report.results), open(sys.argv[2], "w"))
""")


@pytest.fixture(params=["local", pytest.param("slurm", marks=pytest.mark.slurm)])
def executor(request) -> dict:
    """The local executor (every job runs at once), and the local SLURM cluster (2 CPUs: one of the three downstream
    jobs is still pending in the queue when the driver dies)."""
    if request.param == "local":
        return {"kind": "local", "max_parallel": 4, "poll_s": 0.1}
    cluster = request.getfixturevalue("slurm_cluster")
    return {"kind": "slurm", "partition": cluster.partition, "cpus_per_task": 1, "timeout_min": 5, "poll_s": 0.5}


def test_driver_killed_while_downstream_units_run_reattaches_and_submits_nothing_twice(tmp_path, monkeypatch,
                                                                                        executor):
    """(b) The driver dies while the early evaluations and the phase-2 run are in jobs (running, or on SLURM one still
    queued); the next driver (as the next `dvc repro` would) re-attaches to all of them and submits nothing."""
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    tests_dir = str(Path(__file__).resolve().parents[1])
    log = open(tmp_path / "driver.log", "w")
    driver = subprocess.Popen([sys.executable, str(script), str(tmp_path), str(tmp_path / "out.json"), tests_dir,
                               json.dumps(executor)], stdout=log, stderr=subprocess.STDOUT)
    follow = Follow(tmp_path, aa_seed=0)
    store = RunStore(tmp_path / "runs")
    downstream = [follow.evaluation("t1"), follow.evaluation("t2"), toy(tmp_path, "train", "p2")]
    started = ["started-aa-t1", "started-aa-t2", "started-p2"]
    need = 3 if executor["kind"] == "local" else 2  # the cluster's 2 CPUs: the third job waits in the queue

    def downstream_in_jobs() -> bool:
        return (sum((tmp_path / f).exists() for f in started) >= need
                and all(store.job_record(u.kind, u.key) for u in downstream)) or driver.poll() is not None

    wait_for(downstream_in_jobs, "the downstream units to be submitted and started")
    assert driver.poll() is None, (tmp_path / "driver.log").read_text()
    driver.send_signal(signal.SIGKILL)
    driver.wait()

    submitted: list[str] = []
    real = loop._submit

    def spy(packs, *args, **kwargs):
        submitted.extend(u.label for pack in packs for u in pack)
        return real(packs, *args, **kwargs)

    monkeypatch.setattr(loop, "_submit", spy)
    stream = ReleaseOnReattach(tmp_path / "release")
    trains = [toy(tmp_path, "train", "t1"), toy(tmp_path, "train", "t2")]
    report = run_units_report(trains, store, ExecutorConfig(**executor), desc="train", stream=stream, follow=follow,
                              awaited=("train",))
    assert not report.failures and len(report.results) == 3
    early = [follow.evaluation(n) for n in ("t1", "t2", "p2")]
    wait_for(lambda: all(store.is_done("autoattack", u.key) for u in early), "the early units to finish")
    assert [runs(tmp_path, n) for n in ("t1", "t2", "p2", "aa-t1", "aa-t2", "aa-p2")] == [1] * 6
    assert submitted == ["aa-p2"]  # only the evaluation of the run that ended after the restart: its first submission
    assert not (tmp_path / "out.json").exists()  # the first driver really died before its end
