"""Finding 4: the requeue pickle's window. A job that checkpoints before a requeue (time limit, preemption) has
submitit write the pickle the requeued job will load. Created under the shared store's umask 002, that file was
group-writable until a chmod tightened it: a member who opened it for writing in that moment kept the descriptor,
and the requeued job ran their code as the victim.

Here the victim's job really is preempted (SIGUSR2, submitit's preemption signal, local executor) and requeued, and
the attacker, for real as the other uid, tries to open every pickle in the victim's log folder for writing in a
tight loop from before the submission until the requeued job has run. The victim's checkpoint carries an object
whose pickling takes a while, so each pickle file exists, half written, for over a second: the loop meets it.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import sys
import textwrap
import threading
import time
from pathlib import Path

from tests.security.conftest import REPO

SLOW_PICKLE_S = 1.5  # how long the victim's pickles stay half written: the window the attacker gets to aim at

VICTIM = textwrap.dedent("""
    import json, os, sys, time
    from pathlib import Path
    from submitit.core.utils import DelayedSubmission
    from jobs.executors import ExecutorConfig, make_executor
    from jobs.store import RunStore

    store, work, slow_s = RunStore(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3])

    class Slow:  # pickling it takes slow_s: the file being written stays half written that long
        def __reduce__(self):
            time.sleep(slow_s)
            return (Slow, ())

    class Work:
        def __init__(self, phase):
            self.phase, self.slow = phase, Slow()

        def __call__(self):
            (work / f"phase{self.phase}.json").write_text(json.dumps({"pid": os.getpid()}))
            if self.phase == 1:
                time.sleep(300)  # until preempted
            return self.phase

        def checkpoint(self):  # what a requeued job resumes from: phase 2
            return DelayedSubmission(Work(2))

    # the README's shared-store setting: jobs run under umask 002 too (an executor.yaml `setup:` line)
    executor = make_executor(ExecutorConfig(kind="local", setup=["umask 002"]), store.log_dir("requeue"))
    job = executor.submit(Work(1))
    print(json.dumps({"job_id": job.job_id, "pickle": str(job.paths.submitted_pickle)}))
""")

ATTACKER = textwrap.dedent("""
    import json, os, sys, time
    from pathlib import Path
    from submitit.core.utils import DelayedSubmission

    folder, canary, ready, stop = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4])

    def evil():
        Path(canary).write_text("pwned by the attacker")

    forged = DelayedSubmission(evil)
    forged.set_timeout(5, 3)
    payload = Path(str(ready) + ".pkl")
    forged.dump(payload)
    evil_bytes = payload.read_bytes()
    ready.write_text("ready")
    tries, refused, got = 0, {}, []
    deadline = time.time() + 240
    while not stop.exists() and time.time() < deadline:
        try:
            names = os.listdir(folder)
        except OSError:
            continue  # the victim's folder does not exist yet
        for name in names:
            if ".pkl" not in name:
                continue
            tries += 1
            try:
                fd = os.open(folder / name, os.O_WRONLY)
            except PermissionError:
                kind = "requeue" if name.endswith(".save_tmp") else "pickle"
                refused[kind] = refused.get(kind, 0) + 1
                continue
            except FileNotFoundError:
                continue
            got.append(name)
            # the victim is still writing through its own descriptor: wait for its rename, then replace the bytes
            while (folder / name).exists() and not stop.exists():
                time.sleep(0.001)
            os.ftruncate(fd, 0)
            os.pwrite(fd, evil_bytes, 0)
            os.close(fd)
    print(json.dumps({"tries": tries, "refused": refused, "got": got}))
""")


def wait_for(what: str, predicate, limit_s: float = 120.0) -> None:
    deadline = time.time() + limit_s
    while not predicate():
        if time.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_attack_requeue_pickle_window(lab, shared_store, victim_home_canary):
    env = {"PYTHONPATH": str(REPO)}
    outer = shared_store.parent
    work = outer / "victim-work"  # the victim's own markers (0700): what its job did, where only it can write
    work.mkdir()
    os.chown(work, lab.victim.uid, lab.gid)
    os.chmod(work, 0o700)
    ready, stop = shared_store / "attacker-ready", outer / "stop"
    folder = shared_store / "_logs" / lab.victim.name / "requeue"

    attack: dict = {}

    def attacker() -> None:
        attack["run"] = lab.run(lab.attacker, [sys.executable, "-c", ATTACKER, str(folder), str(victim_home_canary),
                                               str(ready), str(stop)], env=env, timeout=300)

    thread = threading.Thread(target=attacker)
    thread.start()
    pids: list[int] = []
    try:
        wait_for("the attacker's loop", ready.exists)
        submitted = lab.run(lab.victim, [sys.executable, "-c", VICTIM, str(shared_store), str(work),
                                         str(SLOW_PICKLE_S)], env=env, check=True)
        job = json.loads(submitted.stdout.strip().splitlines()[-1])
        pids.append(int(job["job_id"]))
        wait_for("the victim's job to start", (work / "phase1.json").exists)
        task = json.loads((work / "phase1.json").read_text())["pid"]
        os.kill(task, signal.SIGUSR2)  # preempted: submitit checkpoints, the controller requeues it
        # its result pickle: written once the requeued job has run whatever its submission file held
        wait_for("the requeued job to end", (folder / f"{job['job_id']}_0_result.pkl").exists)
    finally:
        stop.touch()
        thread.join(timeout=300)
        for pid in pids:
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    run = attack["run"]
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report["got"] == [], report  # not one write descriptor on any pickle, at any moment
    assert report["refused"].get("requeue", 0) > 0, report  # it met the requeue pickle while it was being written
    assert report["refused"].get("pickle", 0) > 0, report
    assert victim_home_canary.read_text() == "precious\n"
    pickle = Path(job["pickle"])
    assert pickle.stat().st_uid == lab.victim.uid and stat.S_IMODE(pickle.stat().st_mode) == 0o600
    assert json.loads((work / "phase2.json").read_text())["pid"] != task  # the victim's checkpoint ran, requeued
