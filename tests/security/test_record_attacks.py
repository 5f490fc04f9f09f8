"""Findings 5 and 9: records and locks in shared entries.

5. A stage's `cancel_early` acted on every job.json of its kind: another member's early unit made the victim's
   stage fail (PermissionError killing a process of another uid), and a forged record made the victim's stage
   cancel the victim's own job. Now only records the running uid wrote, no one else can write, and that name the
   entry they lie in are acted on; the others are reported and left alone.
9. A member with umask 022 left `.run.lock` 0644 in a shared entry: another member's job then died on opening it
   read-write, with no error.txt. Now the lock is taken whatever its mode (flock needs no write access), a lock file
   is made group-writable through the fd that created it, and a lock that cannot be taken is explained in error.txt.

Every job here is real (local executor, submitted through the driver's own `_submit` as the user), and every step
of an attack runs as the attacker's uid.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import sys
import textwrap
import time
from pathlib import Path

import pytest

from jobs.executors import _proc_alive
from tests.security.conftest import REPO

ENV = {"PYTHONPATH": f"{REPO}:{REPO / 'tests'}"}  # `jobs`, and the unit functions of tests/jobfns.py
KEYS = {name: (c * 64) for name, c in zip(("k1", "k2", "k3", "k4", "mine", "theirs"), "abcdef")}

SUBMIT = textwrap.dedent("""
    import json, sys
    from jobs.driver import _submit
    from jobs.executors import ExecutorConfig, JobWatch
    from jobs.job import Unit
    from jobs.store import RunStore

    store, kind, key, early, work = RunStore(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4] == "1", sys.argv[5]
    config = {"x": 1, "counter": f"{work}/count-{key[:6]}", "started": f"{work}/started-{key[:6]}",
              "release": f"{work}/release"}
    unit = Unit(kind, key, "jobfns:record", config)
    records, error = _submit([[unit]], store, ExecutorConfig(kind="local"), "train", JobWatch(),
                             mark=lambda u: {"early": "train"} if early else {})
    assert error is None, error
    print(json.dumps(records[key]))
""")

CANCEL = textwrap.dedent("""
    import json, sys
    from jobs.driver import cancel_early
    from jobs.store import RunStore

    said = []
    n = cancel_early(RunStore(sys.argv[1]), sys.argv[2], set(json.loads(sys.argv[3])), say=said.append)
    print(json.dumps({"cancelled": n, "said": said}))
""")

RUN_UNIT = textwrap.dedent("""
    import json, sys
    from jobs.job import Unit, UnitBatch, UnitError

    config = {"x": 3, "counter": sys.argv[4]}
    try:
        outcome = UnitBatch(sys.argv[1], [Unit(sys.argv[2], sys.argv[3], "jobfns:record", config)])()
    except UnitError as e:
        outcome = {"error": str(e)}
    print(json.dumps(outcome))
