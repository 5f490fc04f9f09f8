"""The documented entry points clear DVC's rwlock left by a killed run of theirs, and nothing else."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import psutil
import pytest

from pipeline import repro


def write_lock(root, pid):
    (root / ".dvc" / "tmp").mkdir(parents=True, exist_ok=True)
    lock = {"write": {str(root / "artifacts" / "train"): {"pid": pid, "cmd": "dvc repro"}},
            "read": {str(root / "params.yaml"): [{"pid": pid, "cmd": "dvc repro"}]}}
    (root / repro.RWLOCK).write_text(json.dumps(lock))


def write_owner(root, pid, started, host=None):
    (root / repro.OWNER).write_text(json.dumps({
        "host": host or socket.gethostname(), "cmd": "dvc repro", "at": started,
        "processes": [{"pid": pid, "started": started}]}))


@pytest.fixture
def dead_pid():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    started = psutil.Process(child.pid).create_time()
    child.wait()
    return child.pid, started


def test_lock_of_a_killed_run_on_this_host_is_cleared_saying_so(tmp_path, dead_pid):
    pid, started = dead_pid
    write_lock(tmp_path, pid)
    write_owner(tmp_path, pid, started)
    said = []
    assert repro.clear_stale_lock(tmp_path, say=said.append)
    assert not (tmp_path / repro.RWLOCK).exists()
    assert said == [f"cleared DVC's stale lock {tmp_path / repro.RWLOCK}: PID {pid} (dvc repro) started on this host "
                    f"({socket.gethostname()}) at {started} is no longer running"]


def test_reused_pid_counts_as_gone(tmp_path):
    me = psutil.Process()
    write_lock(tmp_path, me.pid)
    write_owner(tmp_path, me.pid, me.create_time() - 3600)  # the pid now belongs to another process
    assert repro.clear_stale_lock(tmp_path, say=lambda s: None)


@pytest.mark.parametrize("case", ["live", "other host", "not ours", "other pid in lock"])
def test_live_foreign_or_unknown_locks_are_never_touched(tmp_path, dead_pid, case):
    pid, started = dead_pid
    me = psutil.Process()
    if case == "live":
        write_lock(tmp_path, me.pid)
        write_owner(tmp_path, me.pid, me.create_time())
    elif case == "other host":
        write_lock(tmp_path, pid)
        write_owner(tmp_path, pid, started, host="another-node")
    elif case == "not ours":
        write_lock(tmp_path, pid)  # no launcher record: a dvc started by hand, host unknown
    else:
        write_lock(tmp_path, me.pid)
        write_owner(tmp_path, pid, started)
    before = (tmp_path / repro.RWLOCK).read_bytes()
    assert not repro.clear_stale_lock(tmp_path, say=lambda s: pytest.fail(s))
    assert (tmp_path / repro.RWLOCK).read_bytes() == before


def test_repro_entry_point_gets_past_a_stale_lock_that_blocks_plain_dvc(tmp_path):
    """A real DVC repo whose rwlock names a pid that now belongs to a live, unrelated process (this test)."""
    from tests.e2e_util import ROOT, VENV_BIN, env

    def sh(*cmd, check=True):
        e = dict(env(), PYTHONPATH=str(ROOT))
        proc = subprocess.run(cmd, cwd=tmp_path, env=e, capture_output=True, text=True, timeout=300)
        assert not check or proc.returncode == 0, proc.stderr[-3000:]
        return proc

    sh("git", "init", "-q")
    sh(str(VENV_BIN / "dvc"), "init", "-q")
    (tmp_path / "dvc.yaml").write_text("stages:\n  hello:\n    cmd: echo hi > out.txt\n    outs: [out.txt]\n")
    me = psutil.Process()
    lock = {"write": {str(tmp_path / "out.txt"): {"pid": me.pid, "cmd": "dvc repro"}}, "read": {}}
    (tmp_path / repro.RWLOCK).write_text(json.dumps(lock))
    blocked = sh(str(VENV_BIN / "dvc"), "repro", check=False)
    assert blocked.returncode != 0 and "is busy, it is being blocked by" in blocked.stderr, blocked.stderr
    write_owner(tmp_path, me.pid, me.create_time() - 3600)  # recorded by pipeline.repro for a run now gone
    out = sh(str(VENV_BIN / "python"), "-m", "pipeline.repro")
    assert "cleared DVC's stale lock" in out.stderr and (tmp_path / "out.txt").read_text() == "hi\n"
    owner = json.loads((tmp_path / repro.OWNER).read_text())
    assert owner["host"] == socket.gethostname() and owner["cmd"] == "dvc repro"
