"""The run store: one directory per unit, done exactly when a valid manifest says so.

Layout: `root/<kind>/<key[:2]>/<key>/`. The entry directory is also the unit's working directory while it runs, so
a preempted unit resumes from its own checkpoint files. `manifest.json` (size + sha256 of every file) is written
last and atomically by `commit`; an entry without a manifest that matches its files is not done (how closely
"matches" is checked: see `damage`). `job.json` (the job running the unit, for re-attaching), `error.txt` (last
failure) and dot-files (locks, temporaries) are bookkeeping and stay outside the manifest.

Readers (`is_done`, `damage`, `manifest`, `result`, `pending_jobs`) never move or delete anything: a status query
or a dry run leaves the store as it found it. Moving a damaged entry aside is an explicit step,
`quarantine_damaged`, taken by the driver about to recompute the entry's unit (and by the job itself).
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import stat
import time
import typing as tp
import uuid
from pathlib import Path

import filelock

from jobs import safefs
from jobs.atomic import _fsync_dir, atomic_write_bytes, atomic_write_json, atomic_write_text, dump_json
from jobs.bookkeeping import EntryAccess, claim_alive
from jobs.layout import KEY_MIN_LEN, scan_store
from jobs.store_files import (
    ATTEMPTS,
    BOOKKEEPING,
    CLAIM,
    CLAIM_TTL_S,
    CONFIG,
    DROPPED_PREFIX,
    ERROR,
    ERROR_TAIL,
    HEARTBEAT,
    JOB,
    MANIFEST,
    QUARANTINE,
    RECORD_LIMIT,
    RESULT,
    RESUME,
    SMALL_FILE,
    StoreError,
    _check_files,
    _payload_files,
    _sha256,
    _skip_note,
    _user,
    _utc_now,
    drop_resume_state,
)

# what other modules import from here (defined in the modules store.py was split into)
__all__ = ["ATTEMPTS", "BOOKKEEPING", "CLAIM", "CLAIM_TTL_S", "CONFIG", "DROPPED_PREFIX", "ERROR", "ERROR_TAIL",
           "HEARTBEAT", "JOB", "KEY_MIN_LEN", "MANIFEST", "QUARANTINE", "RECORD_LIMIT", "RESULT", "RESUME",
           "SMALL_FILE", "RunStore", "StoreError", "_fsync_dir", "_sha256", "atomic_write_bytes", "atomic_write_json",
           "atomic_write_text", "claim_alive", "drop_resume_state", "dump_json"]


class RunStore(EntryAccess):
    def log_dir(self, desc: str) -> Path:
        """`_logs/<user>/<slug of desc>/`: job logs land at `<job_id>_0_log.out|err` in it. Per user: the
        submission files there are what jobs unpickle, so only their owner may write them (a shared store is not)."""
        slug = re.sub(r"[^a-z0-9]+", "-", desc.lower()).strip("-")
        if not slug:
            raise ValueError(f"store: desc {desc!r} needs at least one letter or digit (it names the log directory)")
        user = re.sub(r"[^A-Za-z0-9_.-]+", "-", _user()).strip(".-") or f"uid{os.geteuid()}"
        return self.root / "_logs" / user / slug

    # -- done / commit -------------------------------------------------------------------------------------------
    def commit(self, kind: str, key: str, result: tp.Mapping[str, tp.Any],
               meta: tp.Mapping[str, tp.Any] | None = None) -> Path:
        """Writes result.json then the manifest over every file of the entry; on any failure neither remains."""
        if not isinstance(result, tp.Mapping):
            raise TypeError(f"store.commit({kind}/{key}): result must be a dict, got {type(result).__name__}")
        entry = self.workdir(kind, key)
        result_bytes = dump_json(dict(result), f"result of {kind}/{key}")
        with safefs.dir_fd(self.root, self._rel(kind, key)) as fd:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(MANIFEST, dir_fd=fd)  # recommitting: the entry is not done until the new manifest lands
            try:
                safefs.write_atomic(fd, RESULT, result_bytes)
                files, dropped = {}, {}
                for rel, st in _payload_files(fd):
                    if rel.startswith(RESUME + "/"):
                        dropped[rel] = {"size": st.st_size}
                        continue
                    files[rel] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": _sha256(rel, fd)}
                manifest = {"kind": kind, "key": key, "committed_at": _utc_now(), "host": socket.gethostname(),
                            "meta": dict(meta or {}), "files": files, "dropped": dropped}
                safefs.write_atomic(fd, MANIFEST, dump_json(manifest, f"manifest of {kind}/{key}"))
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(RESULT, dir_fd=fd)
                raise
            with contextlib.suppress(FileNotFoundError):
                os.unlink(ERROR, dir_fd=fd)
            drop_resume_state(fd)
        return entry

    def manifest(self, kind: str, key: str) -> dict | None:
        """The committed manifest, None without one; a manifest that does not parse raises StoreError (damaged)."""
        try:
            return self._read_manifest(kind, key)
        except (ValueError, OSError) as e:
            raise StoreError(f"store: {kind}/{key} is damaged: unreadable {MANIFEST}: {e}") from e

    def _read_manifest(self, kind: str, key: str) -> tp.Any:
        return self._record(kind, key, MANIFEST)

    def damage(self, kind: str, key: str, verify: bool | str = False) -> str:
        """Why a committed entry no longer matches its manifest ("" when it matches, or has no manifest yet: in
        progress is not damage). `verify`: False checks sizes (cheap: the driver's polling); "changed" also checks
        the sha256 of every file modified since commit (mtime differs from the manifest's) and of every file up to
        SMALL_FILE bytes (what a stage does once before using an entry); True checks the sha256 of every file.

        Reading never moves anything: a damaged entry stays where it is until the stage about to recompute it calls
        `quarantine_damaged`.
        """
        return self._state(kind, key, verify)[1]

    def is_done(self, kind: str, key: str, verify: bool | str = False) -> bool:
        """True when the entry has a manifest that matches its files (checked as `damage` says, per `verify`); a
        damaged entry is not done, and stays in place (see `quarantine_damaged`)."""
        committed, problem = self._state(kind, key, verify)
        return committed and not problem

    def _state(self, kind: str, key: str, verify: bool | str) -> tuple[bool, str]:
        """(has a manifest, why it does not match its files or ""). The manifest and the files are read through one
        fd of the entry: what is checked is what the manifest lies in."""
        if verify not in (False, True, "changed"):
            raise ValueError(f"store: verify must be False, True or 'changed', got {verify!r}")
        rel = self._rel(kind, key)
        try:
            entry = safefs.open_dir(self.root, rel)
        except (FileNotFoundError, NotADirectoryError):
            return False, ""
        except OSError as e:  # a link, or a folder we may not enter, where the entry belongs
            return True, f"unreadable {MANIFEST}: {e}"
        try:
            manifest = safefs.read_json(entry, MANIFEST, limit=RECORD_LIMIT[MANIFEST], expect=dict)
        except FileNotFoundError:
            return False, ""
        except safefs.CorruptRecord as e:
            return True, f"unreadable {e}"
        except OSError as e:
            return True, f"unreadable {MANIFEST}: {e}"
        else:
            return True, _check_files(entry, manifest, verify)
        finally:
            os.close(entry)

    def quarantine_damaged(self, entries: tp.Iterable[tuple[str, str]],
                           verify: bool | str = "changed") -> dict[tuple[str, str], str]:
        """The explicit step before recomputing: every (kind, key) whose committed entry is damaged (`damage`) is
        moved to `_quarantine/<kind>/<key>.<time>.<id>/` with `reason.txt`, so that its unit starts afresh
        instead of resuming from damaged files. Returns {(kind, key): reason} of what was moved.

        An entry whose run lock a job holds is left alone: that job is recomputing it and commits over it.
        """
        moved = {}
        for kind, key in entries:
            committed, reason = self._state(kind, key, verify)
            if not committed or not reason:
                continue  # undamaged, or never committed (in progress is not damage)
            try:
                st = safefs.lstat(self.root, self._rel(kind, key))
            except OSError as e:
                _skip_note(f"store: {kind}/{key} is damaged ({reason}) and cannot be reached ({e}): left in place")
                continue
            if st is None:
                continue
            if st.st_uid != os.geteuid():
                _skip_note(f"store: {kind}/{key} is damaged ({reason}) but belongs to {_user(st.st_uid)}: left in "
                           f"place (only its owner moves it to {QUARANTINE}/)")
                continue
            if not stat.S_ISDIR(st.st_mode):  # a link or file of ours where the entry belongs: no lock inside
                if self._quarantine(kind, key, reason):
                    moved[(kind, key)] = reason
                continue
            lock = self.run_lock(kind, key)
            try:
                lock.acquire(timeout=0)
            except filelock.Timeout:
                continue
            except OSError as e:
                _skip_note(f"store: {kind}/{key} is damaged ({reason}); its run lock cannot be taken ({e}): left "
                           "in place")
                continue
            try:
                if self._quarantine(kind, key, reason):
                    moved[(kind, key)] = reason
            finally:
                lock.release()
        return moved

    def _quarantine(self, kind: str, key: str, reason: str) -> bool:
        qdir = f"{QUARANTINE}/{kind}"
        for rel in (QUARANTINE, qdir):  # sticky: members may move entries in, never another member's out
            with safefs.dir_fd(self.root, rel, create=True) as fd:
                st = os.fstat(fd)
                if st.st_uid == os.geteuid() and not st.st_mode & stat.S_ISVTX:
                    os.fchmod(fd, stat.S_IMODE(st.st_mode) | stat.S_ISVTX)
        dest = f"{qdir}/{key}.{time.strftime('%Y%m%dT%H%M%S')}.{uuid.uuid4().hex[:6]}"
        try:
            safefs.rename(self.root, self._rel(kind, key), dest)
        except FileNotFoundError:
            return False  # another process moved it first
        with contextlib.suppress(OSError):  # what was moved may be a link: nothing is written through it
            safefs.write_atomic(self.root, f"{dest}/reason.txt", f"{_utc_now()} {kind}/{key}: {reason}\n".encode())
        return True

    def result(self, kind: str, key: str) -> dict:
        committed, problem = self._state(kind, key, verify="changed")
        if problem:
            raise StoreError(f"store: {kind}/{key} is damaged: {problem} ({self.path(kind, key)}; the stage that "
                             "computes it moves it to _quarantine/ and recomputes it)")
        if not committed:
            raise StoreError(f"store: {kind}/{key} is not done (no valid {MANIFEST} in {self.path(kind, key)})")
        try:
            result = self._record(kind, key, RESULT)
        except (ValueError, OSError) as e:
            raise StoreError(f"store: {kind}/{key} is damaged: {e}") from None
        if result is None:
            raise StoreError(f"store: {kind}/{key} is damaged: {RESULT} is missing")
        return result

    def pending_jobs(self) -> list[dict]:
        """job.json records of entries that are not done, each with its `kind` and `key` added."""
        out: list[dict] = []
        for found in scan_store(self.root):
            if found.what != "entry" or safefs.lstat(self.root, f"{found.rel}/{JOB}") is None:
                continue
            if self.is_done(found.kind, found.key):
                continue
            record = self.job_record(found.kind, found.key)
            if record is not None:
                out.append(dict(record, kind=found.kind, key=found.key))
        return out

    # -- locks ----------------------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def submit_lock(self, say: tp.Callable[[str], None] = lambda s: None, timeout: float = -1) -> tp.Iterator[None]:
        """Store-wide: held by a driver while it decides what to adopt and submits the rest.

        A second driver waits here, then finds the first one's jobs in job.json and adopts them: no unit is ever
        submitted twice. `timeout` (s, -1 = forever) turns the wait into a StoreError.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        lock = filelock.FileLock(str(self.root / ".submit.lock"))
        try:
            lock.acquire(timeout=1)
        except filelock.Timeout:
            try:  # written by whoever holds the lock: read bounded, never through a link or from a FIFO
                who = safefs.read_bytes(self.root, ".submit.owner", 4096).decode("utf-8", "replace").strip()
            except (ValueError, OSError):
                who = "unknown"
            say(f"another driver holds the store's submit lock ({who}); waiting for it")
            try:
                lock.acquire(timeout=timeout)
            except filelock.Timeout:
                raise StoreError(f"store {self.root}: submit lock held by {who} for more than {timeout}s; "
                                 f"if no driver is running, remove {self.root / '.submit.lock'}") from None
        try:
            safefs.write_atomic(self.root, ".submit.owner",
                                f"pid {os.getpid()} on {socket.gethostname()} since {_utc_now()}".encode())
            yield
        finally:
            lock.release()

    def run_lock(self, kind: str, key: str) -> filelock.FileLock:
        """Per unit, held job-side while the unit runs: two jobs never compute the same entry at once."""
        return filelock.FileLock(str(self.workdir(kind, key) / ".run.lock"))
