"""Submission files only their owner can write (a shared store is group-writable): the log folder a job unpickles
its submission from, and the umask while sbatch scripts, submitit's bookkeeping and job.json records are written."""

from __future__ import annotations

import contextlib
import os
import stat
import typing as tp
from pathlib import Path

from jobs.executor_config import ExecutorConfigError

OWNED_ENTRY = "jobs.owned_submission"  # the job's entry point: checks the submission file's owner, then submitit's


class UnsafeLogDir(ExecutorConfigError):
    pass


def private_folder(folder: str | Path) -> Path:
    """`folder` and its parent (`_logs/<user>/<stage>` and `_logs/<user>`) made or checked: owned by this user and
    writable by no one else, whatever the umask. The submission files a job unpickles live here."""
    folder = Path(folder)
    me = os.geteuid()
    for d in (folder.parent, folder):
        try:
            d.mkdir(mode=0o755, parents=True)
        except FileExistsError:
            pass
        st = d.lstat()
        if not stat.S_ISDIR(st.st_mode):
            raise UnsafeLogDir(f"log folder {d} is not a directory (a link?); remove it")
        if st.st_uid != me:
            raise UnsafeLogDir(f"log folder {d} belongs to uid {st.st_uid}, not to you (uid {me}): jobs would load "
                               "submission files another user can replace; remove it (its owner can) or use another "
                               "$AWD_STORE")
        if st.st_mode & 0o022:
            os.chmod(d, stat.S_IMODE(st.st_mode) & ~0o022)
    top = folder.parent.parent
    with contextlib.suppress(OSError):  # `_logs/` itself: anyone may add a folder, only its owner may rename it
        if top.stat().st_uid == me and top.stat().st_mode & 0o022:
            os.chmod(top, stat.S_IMODE(top.stat().st_mode) | stat.S_ISVTX)
    return folder


@contextlib.contextmanager
def owner_only_files() -> tp.Iterator[None]:
    """Files created while this runs get no group/other write bit from the start (a shared store's umask is 002):
    sbatch scripts, submitit's bookkeeping, job.json records. Pickles are 0600 anyway (`private_pickles`)."""
    old = os.umask(0o022)
    os.umask(old | 0o022)  # never looser than the user's own umask
    try:
        yield
    finally:
        os.umask(old)


def private_submissions(log_dir: str | Path) -> Path:
    """Before a job-starting executor writes anything: its folder checked, its pickles 0600 from the first byte."""
    folder = private_folder(log_dir)
    # imported here: `python -m jobs.owned_submission` (every job) imports this package first, and must not find
    # itself in sys.modules already
    from jobs.owned_submission import private_pickles

    private_pickles()
    return folder
