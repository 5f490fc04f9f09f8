"""What a run store can lose: entries no kept key list names, old job logs and quarantine; never a live entry.

`plan(store, used, max_age_s)` lists the candidates (kind, path, bytes, why); `delete(store, items)` removes them,
each entry under its run lock and only after checking again that no job holds it. Which keys are used is the
caller's business (pipeline/store_cli.py: the current params and the unit lists of recent commits).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import time
import typing as tp
import uuid
from pathlib import Path

import filelock

from jobs.keys import KIND_RE
from jobs.store import DROPPED_PREFIX, HEARTBEAT, JOB, QUARANTINE, RESUME, RunStore, claim_alive, drop_resume_state

LOGS = "_logs"


@dataclasses.dataclass
class Item:
    what: str  # "entry", "resume state", "logs", "quarantine"
    path: Path
    bytes: int
    why: str
    kind: str = ""
    key: str = ""


def size_of(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    total = 0
    for dirpath, _, filenames in os.walk(path):
        for name in filenames:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, name)).st_size
    return total


def _newest_mtime(path: Path) -> float:
    newest = path.lstat().st_mtime
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            with contextlib.suppress(OSError):
                newest = max(newest, os.lstat(os.path.join(dirpath, name)).st_mtime)
    return newest


def entries(store: RunStore) -> tp.Iterator[tuple[str, str, Path]]:
    if not store.root.is_dir():
        return
    for kind_dir in sorted(store.root.iterdir()):
        if not kind_dir.is_dir() or kind_dir.name.startswith(("_", ".")) or not KIND_RE.match(kind_dir.name):
            continue
        for entry in sorted(kind_dir.glob("??/*")):
            if entry.is_dir() and not entry.name.startswith("."):
                yield kind_dir.name, entry.name, entry


def live_reason(store: RunStore, kind: str, key: str, watch: tp.Any = None, check_lock: bool = True) -> str:
    """Why a job may hold this entry now ('' when none does): a run lock held, a fresh heartbeat, a submission
    claim alive, or a recorded job the scheduler (or ps) still shows."""
    from jobs.driver import HEARTBEAT_STALE_AFTER
    from jobs.job import heartbeat_every_s

    entry = store.path(kind, key)
    lock = filelock.FileLock(str(entry / ".run.lock"))
    if check_lock and (entry / ".run.lock").exists():
        try:
            lock.acquire(timeout=0)
        except filelock.Timeout:
            return "its run lock is held"
        lock.release()
    if (entry / HEARTBEAT).exists():
        beat = store.heartbeat(kind, key)
        if beat is not None and beat["age_s"] < HEARTBEAT_STALE_AFTER * heartbeat_every_s():
            return f"heartbeat {beat['age_s']:.0f}s ago from job {beat.get('job_id')}"
    record = store.job_record(kind, key) if (entry / JOB).exists() else None
    if record is not None and not (entry / "manifest.json").exists():
        if record.get("executor") == "claim":
            return "a driver is submitting it" if claim_alive(record) else ""
        if watch is not None:
            try:
                alive, state = watch.state(record)
            except RuntimeError as e:  # another host's local job: we cannot tell, so it counts as alive
                return f"job {record.get('job_id')}: {e}"
            if alive:
                return f"job {record.get('job_id')} is {state}"
    return ""


def plan(store: RunStore, used: set[tuple[str, str]], max_age_s: float, now: float | None = None,
         all_users: bool = False) -> list[Item]:
    """Entries not in `used` ((kind, key) pairs), resume state left in done entries, logs and quarantine older
    than `max_age_s`; entries a live job holds are left out, and so are (unless `all_users`) entries and folders
    another user made: on a shared store, `used` only knows this checkout's params and commits."""
    from jobs.executors import JobWatch

    now = time.time() if now is None else now
    found = list(entries(store))
    watch = JobWatch()
    records = [r for k, key, e in found if (e / JOB).exists() for r in [store.job_record(k, key)] if r]
    with contextlib.suppress(Exception):  # no sacct here: states come from ps / the claims alone
        watch.refresh(records, force=True)
    me = os.geteuid()
    mine = lambda p: all_users or p.stat().st_uid == me  # noqa: E731
    items = []
    for kind, key, entry in found:
        if not mine(entry):
            continue
        if (kind, key) in used:
            leftovers = [p for p in entry.iterdir() if p.name == RESUME or p.name.startswith(DROPPED_PREFIX)]
            if leftovers and (entry / "manifest.json").exists():
                items.append(Item("resume state", entry, sum(map(size_of, leftovers)),
                                  "resume-only files of a done entry (a commit was cut short)", kind, key))
            continue
        if live_reason(store, kind, key, watch):
            continue
        done = (entry / "manifest.json").exists()
        items.append(Item("entry", entry, size_of(entry), "done, used by no kept key list" if done
                          else "unfinished, used by no kept key list, no live job", kind, key))
    for top, what in ((LOGS, "logs"), (QUARANTINE, "quarantine")):
        root = store.root / top
        if not root.is_dir():
            continue
        # _logs/<user>/<stage>/ and _quarantine/<kind>/<key.time>/: one item per leaf folder
        for sub in sorted(p for d in root.iterdir() if d.is_dir() for p in d.iterdir()):
            if not mine(sub):
                continue
            age = now - _newest_mtime(sub)
            if age > max_age_s:
                items.append(Item(what, sub, size_of(sub), f"untouched for {age / 86400:.1f} days"))
    return items


def delete(store: RunStore, items: tp.Iterable[Item], say: tp.Callable[[str], None] = print) -> int:
    """Removes the items; returns the bytes freed. An entry disappears at once (renamed away, then deleted) and
    only while its run lock is ours and no job is seen to hold it."""
    from jobs.executors import JobWatch

    freed = 0
    watch = JobWatch()
    for item in items:
        if item.what == "resume state":
            freed += drop_resume_state(item.path)
            continue
        if item.what != "entry":
            freed += item.bytes
            shutil.rmtree(item.path, ignore_errors=True)
            continue
        lock = filelock.FileLock(str(item.path / ".run.lock"))
        try:
            lock.acquire(timeout=0)
        except filelock.Timeout:
            say(f"kept {item.kind}/{item.key}: a job took its run lock")
            continue
        try:
            reason = live_reason(store, item.kind, item.key, watch, check_lock=False)
            if reason:
                say(f"kept {item.kind}/{item.key}: {reason}")
                continue
            trash = item.path.parent / f".{item.key}.gc.{uuid.uuid4().hex[:8]}"
            os.replace(item.path, trash)
        finally:
            lock.release()
        shutil.rmtree(trash, ignore_errors=True)
        freed += item.bytes
    return freed
