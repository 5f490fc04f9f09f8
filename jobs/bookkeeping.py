"""An entry's bookkeeping outside its manifest: error.txt, job.json, attempts.json, .heartbeat (and config.json).

`EntryAccess` is the base of `jobs.store.RunStore`: entry paths (kind and key validated), and reads and writes that
reach an entry's files through directory fds from the store root (jobs.safefs), never through a link a member
planted. A record that is not a small valid one (too large, too deep, not UTF-8 JSON, the wrong type, a link or
FIFO in its place) counts as absent and is said once: a member's file never crashes a driver or a job.
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
import stat
import time
import typing as tp
from pathlib import Path

from jobs import safefs
from jobs.atomic import dump_json
from jobs.layout import entry_parts
from jobs.store_files import (
    ATTEMPTS,
    CLAIM,
    CLAIM_TTL_S,
    CONFIG,
    ERROR,
    ERROR_TAIL,
    HANDOFF,
    HEARTBEAT,
    JOB,
    RECORD_LIMIT,
    _skip_note,
    _utc_now,
)


def claim_alive(record: tp.Mapping[str, tp.Any]) -> bool:
    """A submission claim counts while it is young and its driver runs (checked on its own host only)."""
    try:
        if time.time() - float(record.get("submitted_at", 0)) > CLAIM_TTL_S:
            return False
    except (TypeError, ValueError):
        return False  # not a claim this code wrote
    if record.get("host") != socket.gethostname():
        return True
    try:
        os.kill(int(record.get("driver_pid", -1)), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, TypeError, ValueError, OverflowError):
        return True
    return True


class EntryAccess:
    def __init__(self, root: str | Path):
        self.root = Path(root).expanduser().resolve()

    def __repr__(self) -> str:
        return f"RunStore({str(self.root)!r})"

    # -- paths ---------------------------------------------------------------------------------------------------
    def path(self, kind: str, key: str) -> Path:
        return self.root.joinpath(*entry_parts(kind, key))

    def _rel(self, kind: str, key: str) -> str:
        """The entry's path under the root (kind and key validated): what the fd-based operations walk."""
        return self.path(kind, key).relative_to(self.root).as_posix()

    def workdir(self, kind: str, key: str) -> Path:
        """The entry directory, created; a running unit writes (and checkpoints) its files here. A link planted
        anywhere on the way raises (safefs.UnsafePath) instead of sending the unit's files to its target."""
        self.root.mkdir(parents=True, exist_ok=True)
        with safefs.dir_fd(self.root, self._rel(kind, key), create=True):
            pass
        return self.path(kind, key)

    def _write(self, kind: str, key: str, name: str, data: bytes) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        safefs.write_atomic(self.root, f"{self._rel(kind, key)}/{name}", data, create=True)
        return self.path(kind, key) / name

    def _unlink(self, kind: str, key: str, name: str) -> None:
        with contextlib.suppress(FileNotFoundError, NotADirectoryError, safefs.UnsafePath):
            with safefs.dir_fd(self.root, self._rel(kind, key)) as fd:
                os.unlink(name, dir_fd=fd)

    def _record(self, kind: str, key: str, name: str, expect: type = dict) -> tp.Any:
        """A JSON record of the entry, None when it has none; any other content raises CorruptRecord (a ValueError)
        and an unreadable file OSError."""
        try:
            return safefs.read_json(self.root, f"{self._rel(kind, key)}/{name}", limit=RECORD_LIMIT[name],
                                    expect=expect)
        except FileNotFoundError:
            return None

    def write_config(self, kind: str, key: str, config: tp.Mapping[str, tp.Any]) -> None:
        self._write(kind, key, CONFIG, dump_json(dict(config), f"config of {kind}/{key}"))

    # -- errors ---------------------------------------------------------------------------------------------------
    def record_error(self, kind: str, key: str, text: str) -> Path:
        return self._write(kind, key, ERROR, text.encode("utf-8", "replace"))

    def error(self, kind: str, key: str) -> str | None:
        """error.txt (its last MiB), None without one or when it is not a regular file."""
        try:
            fd = safefs.open_file(self.root, f"{self._rel(kind, key)}/{ERROR}")
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as e:
            _skip_note(f"store: {kind}/{key}: {ERROR} ignored ({e})")
            return None
        with open(fd, "rb", closefd=True) as f:
            f.seek(max(0, os.fstat(f.fileno()).st_size - ERROR_TAIL))
            return f.read(ERROR_TAIL).decode("utf-8", "replace")

    def clear_error(self, kind: str, key: str) -> None:
        self._unlink(kind, key, ERROR)

    # -- jobs (re-attach) -----------------------------------------------------------------------------------------
    def record_jobs(self, kind: str, key: str, job_id: str, executor_kind: str,
                    log_paths: tp.Mapping[str, str | Path], **extra: tp.Any) -> None:
        record = {"job_id": str(job_id), "executor": executor_kind,
                  "log_paths": {k: str(v) for k, v in log_paths.items()},
                  "submitted_at": time.time(), "host": socket.gethostname(), "driver_pid": os.getpid(), **extra}
        self._write(kind, key, JOB, dump_json(record, f"{JOB} of {kind}/{key}"))

    def claim(self, kind: str, key: str, **extra: tp.Any) -> dict:
        """Marks the unit as being submitted by this process (under the submit lock), so that the lock need not be
        held across sbatch: another driver waits for the claim to become a job record, or to be abandoned."""
        self.record_jobs(kind, key, f"{CLAIM}-{os.getpid()}", CLAIM, {}, **extra)
        return self.job_record(kind, key) or {}

    def _optional(self, kind: str, key: str, name: str, expect: type) -> tp.Any:
        """A bookkeeping record, None when absent; one that is not a valid record counts as absent (said once)."""
        try:
            return self._record(kind, key, name, expect)
        except (ValueError, OSError) as e:
            _skip_note(f"store: {kind}/{key}: {name} ignored ({e})")
            return None

    def job_record(self, kind: str, key: str) -> dict | None:
        return self._optional(kind, key, JOB, dict)

    def clear_job(self, kind: str, key: str) -> None:
        self._unlink(kind, key, JOB)

    # -- retries and liveness ------------------------------------------------------------------------------------
    def record_attempt(self, kind: str, key: str, cause: str, **extra: tp.Any) -> list[dict]:
        """Appends a failed attempt (its cause, job, time) to the entry's attempts.json; returns the whole list."""
        attempts = self.attempts(kind, key) + [{"cause": cause, "at": _utc_now(), **extra}]
        self._write(kind, key, ATTEMPTS, dump_json(attempts, f"{ATTEMPTS} of {kind}/{key}"))
        return attempts

    def attempts(self, kind: str, key: str) -> list[dict]:
        return self._optional(kind, key, ATTEMPTS, list) or []

    def beat(self, kind: str, key: str, job_id: str) -> None:
        beat = {"job_id": str(job_id), "host": socket.gethostname(), "pid": os.getpid(), "t": time.time()}
        self._write(kind, key, HEARTBEAT, dump_json(beat, f"{HEARTBEAT} of {kind}/{key}"))

    def heartbeat(self, kind: str, key: str) -> dict | None:
        """The last heartbeat, with `age_s` added; None if the entry never had one (or not a valid one)."""
        beat = self._optional(kind, key, HEARTBEAT, dict)
        t = beat.get("t") if beat else None
        if not isinstance(t, (int, float)) or isinstance(t, bool) or not math.isfinite(t):
            return None
        return dict(beat, age_s=time.time() - t)

    def clear_heartbeat(self, kind: str, key: str) -> None:
        self._unlink(kind, key, HEARTBEAT)

    # -- hand-off of a done unit's GPU (jobs.policies.priority.handoff_s) ------------------------------------------
    def hand_off(self, kind: str, key: str) -> None:
        """Tells the unit's job, which may still hold its GPU, that what the unit made ready has been submitted."""
        self._write(kind, key, HANDOFF, b"")

    def owns_entry(self, kind: str, key: str) -> bool:
        """Whether the entry is a directory of the running uid (never through a link)."""
        try:
            st = safefs.lstat(self.root, self._rel(kind, key))
        except (OSError, safefs.UnsafePath):
            return False
        return st is not None and stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid()

    def handed_off(self, kind: str, key: str) -> bool:
        """Whether the driver said so. Only its presence counts (a member who plants or removes it makes a job
        release its GPU early or at its bound, nothing else); never followed."""
        try:
            return safefs.lstat(self.root, f"{self._rel(kind, key)}/{HANDOFF}") is not None
        except (OSError, safefs.UnsafePath):
            return False