""")


def last_json(run) -> dict:
    assert run.returncode == 0, f"{run.stdout}\n{run.stderr}"
    return json.loads(run.stdout.strip().splitlines()[-1])


def wait_for(what: str, predicate, limit_s: float = 120.0) -> None:
    deadline = time.time() + limit_s
    while not predicate():
        if time.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.fixture
def work(shared_store):
    """Counters and start markers of the jobs (sticky, anyone may add a file); `release` ends every blocked job."""
    work = shared_store.parent / "work"
    work.mkdir()
    os.chmod(work, 0o1777)
    jobs: list[int] = []
    yield work, jobs
    (work / "release").touch()
    for pid in jobs:  # the controllers this test started (each leads its own process group)
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def submit(lab, user, store: Path, work, kind: str, key: str, early: bool) -> int:
    folder, jobs = work
    record = last_json(lab.run(user, [sys.executable, "-c", SUBMIT, str(store), kind, key, "1" if early else "0",
                                      str(folder)], env=ENV))
    pid = int(record["job_id"])
    jobs.append(pid)
    wait_for(f"{user.name}'s job {pid} to start", (folder / f"started-{key[:6]}").exists)
    return pid


def cancel_early_as(lab, user, store: Path, kind: str, needed: list[str]) -> dict:
    return last_json(lab.run(user, [sys.executable, "-c", CANCEL, str(store), kind, json.dumps(needed)], env=ENV))


def job_json(store: Path, kind: str, key: str) -> Path:
    return store / kind / key[:2] / key / "job.json"


def test_attack_other_members_early_unit_fails_my_stage(lab, shared_store, work):
    theirs = submit(lab, lab.attacker, shared_store, work, "autoattack", KEYS["theirs"], early=True)
    mine = submit(lab, lab.victim, shared_store, work, "autoattack", KEYS["mine"], early=True)
    record = job_json(shared_store, "autoattack", KEYS["mine"])
    # written under umask 002, yet not group-writable: a record the group could rewrite would not be acted on
    mode = record.stat().st_mode

    out = cancel_early_as(lab, lab.victim, shared_store, "autoattack", [])  # the victim's edited params need neither
    assert out["cancelled"] == 1, out  # its own stale early unit: cancelled, as before
    assert any(f"written by uid {lab.attacker.uid} ({lab.attacker.name}), not by you" in line and "left alone" in line
               for line in out["said"]), out
    wait_for("the victim's stale early job to end", lambda: not _proc_alive(mine))
    assert not record.exists() and not mode & 0o022
    assert _proc_alive(theirs)  # the attacker's unit is theirs to cancel: untouched, and so is its record
    assert job_json(shared_store, "autoattack", KEYS["theirs"]).exists()


def test_attack_forged_job_json_cancels_my_jobs(lab, shared_store, work):
    """The victim's job J holds early unit k1, which its stage needs. Three ways to make the stage cancel J anyway:
    a record the attacker wrote naming J (k2); the victim's own k1 record moved by the attacker into an entry the
    stage does not need (k3); a record of the victim's written group-writable (an earlier driver under umask 002)
    and rewritten by the attacker (k4)."""
    job = submit(lab, lab.victim, shared_store, work, "autoattack", KEYS["k1"], early=True)
    legacy = textwrap.dedent(f"""
        from jobs.store import RunStore
        RunStore({str(shared_store)!r}).record_jobs("autoattack", {KEYS['k4']!r}, "1", "local", {{}})
    """)
    lab.run(lab.victim, [sys.executable, "-c", legacy], env=ENV, check=True)  # umask 002: 0664, the victim's
    forged = {"job_id": str(job), "executor": "local", "host": socket.gethostname(), "early": "train",
              "log_paths": {}, "submitted_at": time.time()}
    attack = textwrap.dedent(f"""
        import json, os
        store, forged = {str(shared_store)!r}, {json.dumps(forged)!r}
        k1, k2, k3, k4 = {KEYS['k1']!r}, {KEYS['k2']!r}, {KEYS['k3']!r}, {KEYS['k4']!r}
        entry = lambda k: f"{{store}}/autoattack/{{k[:2]}}/{{k}}"
        for k in (k2, k3):
            os.makedirs(entry(k), exist_ok=True)
        record = dict(json.loads(forged), unit=f"autoattack/{{k2}}")
        with open(entry(k2) + "/job.json", "w") as f:
            json.dump(record, f)
        os.rename(entry(k1) + "/job.json", entry(k3) + "/job.json")
        with open(entry(k4) + "/job.json", "w") as f:  # group-writable: the attacker may rewrite it
            json.dump(dict(json.loads(forged), unit=f"autoattack/{{k4}}"), f)
    """)
    lab.run(lab.attacker, [sys.executable, "-c", attack], env=ENV, check=True)
    assert job_json(shared_store, "autoattack", KEYS["k3"]).stat().st_uid == lab.victim.uid  # a genuine record
    assert job_json(shared_store, "autoattack", KEYS["k4"]).stat().st_uid == lab.victim.uid

    out = cancel_early_as(lab, lab.victim, shared_store, "autoattack", [KEYS["k1"]])
    assert out["cancelled"] == 0, out
    said = "\n".join(out["said"])
    assert f"written by uid {lab.attacker.uid} ({lab.attacker.name}), not by you" in said, said
    assert f"written for 'autoattack/{KEYS['k1']}', not for the entry it lies in" in said, said
    assert "writable by others (mode -rw-rw-r--)" in said, said
    assert _proc_alive(job)  # the victim's job, which its stage needs, still runs


def shared_entry(lab, store: Path, key: str) -> Path:
    """An entry as the victim's driver leaves it before submitting (umask 002: group-writable, setgid)."""
    make = f"from jobs.store import RunStore; RunStore({str(store)!r}).write_config('train', {key!r}, {{'x': 3}})"
    lab.run(lab.victim, [sys.executable, "-c", make], env=ENV, check=True)
    entry = store / "train" / key[:2] / key
    assert entry.stat().st_mode & 0o020
    return entry


def run_unit_as(lab, user, store: Path, key: str, work) -> dict:
    counter = work[0] / f"count-{user.name}"
    return last_json(lab.run(user, [sys.executable, "-c", RUN_UNIT, str(store), "train", key, str(counter)],
                             env=ENV))


