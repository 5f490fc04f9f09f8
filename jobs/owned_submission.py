"""`python -m jobs.owned_submission <folder>`: submitit's job entry point, for submission files only their owner wrote.

A job unpickles its submission file (`<job id>_submitted.pkl`): whoever can replace that file chooses the code the
job runs. On a group-writable run store, the driver therefore writes submission files into `_logs/<user>/<stage>/`
(owned by the user, no group or other write; jobs/executors.py: `private_folder`) with no group or other write
bit, and the job checks both before loading: the folder it opened (then used through its descriptor, so a rename
of a parent cannot swap it) and the file must belong to the job's own user (or root) and be writable by no one else.
Anything else is refused with a message naming the file and its owner; nothing of it is loaded.
"""

from __future__ import annotations

import os
import stat
import sys
import time
from pathlib import Path

WAIT_S = 60  # as submitit: the pickle of an array task may land just after the task starts


class UntrustedSubmission(RuntimeError):
    pass


def _owner_check(st: os.stat_result, what: str) -> None:
    me = os.geteuid()
    if st.st_uid not in (me, 0):
        raise UntrustedSubmission(f"{what} is owned by uid {st.st_uid}, not by this job's user (uid {me}): another "
                                  "user could have chosen the code it runs, so it is not loaded")
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise UntrustedSubmission(f"{what} is writable by group or others (mode {stat.filemode(st.st_mode)}): "
                                  "another user could have replaced it, so it is not loaded")


def open_folder(folder: str | Path) -> int:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        _owner_check(os.fstat(fd), f"submission folder {folder}")
    except BaseException:
        os.close(fd)
        raise
    return fd


def check_pickle(dir_fd: int, name: str, shown: str) -> None:
    deadline = time.time() + WAIT_S
    while True:
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=dir_fd)
            break
        except FileNotFoundError:
            if time.time() > deadline:
                raise UntrustedSubmission(f"{shown}: no such submission file after {WAIT_S}s") from None
            time.sleep(1)
        except OSError as e:  # ELOOP: a symbolic link where the submission file should be
            raise UntrustedSubmission(f"{shown}: cannot open it without following links ({e})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UntrustedSubmission(f"{shown} is not a regular file")
        _owner_check(st, f"submission file {shown}")
    finally:
        os.close(fd)


def owner_only_dumps() -> None:
    """submitit rewrites the submission file when a job checkpoints before a requeue (time limit, preemption): the
    job's umask (002 on a shared store) must not leave it group-writable, or the requeued job would refuse it."""
    from submitit.core import utils

    dump = utils.cloudpickle_dump

    def owner_only(obj: object, filename: str | Path) -> None:
        dump(obj, filename)
        os.chmod(filename, stat.S_IMODE(os.stat(filename).st_mode) & ~0o022)

    utils.cloudpickle_dump = owner_only


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m jobs.owned_submission <submitit folder>", file=sys.stderr)
        return 2
    from submitit.core import job_environment, submission

    folder = args[0]
    try:
        dir_fd = open_folder(folder)
        # the folder as this process opened it: later path lookups cannot be redirected by renaming a parent
        view = f"/proc/self/fd/{dir_fd}" if Path(f"/proc/self/fd/{dir_fd}").is_dir() else folder
        os.environ["SUBMITIT_FOLDER"] = view
        pickle = job_environment.JobEnvironment().paths.submitted_pickle
        check_pickle(dir_fd, pickle.name, str(Path(folder) / pickle.name))
    except (UntrustedSubmission, OSError) as e:
        print(f"awd job: refusing to run: {e}", file=sys.stderr, flush=True)
        return 3
    owner_only_dumps()
    submission.process_job(view)
    return 0


if __name__ == "__main__":
    sys.exit(main())
