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
import datetime as _dt
import hashlib
import json
import math
import os
import re
import shutil
import socket
import time
import typing as tp
import uuid
from pathlib import Path

import filelock

from jobs.keys import KIND_RE

MANIFEST = "manifest.json"
RESULT = "result.json"
JOB = "job.json"
ERROR = "error.txt"
CONFIG = "config.json"
ATTEMPTS = "attempts.json"  # every failed attempt and its cause, kept across retries (and in the manifest's meta)
HEARTBEAT = ".heartbeat"  # refreshed by the job computing the entry: liveness that needs no sacct
BOOKKEEPING = {MANIFEST, JOB, ERROR, ATTEMPTS}
QUARANTINE = "_quarantine"
CLAIM = "claim"  # job.json's executor while a driver submits the unit (sbatch runs outside the submit lock)
CLAIM_TTL_S = 600.0  # a claim older than this is abandoned whatever its host says (sbatch has a 60 s timeout)
RESUME = "resume"  # resume-only state of a running unit (last.pt, best.pt): dropped when the unit is committed
DROPPED_PREFIX = ".resume.dropped."  # where commit moves RESUME before deleting it (a leftover is garbage)
KEY_MIN_LEN = 8
SMALL_FILE = 1 << 20  # verify="changed" always hashes files up to this size (results, metrics, histories)