@pytest.mark.parametrize("creator", ["filelock, as before the fix", "this code"])
def test_attack_umask_022_run_lock(lab, shared_store, work, creator):
    key = KEYS["k1"]
    entry = shared_entry(lab, shared_store, key)
    if creator == "this code":  # the member with umask 022 ran the unit first (a version that failed at once)
        code = (f"import json; from jobs.job import Unit, execute_unit; from jobs.store import RunStore; "
                f"print(json.dumps(execute_unit(RunStore({str(shared_store)!r}), Unit('train', {key!r}, "
                f"'jobfns:not_a_dict', {{'x': 3, 'counter': {str(work[0] / 'count-a')!r}}}))))")
        assert last_json(lab.run(lab.attacker, [sys.executable, "-c", code], umask=0o022, env=ENV)) == "failed"
        assert stat.S_IMODE((entry / ".run.lock").stat().st_mode) == 0o664  # set through its fd, not by the umask
    else:  # what store.run_lock / gc (filelock) leave behind under umask 022
        code = f"import filelock; filelock.FileLock({str(entry / '.run.lock')!r}).acquire()"
        lab.run(lab.attacker, [sys.executable, "-c", code], umask=0o022, env=ENV, check=True)
        assert stat.S_IMODE((entry / ".run.lock").stat().st_mode) == 0o644
    assert (entry / ".run.lock").stat().st_uid == lab.attacker.uid

    out = run_unit_as(lab, lab.victim, shared_store, key, work)
    assert out == {key: "done"}, (entry / "error.txt").read_text() if (entry / "error.txt").exists() else out
    assert json.loads((entry / "result.json").read_text()) == {"double": 6}
    assert not (entry / "error.txt").exists()


@pytest.mark.parametrize("plant", ["unreadable", "symlink"])
def test_attack_run_lock_that_cannot_be_taken_is_explained(lab, shared_store, work, victim_home_canary, plant):
    """A member with umask 077 (a lock no one else may even read), or one who puts a link where the lock goes:
    the victim's job cannot lock the unit, and says so in error.txt (the driver's failure message) instead of
    dying mute; it never follows the link."""
    key = KEYS["k2"]
    entry = shared_entry(lab, shared_store, key)
    lock = entry / ".run.lock"
    if plant == "unreadable":
        code = f"import filelock; filelock.FileLock({str(lock)!r}).acquire()"
        lab.run(lab.attacker, [sys.executable, "-c", code], umask=0o077, env=ENV, check=True)
        expected = "cannot even be read by you"
    else:
        lab.run(lab.attacker, ["ln", "-s", str(victim_home_canary), str(lock)], check=True)
        expected = "is a symbolic link (never followed); remove it"
    out = run_unit_as(lab, lab.victim, shared_store, key, work)
    assert "1 of 1 units failed" in out["error"], out
    error = (entry / "error.txt").read_text()
    assert f"run lock {lock}" in error and expected in error, error
    assert f"owned by uid {lab.attacker.uid}" in error, error
    assert not (entry / "result.json").exists()
    assert victim_home_canary.read_text() == "precious\n"


def test_attack_umask_022_entry_is_explained_in_the_log(lab, shared_store, work):
    """A member with umask 022 created the entry itself (not group-writable): the victim's job can write nothing
    into it, not even error.txt; its log's last line (which the driver quotes) says why."""
    key = KEYS["k3"]
    make = f"from jobs.store import RunStore; RunStore({str(shared_store)!r}).write_config('train', {key!r}, {{}})"
    lab.run(lab.attacker, [sys.executable, "-c", make], umask=0o022, env=ENV, check=True)
    entry = shared_store / "train" / key[:2] / key
    run = lab.run(lab.victim, [sys.executable, "-c", RUN_UNIT, str(shared_store), "train", key,
                               str(work[0] / "count-v")], env=ENV)
    out = last_json(run)
    assert f"cannot write error.txt into {entry} (uid {lab.attacker.uid}, drwxr-sr-x)" in out["error"], out
    assert "chmod g+w" in out["error"] and not (entry / "error.txt").exists()


def test_attack_forged_job_json_reads_my_files(lab, shared_store, work):
    """A record names the log a failed job wrote; the driver quotes that log's last line in the failure it prints
    and keeps in attempts.json (group-readable). A record the attacker wrote, naming a private file of the victim,
    must not make the victim's driver copy that file's last line out."""
    key = KEYS["k4"]
    shared_entry(lab, shared_store, key)
    secret = lab.victim.home / "secret.txt"
    secret.write_text("the victim's private line\n")
    os.chown(secret, lab.victim.uid, lab.gid)
    os.chmod(secret, 0o600)
    forged = {"job_id": "999999", "executor": "local", "host": socket.gethostname(), "unit": f"train/{key}",
              "log_paths": {"stderr": str(secret)}, "submitted_at": time.time()}
    write = f"import json; json.dump({forged!r}, open({str(job_json(shared_store, 'train', key))!r}, 'w'))"
    lab.run(lab.attacker, [sys.executable, "-c", write], env=ENV, check=True)
    adopt = textwrap.dedent(f"""
        import json
        from jobs.driver import _Tracked, _failure
        from jobs.job import Unit
        from jobs.records import job_record
        from jobs.store import RunStore
        store, unit = RunStore({str(shared_store)!r}), Unit("train", {key!r}, "jobfns:record", {{}})
        failure = _failure(store, _Tracked(unit, job_record(store, "train", {key!r})), False, "ENDED", 0.0)
        print(json.dumps({{"error": failure.error}}))
    """)
    try:
        out = last_json(lab.run(lab.victim, [sys.executable, "-c", adopt], env=ENV))
    finally:
        secret.unlink()
    assert "job 999999 ended (ENDED) without committing a result" in out["error"], out
    assert "private line" not in out["error"], out
