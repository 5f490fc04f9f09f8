"""An entry's files: which ones its manifest covers, how they are hashed and checked, and dropping resume state.

Every access goes through directory fds (jobs.safefs): a member of a group-shared store can plant a link, a FIFO
or a hostile name in any entry, and none of them is followed, waited on or used as a path. `jobs.store` re-exports
the names other modules use.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import logging
import os
import shutil
import stat
import typing as tp
import uuid
from pathlib import Path

from jobs import safefs

log = logging.getLogger("jobs.store")

MANIFEST = "manifest.json"
RESULT = "result.json"
JOB = "job.json"
ERROR = "error.txt"
CONFIG = "config.json"
ATTEMPTS = "attempts.json"  # every failed attempt and its cause, kept across retries (and in the manifest's meta)
HEARTBEAT = ".heartbeat"  # refreshed by the job computing the entry: liveness that needs no sacct
HANDOFF = ".handoff"  # the driver has submitted what this done unit made ready: its job may give its GPU back
BOOKKEEPING = {MANIFEST, JOB, ERROR, ATTEMPTS}
QUARANTINE = "_quarantine"
CLAIM = "claim"  # job.json's executor while a driver submits the unit (sbatch runs outside the submit lock)
CLAIM_TTL_S = 600.0  # a claim older than this is abandoned whatever its host says (sbatch has a 60 s timeout)
RESUME = "resume"  # resume-only state of a running unit (last.pt, best.pt): dropped when the unit is committed
DROPPED_PREFIX = ".resume.dropped."  # where commit moves RESUME before deleting it (a leftover is garbage)
SMALL_FILE = 1 << 20  # verify="changed" always hashes files up to this size (results, metrics, histories)
# Size caps of the records a reader parses: far above what the store writes (a manifest is a few KB), far below
# what could exhaust a driver's memory. Anything larger, deeper, not UTF-8 JSON or of the wrong type is corrupt.
RECORD_LIMIT = {MANIFEST: 16 << 20, RESULT: 16 << 20, ATTEMPTS: 4 << 20, JOB: 1 << 20, HEARTBEAT: 1 << 20}
ERROR_TAIL = 1 << 20  # error.txt: its last MiB is what anyone reads


class StoreError(RuntimeError):
    pass


_warned: set[str] = set()


def _skip_note(message: str) -> None:
    """A record another member wrote that cannot be used: said once per process, then only counted as absent."""
    if message not in _warned:
        _warned.add(message)
        log.warning("%s", message)


def _sha256_fd(fd: int) -> str:
    h = hashlib.sha256()
    with open(fd, "rb", closefd=True) as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _sha256(path: str | Path, root: safefs.Root | None = None) -> str:
    """sha256 of the regular file `path` (under `root`, a directory or its fd, when given); a link or FIFO in its
    place raises OSError instead of being followed or waited on."""
    if root is None:
        root, path = Path(path).parent, Path(path).name
    return _sha256_fd(safefs.open_file(root, str(path)))


def _check_files(entry: int, manifest: dict, verify: bool | str) -> str:
    """Why the files of the entry (its fd) do not match `manifest` ("" when they do)."""
    files = manifest.get("files")
    if not isinstance(files, dict) or RESULT not in files:
        return f"{MANIFEST} has no file list including {RESULT}"
    try:
        for rel, info in sorted(files.items()):
            problem = _check_file(entry, rel, info, verify)
            if problem:
                return problem
    except OSError as e:
        return f"its files cannot be read ({e})"
    return ""


def _check_file(entry: int, rel: tp.Any, info: tp.Any, verify: bool | str) -> str:
    """Why one file of a manifest does not match (""), its name and record being whatever the manifest holds."""
    if not isinstance(info, dict):
        return f"{MANIFEST}: the record of {rel!r} is not an object"
    try:
        safefs.check_relpath(rel, "a file name")
    except safefs.UnsafePath as e:
        return f"{MANIFEST} names {str(e)[:300]}"
    try:
        st = safefs.lstat(entry, rel)
    except safefs.UnsafePath as e:
        return f"{rel} cannot be reached ({e})"
    if st is None:
        return f"{rel} is missing"
    if not stat.S_ISREG(st.st_mode):
        return f"{rel} is not a regular file"
    if st.st_size != info.get("size"):
        return f"{rel} has {st.st_size} bytes, manifest says {str(info.get('size'))[:40]}"
    changed = st.st_size <= SMALL_FILE or st.st_mtime_ns != info.get("mtime_ns")
    if (verify is True or (verify == "changed" and changed)) and _sha256(rel, entry) != info.get("sha256"):
        return f"{rel} sha256 differs from the manifest"
    return ""


def _payload_files(entry: safefs.Root) -> list[tuple[str, os.stat_result]]:
    """(name, lstat) of the entry's regular files outside bookkeeping and dot-names; a link or other non-regular file
    is left out of the manifest (a member could plant one to have the committer hash and a push copy its target)."""
    out = []
    for rel, st in safefs.walk(entry, skip=lambda name: name.startswith(".")):
        if rel in BOOKKEEPING or stat.S_ISDIR(st.st_mode):
            continue
        if stat.S_ISREG(st.st_mode):
            out.append((rel, st))
        else:
            log.warning("store: %s in %s is not a regular file: left out of its manifest", rel, entry)
    return out


def drop_resume_state(entry: safefs.Root, owner: int | None = None) -> int:
    """Deletes a committed entry's resume state; returns the bytes freed. `entry`: its path or an open fd of it;
    `owner`: delete only what this uid owns (gc on a shared store).

    Only after the manifest (which lists RESUME's files under `dropped`, outside `files`) has landed: a process
    killed before that leaves the unit resumable, one killed after it leaves a done entry with garbage that is not
    in its manifest. The rename first makes the removal all-or-nothing as far as `resume/` is concerned.
    """
    freed = 0
    with safefs.dir_fd(entry) as fd:
        resume = safefs.lstat(fd, RESUME)
        if resume is not None and stat.S_ISDIR(resume.st_mode):
            with contextlib.suppress(FileNotFoundError):
                os.rename(RESUME, f"{DROPPED_PREFIX}{uuid.uuid4().hex[:12]}", src_dir_fd=fd, dst_dir_fd=fd)
                with contextlib.suppress(OSError):
                    os.fsync(fd)
        for name in sorted(n for n in os.listdir(fd) if n.startswith(DROPPED_PREFIX)):
            if owner is not None:
                freed += safefs.remove(fd, name, owner=owner).bytes
                continue
            freed += safefs.tree(fd, name).bytes
            shutil.rmtree(name, dir_fd=fd, ignore_errors=True)
    return freed


def _user(uid: int | None = None) -> str:
    uid = os.geteuid() if uid is None else uid
    try:
        import pwd

        return pwd.getpwuid(uid).pw_name
    except (ImportError, KeyError):
        return f"uid{uid}"


def _utc_now() -> str:
    return _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