class StoreError(RuntimeError):
    pass


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return  # some filesystems do not allow opening directories; the rename is still atomic
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """The project's one atomic writer outside `awd/` (the run store, stage artifacts, results/), with one
    durability policy: temporary file in the same directory, fsync, rename over the target, fsync the directory.
    Readers see the old file or the whole new one, never a prefix, even after a crash; a failure leaves no
    temporary behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex[:12]}.tmp"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(path.parent)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def _finite(obj: tp.Any) -> tp.Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def dump_json(obj: tp.Any, what: str, *, finite: bool = False) -> bytes:
    """Keys sorted. The store's own files keep NaN (Python reads it back); `finite=True` is the format of the files
    other programs parse (stage artifacts, results/metrics.json: DVC's metrics parser rejects NaN): NaN and ±inf
    become null, keys strings, indent 2, non-ASCII as is."""
    try:
        if finite:
            return (json.dumps(_finite(obj), indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")
        return (json.dumps(obj, indent=1, sort_keys=True) + "\n").encode("utf-8")
    except (TypeError, ValueError) as e:
        raise TypeError(f"{what} is not JSON-serialisable: {e}") from e


def atomic_write_json(path: str | Path, obj: tp.Any, *, finite: bool = False) -> None:
    atomic_write_bytes(path, dump_json(obj, str(path), finite=finite))


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _payload_files(entry: Path) -> list[str]:
    out = []
    for dirpath, dirnames, filenames in os.walk(entry):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            rel = Path(dirpath, name).relative_to(entry).as_posix()
            if name.startswith(".") or rel in BOOKKEEPING:
                continue
            out.append(rel)
    return sorted(out)


def drop_resume_state(entry: Path) -> int:
    """Deletes a committed entry's resume state; returns the bytes freed.

    Only after the manifest (which lists RESUME's files under `dropped`, outside `files`) has landed: a process
    killed before that leaves the unit resumable, one killed after it leaves a done entry with garbage that is not
    in its manifest. The rename first makes the removal all-or-nothing as far as `resume/` is concerned.
    """
    freed = 0
    resume = entry / RESUME
    if resume.is_dir():
        with contextlib.suppress(FileNotFoundError):
            os.replace(resume, entry / f"{DROPPED_PREFIX}{uuid.uuid4().hex[:12]}")
            _fsync_dir(entry)
    for leftover in entry.glob(DROPPED_PREFIX + "*"):
        freed += sum(p.stat().st_size for p in leftover.rglob("*") if p.is_file() and not p.is_symlink())
        shutil.rmtree(leftover, ignore_errors=True)
    return freed


def _user() -> str:
    try:
        import pwd

        return pwd.getpwuid(os.geteuid()).pw_name
    except (ImportError, KeyError):
        return f"uid{os.geteuid()}"


def _utc_now() -> str:
    return _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def claim_alive(record: tp.Mapping[str, tp.Any]) -> bool:
    """A submission claim counts while it is young and its driver runs (checked on its own host only)."""
    if time.time() - float(record.get("submitted_at", 0)) > CLAIM_TTL_S:
        return False
    if record.get("host") != socket.gethostname():
        return True
    try:
        os.kill(int(record.get("driver_pid", -1)), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError, OverflowError):
        return True
    return True


class RunStore:
    def __init__(self, root: str | Path):
        self.root = Path(root).expanduser().resolve()

    def __repr__(self) -> str:
        return f"RunStore({str(self.root)!r})"

    # -- paths ---------------------------------------------------------------------------------------------------
    def path(self, kind: str, key: str) -> Path:
        if not isinstance(kind, str) or not KIND_RE.match(kind):
            raise ValueError(f"store: kind {kind!r} is not allowed; lowercase letters, digits, '_' or '-', "
                             "starting with a letter")
        if not isinstance(key, str) or len(key) < KEY_MIN_LEN or not all(c in "0123456789abcdef" for c in key):
            raise ValueError(f"store: key {key!r} is not a lowercase hex digest of at least {KEY_MIN_LEN} "
                             "characters (see jobs.keys.unit_key)")
        return self.root / kind / key[:2] / key

    def workdir(self, kind: str, key: str) -> Path:
        """The entry directory, created; a running unit writes (and checkpoints) its files here."""
        entry = self.path(kind, key)
        entry.mkdir(parents=True, exist_ok=True)
        return entry

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
        manifest_path = entry / MANIFEST
        with contextlib.suppress(FileNotFoundError):
            manifest_path.unlink()  # recommitting: the entry is not done until the new manifest lands
        try:
            atomic_write_bytes(entry / RESULT, result_bytes)
            files, dropped = {}, {}
            for rel in _payload_files(entry):
                p = entry / rel
                st = p.stat()
                if rel.startswith(RESUME + "/"):
                    dropped[rel] = {"size": st.st_size}
                    continue
                files[rel] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": _sha256(p)}
            manifest = {"kind": kind, "key": key, "committed_at": _utc_now(), "host": socket.gethostname(),
                        "meta": dict(meta or {}), "files": files, "dropped": dropped}
            atomic_write_bytes(manifest_path, dump_json(manifest, f"manifest of {kind}/{key}"))
        except BaseException:
            with contextlib.suppress(OSError):
                (entry / RESULT).unlink()
            raise
        with contextlib.suppress(FileNotFoundError):
            (entry / ERROR).unlink()
        drop_resume_state(entry)
        return entry

    def manifest(self, kind: str, key: str) -> dict | None:
        """The committed manifest, None without one; a manifest that does not parse raises StoreError (damaged)."""
        try:
            return self._read_manifest(kind, key)
        except (ValueError, OSError) as e:
            raise StoreError(f"store: {kind}/{key} is damaged: unreadable {MANIFEST}: {e}") from e

    def _read_manifest(self, kind: str, key: str) -> tp.Any:
        try:
            with open(self.path(kind, key) / MANIFEST, "rb") as f:
                return json.loads(f.read())
        except FileNotFoundError:
            return None

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
        """(has a manifest, why it does not match its files or "")."""
        if verify not in (False, True, "changed"):
            raise ValueError(f"store: verify must be False, True or 'changed', got {verify!r}")
        try:
            manifest = self._read_manifest(kind, key)
        except (ValueError, OSError) as e:
            return True, f"unreadable {MANIFEST}: {e}"
        if manifest is None:
            return False, ""
        return True, self._check(self.path(kind, key), manifest, verify)

    @staticmethod
    def _check(entry: Path, manifest: tp.Any, verify: bool | str) -> str:
        files = manifest.get("files") if isinstance(manifest, dict) else None
        if not isinstance(files, dict) or RESULT not in files:
            return f"{MANIFEST} has no file list including {RESULT}"
        for rel, info in sorted(files.items()):
            p = entry / rel
            try:
                st = p.stat()
            except FileNotFoundError:
                return f"{rel} is missing"
            if st.st_size != info.get("size"):
                return f"{rel} has {st.st_size} bytes, manifest says {info.get('size')}"
            changed = st.st_size <= SMALL_FILE or st.st_mtime_ns != info.get("mtime_ns")
            if (verify is True or (verify == "changed" and changed)) and _sha256(p) != info.get("sha256"):
                return f"{rel} sha256 differs from the manifest"
        return ""

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
            lock = self.run_lock(kind, key)
            try:
                lock.acquire(timeout=0)
            except filelock.Timeout:
                continue
            try:
                if self._quarantine(kind, key, reason):
                    moved[(kind, key)] = reason
            finally:
                lock.release()
        return moved

    def _quarantine(self, kind: str, key: str, reason: str) -> bool:
        entry = self.path(kind, key)
        stamp = time.strftime("%Y%m%dT%H%M%S")
        dest = self.root / QUARANTINE / kind / f"{key}.{stamp}.{uuid.uuid4().hex[:6]}"
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(entry, dest)
        except FileNotFoundError:
            return False  # another process moved it first
        atomic_write_bytes(dest / "reason.txt", f"{_utc_now()} {kind}/{key}: {reason}\n".encode())
        return True

    def result(self, kind: str, key: str) -> dict:
        committed, problem = self._state(kind, key, verify="changed")
        if problem:
            raise StoreError(f"store: {kind}/{key} is damaged: {problem} ({self.path(kind, key)}; the stage that "
                             "computes it moves it to _quarantine/ and recomputes it)")
        if not committed:
            raise StoreError(f"store: {kind}/{key} is not done (no valid {MANIFEST} in {self.path(kind, key)})")
        with open(self.path(kind, key) / RESULT, "rb") as f:
            return json.loads(f.read())

    def write_config(self, kind: str, key: str, config: tp.Mapping[str, tp.Any]) -> None:
        atomic_write_json(self.workdir(kind, key) / CONFIG, dict(config))

    # -- errors ---------------------------------------------------------------------------------------------------
    def record_error(self, kind: str, key: str, text: str) -> Path:
        path = self.workdir(kind, key) / ERROR
        atomic_write_bytes(path, text.encode("utf-8", "replace"))
        return path

    def error(self, kind: str, key: str) -> str | None:
        try:
            return (self.path(kind, key) / ERROR).read_text(errors="replace")
        except FileNotFoundError:
            return None

    def clear_error(self, kind: str, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.path(kind, key) / ERROR).unlink()

    # -- jobs (re-attach) -----------------------------------------------------------------------------------------
    def record_jobs(self, kind: str, key: str, job_id: str, executor_kind: str,
                    log_paths: tp.Mapping[str, str | Path], **extra: tp.Any) -> None:
        record = {"job_id": str(job_id), "executor": executor_kind,
                  "log_paths": {k: str(v) for k, v in log_paths.items()},
                  "submitted_at": time.time(), "host": socket.gethostname(), "driver_pid": os.getpid(), **extra}
        atomic_write_json(self.workdir(kind, key) / JOB, record)

    def claim(self, kind: str, key: str, **extra: tp.Any) -> dict:
        """Marks the unit as being submitted by this process (under the submit lock), so that the lock need not be
        held across sbatch: another driver waits for the claim to become a job record, or to be abandoned."""
        self.record_jobs(kind, key, f"{CLAIM}-{os.getpid()}", CLAIM, {}, **extra)
        return self.job_record(kind, key) or {}

    def job_record(self, kind: str, key: str) -> dict | None:
        try:
            with open(self.path(kind, key) / JOB, "rb") as f:
                return json.loads(f.read())
        except (FileNotFoundError, ValueError):
            return None  # a torn job.json cannot happen (atomic writes); unreadable means nothing to adopt

    def clear_job(self, kind: str, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.path(kind, key) / JOB).unlink()

    def pending_jobs(self) -> list[dict]:
        """job.json records of entries that are not done, each with its `kind` and `key` added."""
        out: list[dict] = []
        if not self.root.is_dir():
            return out
        for job_file in sorted(self.root.glob(f"*/??/*/{JOB}")):
            entry = job_file.parent
            kind, key = entry.parent.parent.name, entry.name
            if kind.startswith("_") or not KIND_RE.match(kind):
                continue
            if self.is_done(kind, key):
                continue
            record = self.job_record(kind, key)
            if record is not None:
                out.append(dict(record, kind=kind, key=key))
        return out

    # -- retries and liveness ------------------------------------------------------------------------------------
    def record_attempt(self, kind: str, key: str, cause: str, **extra: tp.Any) -> list[dict]:
        """Appends a failed attempt (its cause, job, time) to the entry's attempts.json; returns the whole list."""
        attempts = self.attempts(kind, key) + [{"cause": cause, "at": _utc_now(), **extra}]
        atomic_write_json(self.workdir(kind, key) / ATTEMPTS, attempts)
        return attempts

    def attempts(self, kind: str, key: str) -> list[dict]:
        try:
            with open(self.path(kind, key) / ATTEMPTS, "rb") as f:
                loaded = json.loads(f.read())
        except (FileNotFoundError, ValueError):
            return []
        return loaded if isinstance(loaded, list) else []

    def beat(self, kind: str, key: str, job_id: str) -> None:
        atomic_write_json(self.workdir(kind, key) / HEARTBEAT,
                          {"job_id": str(job_id), "host": socket.gethostname(), "pid": os.getpid(), "t": time.time()})

    def heartbeat(self, kind: str, key: str) -> dict | None:
        """The last heartbeat, with `age_s` added; None if the entry never had one."""
        try:
            with open(self.path(kind, key) / HEARTBEAT, "rb") as f:
                beat = json.loads(f.read())
        except (FileNotFoundError, ValueError):
            return None
        return dict(beat, age_s=time.time() - float(beat.get("t", 0)))

    def clear_heartbeat(self, kind: str, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.path(kind, key) / HEARTBEAT).unlink()

    # -- locks ----------------------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def submit_lock(self, say: tp.Callable[[str], None] = lambda s: None, timeout: float = -1) -> tp.Iterator[None]:
        """Store-wide: held by a driver while it decides what to adopt and submits the rest.

        A second driver waits here, then finds the first one's jobs in job.json and adopts them: no unit is ever
        submitted twice. `timeout` (s, -1 = forever) turns the wait into a StoreError.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        lock = filelock.FileLock(str(self.root / ".submit.lock"))
        owner = self.root / ".submit.owner"
        try:
            lock.acquire(timeout=1)
        except filelock.Timeout:
            who = owner.read_text().strip() if owner.exists() else "unknown"
            say(f"another driver holds the store's submit lock ({who}); waiting for it")
            try:
                lock.acquire(timeout=timeout)
            except filelock.Timeout:
                raise StoreError(f"store {self.root}: submit lock held by {who} for more than {timeout}s; "
                                 f"if no driver is running, remove {self.root / '.submit.lock'}") from None
        try:
            atomic_write_bytes(owner, f"pid {os.getpid()} on {socket.gethostname()} since {_utc_now()}".encode())
            yield
        finally:
            lock.release()

    def run_lock(self, kind: str, key: str) -> filelock.FileLock:
        """Per unit, held job-side while the unit runs: two jobs never compute the same entry at once."""
        return filelock.FileLock(str(self.workdir(kind, key) / ".run.lock"))
