"""Liveness without sacct: heartbeats in the store entry; a duplicate job leaves a unit another live job holds."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

import jobs.driver as submit_mod
from jobs import ExecutorConfig, RunStore, Unit, unit_key
from jobs.job import execute_unit
from jobs.progress import Progress

TESTS = Path(__file__).resolve().parents[1]


def sees_its_heartbeat(config, workdir, store):
    deadline = time.time() + 30
    while store.heartbeat("toy", config["key"]) is None:
        assert time.time() < deadline, "no heartbeat while the unit ran"
        time.sleep(0.01)
    return {"beat": store.heartbeat("toy", config["key"])["job_id"]}


def unit(x=1, fn="jobfns:record", tmp_path=None):
    key = unit_key("toy", {"x": x}, "c0de")
    config = {"x": x, "key": key, "counter": str(tmp_path / f"count-{x}.txt")}
    return Unit("toy", key, fn, config, label=f"x={x}")


def test_a_running_unit_keeps_a_heartbeat_in_its_entry_and_clears_it_when_done(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(TESTS))
    monkeypatch.setenv("SLURM_JOB_ID", "777")
    store = RunStore(tmp_path / "runs")
    u = unit(fn="integration.test_liveness:sees_its_heartbeat", tmp_path=tmp_path)
    assert execute_unit(store, u) == "done"
    assert store.result("toy", u.key) == {"beat": "777"} and store.heartbeat("toy", u.key) is None


def test_a_duplicate_job_leaves_at_once_when_a_live_job_holds_the_unit(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(TESTS))
    store = RunStore(tmp_path / "runs")
    u = unit(tmp_path=tmp_path)
    lock = store.workdir("toy", u.key) / ".run.lock"
    holder = subprocess.Popen([sys.executable, "-c", f"import filelock, time; l = filelock.FileLock({str(lock)!r}); "
                               "l.acquire(); print('held', flush=True); time.sleep(60)"], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        start = time.monotonic()
        assert execute_unit(store, u) == "busy"
        assert time.monotonic() - start < 30  # a safety margin, not a speed target: it must not wait for the holder
        assert not (tmp_path / "count-1.txt").exists() and store.error("toy", u.key) is None
    finally:
        holder.kill()
        holder.wait()
    assert execute_unit(store, u) == "done"  # the lock dies with its process


def test_the_run_lock_a_job_holds_excludes_filelock_users_and_is_group_writable(tmp_path):
    """Jobs lock through jobs.runlock, the store's quarantine and gc through filelock: one flock on one file, so
    each keeps the other out; the file is made group-writable whatever the umask (other members' filelock opens it
    read-write)."""
    from jobs.runlock import RUN_LOCK, RunLock

    store = RunStore(tmp_path / "runs")
    u = unit(tmp_path=tmp_path)
    path = store.workdir("toy", u.key) / RUN_LOCK
    old = os.umask(0o077)
    try:
        with RunLock(path, root=store.root):
            holder = subprocess.run([sys.executable, "-c", f"import filelock; filelock.FileLock({str(path)!r})"
                                     ".acquire(timeout=0)"], capture_output=True, text=True)
            assert holder.returncode != 0 and "Timeout" in holder.stderr, holder.stderr
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o664
    lock = RunLock(path, root=store.root)
    lock.acquire(timeout=0)  # released with the descriptor: free again
    lock.release()


@pytest.fixture
def driver(tmp_path, monkeypatch):
    store = RunStore(tmp_path / "runs")
    d = submit_mod._Driver(store, ExecutorConfig(kind="slurm", poll_s=1), "toy", Progress(1, 0, "toy"), None)
    state = {"value": (False, "GONE (not in squeue)")}
    monkeypatch.setattr(d.watch, "state", lambda record: state["value"])
    monkeypatch.setenv("AWD_HEARTBEAT_S", "10")
    return d, store, state


def test_a_job_hidden_from_the_scheduler_is_alive_while_its_heartbeat_is_fresh(tmp_path, driver, monkeypatch):
    d, store, state = driver
    u = unit(tmp_path=tmp_path)
    record = {"job_id": "55", "executor": "slurm"}
    assert d._alive(u, record) == (False, "GONE (not in squeue)")  # never beat: gone
    store.beat("toy", u.key, "55")
    alive, why = d._alive(u, record)
    assert alive and why.startswith("GONE (not in squeue), heartbeat 0s ago from job 55")
    monkeypatch.setattr(time, "time", lambda real=time.time: real() + 41)  # 4 beats of 10 s missed
    assert d._alive(u, record)[0] is False


def test_a_job_the_scheduler_reports_ended_is_not_kept_alive_by_its_own_last_beat(tmp_path, driver):
    d, store, state = driver
    u = unit(tmp_path=tmp_path)
    store.beat("toy", u.key, "55")
    state["value"] = (False, "NODE_FAIL")
    assert d._alive(u, {"job_id": "55", "executor": "slurm"}) == (False, "NODE_FAIL")
    # ... but another job's fresh heartbeat (the one that holds the unit's run lock) keeps the unit waited for
    assert d._alive(u, {"job_id": "54", "executor": "slurm"})[0] is True
