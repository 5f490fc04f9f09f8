"""`python -m jobs.owned_submission <folder>`: submitit's job entry point, for submission files only their owner wrote.

A job unpickles its submission file (`<job id>_submitted.pkl`): whoever can replace that file chooses the code the
job runs. On a group-writable run store, the driver therefore writes submission files into `_logs/<user>/<stage>/`
(owned by the user, no group or other write; jobs/executors.py: `private_folder`), and the job checks both before
loading: the folder it opened (then used through its descriptor, so a rename of a parent cannot swap it) and the
file must belong to the job's own user (or root) and be writable by no one else. Anything else is refused with a
message naming the file and its owner; nothing of it is loaded.

Checking the mode is not enough on its own: a file that was group-writable for a moment can have been opened for
writing then, and that descriptor survives any later chmod. So every pickle submitit writes, in the driver and in
the job (the checkpoint a requeued job reloads, the result), is created 0600 from the first instant
(`private_pickles`), never tightened afterwards.
"""

from __future__ import annotations

import contextlib
import os
import pickle
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


class PrivatePickleError(OSError):
    pass


def private_dump(obj: object, filename: str | Path) -> None:
    """submitit's `cloudpickle_dump`, but the file is created 0600 (O_CREAT|O_EXCL|O_NOFOLLOW): a group member who
    opens it for writing while it is being written (a chmod afterwards does not revoke that descriptor) would choose
    the code a requeued job runs as us. Written once under a fresh name; submitit renames it into place."""
    import cloudpickle  # type: ignore[import-untyped]

    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(filename, flags, 0o600)
    except FileExistsError:
        raise PrivatePickleError(f"{filename}: a file of that name exists already; submitit writes its pickles "
                                 "under fresh names, so it is left over or planted: remove it") from None
    except OSError as e:  # ELOOP: a symbolic link planted where the pickle goes
        raise PrivatePickleError(f"{filename}: cannot create it as a new private file ({e})") from None
    try:
        with os.fdopen(fd, "wb") as f:
            cloudpickle.dump(obj, f, pickle.HIGHEST_PROTOCOL)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(filename)
        raise


def private_pickles() -> None:
    """Every pickle submitit writes in this process from now on (submission files by the driver, the checkpoint a
    requeued job reloads, result pickles by the job) goes through `private_dump`. submitit 1.5.4 routes all of them
    through `submitit.core.utils.cloudpickle_dump`, looked up at call time (pinned in tests/integration/test_owned_submission.py).
    """
    from submitit.core import utils

    utils.cloudpickle_dump = private_dump


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
    private_pickles()
    submission.process_job(view)
    return 0


if __name__ == "__main__":
    sys.exit(main())
