"""A unit's run lock (`<entry>/.run.lock`) that every member of a group-shared store can take, whatever umask the
member who created it had.

The lock is an exclusive `flock`, as `filelock.FileLock` takes it (the two exclude each other on the same file).
flock needs only a descriptor, not write access, so a lock file another member left 0644 (umask 022) is opened
read-only and locked all the same. A lock file this module creates is made group-writable through the descriptor
that created it (O_CREAT|O_EXCL, so never a file someone else put there), so members whose code opens it
read-write (filelock) can take it too. The name is never followed: a symbolic link, FIFO or directory planted
there is refused with `RunLockError`, which says what to remove; nothing is written to the file, ever.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import time
import typing as tp
from pathlib import Path

import filelock

from jobs import safefs

RUN_LOCK = ".run.lock"
LOCK_MODE = 0o664  # the group shares the store; the lock is only ever flocked, its content is never read
_FLAGS = os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC  # O_NONBLOCK: opening a planted FIFO must not hang the job
POLL_S = 0.05


class RunLockError(OSError):
    """The lock file cannot be opened for locking: what is there, whose it is, and what to do."""


class RunLock:
    """`acquire(timeout)` (0: try once; negative: wait; raises filelock.Timeout when held elsewhere), `release()`,
    and a context manager. With `root` (the store root, which `path` lies under), the lock's directory is reached
    from the root without following a link (jobs.safefs)."""

    def __init__(self, path: str | Path, root: str | Path | None = None):
        self.path = Path(path)
        self.root = root
        self._fd: int | None = None

    def _open(self) -> int:
        if self.root is None:
            return self._open_in(None, str(self.path))
        with safefs.dir_fd(self.root, self.path.parent.relative_to(self.root).as_posix()) as parent:
            return self._open_in(parent, self.path.name)

    def _open_in(self, parent: int | None, name: str) -> int:
        for _ in range(3):  # created or removed by someone else between two attempts: look again
            try:
                fd = os.open(name, os.O_RDWR | os.O_CREAT | os.O_EXCL | _FLAGS, 0o600, dir_fd=parent)
            except FileExistsError:
                pass
            else:
                os.fchmod(fd, LOCK_MODE)
                return fd
            try:
                return self._check(os.open(name, os.O_RDWR | _FLAGS, dir_fd=parent))
            except FileNotFoundError:
                continue
            except PermissionError:
                pass  # not writable by us (another member's umask 022): locking needs no write access
            except OSError as e:
                raise self._refused(e, parent, name) from None
            try:
                return self._check(os.open(name, os.O_RDONLY | _FLAGS, dir_fd=parent))
            except FileNotFoundError:
                continue
            except OSError as e:
                raise self._refused(e, parent, name) from None
        raise RunLockError(errno.EAGAIN, f"run lock {self.path} keeps being created and removed by others")

    def _check(self, fd: int) -> int:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            raise RunLockError(errno.EINVAL, f"run lock {self.path} is not a regular file "
                               f"({stat.filemode(st.st_mode)}, owned by uid {st.st_uid}); remove it")
        return fd

    def _refused(self, e: OSError, parent: int | None, name: str) -> RunLockError:
        try:
            st = os.stat(name, dir_fd=parent, follow_symlinks=False)
            what = f"{stat.filemode(st.st_mode)}, owned by uid {st.st_uid}"
        except OSError:
            what = "gone"
        if e.errno == errno.ELOOP:
            why = "is a symbolic link (never followed); remove it"
        elif e.errno in (errno.EACCES, errno.EPERM):
            why = ("cannot even be read by you: its owner created it under a umask that shuts the group out; "
                   "its owner (or anyone who may write the entry) must remove it, and members of a shared store "
                   "work with umask 002")
        else:
            why = f"cannot be opened ({os.strerror(e.errno or 0)})"
        return RunLockError(e.errno or errno.EIO, f"run lock {self.path} ({what}) {why}")

    def acquire(self, timeout: float = -1) -> None:
        if self._fd is not None:
            return
        fd = self._open()
        deadline = time.monotonic() + timeout
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if timeout == 0 or 0 < timeout and time.monotonic() >= deadline:
                        raise filelock.Timeout(str(self.path)) from None
                    time.sleep(POLL_S)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)  # closing the only descriptor drops the flock

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: tp.Any) -> None:
        self.release()
