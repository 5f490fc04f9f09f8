"""Share results, not execution: a job runs only a submission file its own user wrote and no one else can write.

A group member of a shared store who replaces a queued job's submission pickle (here: a file owned by another uid,
or one left group-writable) does not get it executed; the job refuses and says why. The driver's log folders are
its own (`_logs/<user>/<stage>`, no group write, whatever the umask) and one owned by someone else is refused.
"""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import pytest
from submitit.core.utils import DelayedSubmission

from jobs.executors import ExecutorConfig, UnsafeLogDir, make_executor
from jobs.store import RunStore

OTHER_UID = 4242  # a group member: any uid but ours (the tests run as root, which may chown)
START_DELAY = ["sleep 2"]  # the job waits before loading its submission file: the window the attack uses

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to hand files to another uid")


@pytest.fixture()
def shared_umask():
    old = os.umask(0o002)  # a shared store's umask: files group-writable unless the code says otherwise
    yield
    os.umask(old)


def wait_done(job, limit_s=60.0):
    deadline = time.time() + limit_s
    while not job.done():
        if time.time() > deadline:
            raise AssertionError("the job never ended")
        time.sleep(0.1)


def submit(tmp_path):
    store = RunStore(tmp_path / "runs")
    executor = make_executor(ExecutorConfig(kind="local", setup=START_DELAY), store.log_dir("toy"))
    good = tmp_path / "good-ran"
    return executor.submit(Path.touch, good), good


def test_own_submission_runs_and_nothing_in_the_log_folder_is_group_writable(tmp_path, shared_umask):
    job, good = submit(tmp_path)
    pickle = job.paths.submitted_pickle
    for p in (pickle, pickle.parent, pickle.parent.parent):
        st = p.stat()
        assert st.st_uid == os.geteuid() and not st.st_mode & 0o022, (p, stat.filemode(st.st_mode))
    assert (tmp_path / "runs" / "_logs").stat().st_mode & stat.S_ISVTX  # only a folder's owner may rename it
    wait_done(job)
    assert good.exists(), job.paths.stderr.read_text()


@pytest.mark.parametrize("attack", ["owned by another uid", "group-writable"])
def test_a_replaced_submission_file_is_not_executed(tmp_path, shared_umask, attack):
    job, good = submit(tmp_path)
    pickle = job.paths.submitted_pickle
    evil = tmp_path / "evil-ran"
    forged = pickle.parent / ".forged"
    DelayedSubmission(Path.touch, evil).dump(forged)
    if attack == "owned by another uid":
        os.chown(forged, OTHER_UID, OTHER_UID)
        os.chmod(forged, 0o644)
    else:
        os.chmod(forged, 0o664)
    os.replace(forged, pickle)  # before the job (still in its setup line) loads it
    wait_done(job)
    assert not evil.exists() and not good.exists()
    err = job.paths.stderr.read_text()
    assert "refusing to run" in err and str(pickle) in err, err
    assert (f"owned by uid {OTHER_UID}" if attack == "owned by another uid" else "writable by group") in err, err


def test_a_log_folder_of_another_user_is_refused_before_submitting(tmp_path):
    store = RunStore(tmp_path / "runs")
    log = store.log_dir("toy")
    log.parent.mkdir(parents=True)
    os.chown(log.parent, OTHER_UID, OTHER_UID)  # `_logs/<our name>/` made by someone else
    with pytest.raises(UnsafeLogDir, match=f"belongs to uid {OTHER_UID}, not to you"):
        make_executor(ExecutorConfig(kind="local"), log)
    assert not log.exists()


def test_own_group_writable_log_folder_is_tightened(tmp_path):
    store = RunStore(tmp_path / "runs")
    log = store.log_dir("toy")
    log.mkdir(parents=True)
    os.chmod(log, 0o775)
    make_executor(ExecutorConfig(kind="local"), log)
    assert stat.S_IMODE(log.stat().st_mode) == 0o755


@pytest.fixture()
def private(monkeypatch):
    from submitit.core import utils

    from jobs.owned_submission import private_pickles

    monkeypatch.setattr(utils, "cloudpickle_dump", utils.cloudpickle_dump)  # restored after the test
    private_pickles()


def test_every_pickle_submitit_writes_is_private_from_creation(tmp_path, private, monkeypatch):
    """Pins the submitit 1.5.4 paths private_pickles relies on: the submission file (DelayedSubmission.dump), the
    checkpoint a requeued job reloads (job_environment._checkpoint) and the result (submission.process_job) all go
    through submitit.core.utils.cloudpickle_dump, looked up when called. Under umask 000 an open() would make them
    0666; each file is 0600, so it was created so (nothing chmods it afterwards)."""
    import inspect

    from submitit.core import job_environment, submission, utils

    old = os.umask(0)
    try:
        DelayedSubmission(Path.touch, tmp_path / "x").dump(tmp_path / "submitted.pkl")
        ckpt = tmp_path / "requeue.pkl"
        delayed = DelayedSubmission(Requeueable(tmp_path / "x"))
        delayed.set_timeout(5, 1)
        assert job_environment._checkpoint(delayed, ckpt, 1) == ""  # "" = requeue
        monkeypatch.setenv("SUBMITIT_EXECUTOR", "local")
        monkeypatch.setenv("SUBMITIT_LOCAL_JOB_ID", "77")
        monkeypatch.setenv("SUBMITIT_LOCAL_GLOBALID", "0")
        monkeypatch.setenv("SUBMITIT_LOCAL_LOCALID", "0")
        monkeypatch.setenv("SUBMITIT_LOCAL_NTASKS", "1")
        monkeypatch.setenv("SUBMITIT_LOCAL_NODEID", "0")
        monkeypatch.setenv("SUBMITIT_LOCAL_JOB_NUM_NODES", "1")
        monkeypatch.setattr(job_environment.JobEnvironment, "_handle_signals", lambda self, paths, sub: None)
        DelayedSubmission(Path.touch, tmp_path / "ran").dump(tmp_path / "77_submitted.pkl")
        submission.process_job(tmp_path)  # writes 77_0_result.pkl
    finally:
        os.umask(old)
    assert (tmp_path / "ran").exists()
    for name in ("submitted.pkl", "requeue.pkl", "77_submitted.pkl", "77_0_result.pkl"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600, name
    assert utils.DelayedSubmission.load(ckpt).function.path == tmp_path / "x"
    assert "cloudpickle_dump(" in inspect.getsource(utils.DelayedSubmission.dump)


class Requeueable:
    def __init__(self, path):
        self.path = path

    def __call__(self):
        self.path.touch()

    def checkpoint(self):
        return DelayedSubmission(Requeueable(self.path))


def test_a_private_pickle_is_never_written_through_a_planted_name(tmp_path, private):
    from jobs.owned_submission import PrivatePickleError

    target = tmp_path / "victim.txt"
    target.write_text("precious\n")
    (tmp_path / "link.pkl").symlink_to(target)
    (tmp_path / "there.pkl").write_bytes(b"someone else's")
    for name in ("link.pkl", "there.pkl"):
        with pytest.raises(PrivatePickleError, match=f"{name}: "):
            DelayedSubmission(Path.touch, tmp_path / "x").dump(tmp_path / name)
    assert target.read_text() == "precious\n" and (tmp_path / "there.pkl").read_bytes() == b"someone else's"
