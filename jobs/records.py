"""job.json, the record of the job computing an entry: written by the driver that submitted it, read by every
driver that may adopt it, and acted on (cancelled, deleted, its log read) only by the user who wrote it.

In a group-shared store any member can write any entry's job.json. Watching a recorded job (waiting for it,
adopting what it commits) is what sharing a store means; acting on one is not. A record is *own* when the file,
reached from the store root without following a link, is a regular file owned by this uid, writable by no one
else, and names the entry it lies in (`unit`): a member cannot forge one, nor move one of ours from another entry
(whose job holds other units) into an entry our stage no longer needs. Others' records are skipped with a message,
never acted on, never an exception. Any content is survived: a record that is not a small valid one is no record.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pwd
import re
import stat
import typing as tp

from jobs import safefs
from jobs.executors import ElsewhereError, JobWatch, cancel_jobs
from jobs.layout import scan_store
from jobs.store import CLAIM, JOB, RunStore

log = logging.getLogger(__name__)

MAX_RECORD_BYTES = 64 * 1024  # a driver's records are < 1 KiB
UNIT = "unit"  # "<kind>/<key>": the entry the record was written for
OWNER = "_owner_uid"  # set by the reader from the file itself (keys from the file starting with "_" are dropped)
OWN = "_own"  # written by this uid and writable by no one else
HERE = "_here"  # OWN, and written for the entry it lies in: what acting on one unit (cancel_early) needs
TRUST = "_trust"  # why a record is not OWN, or not HERE, in words ("" when it is both)
EXECUTORS = ("local", "slurm", "debug", CLAIM)
JOB_ID_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def unit_field(kind: str, key: str) -> dict[str, str]:
    """What the driver adds to every record it writes (jobs.store.RunStore.record_jobs / claim extras)."""
    return {UNIT: f"{kind}/{key}"}


def _problem(record: tp.Any) -> str:
    """Why `record` is not a job record the driver could have written ("" when it is one)."""
    if not isinstance(record, dict):
        return f"a JSON {type(record).__name__}, not an object"
    job_id, executor = record.get("job_id"), record.get("executor")
    if not isinstance(job_id, str) or not JOB_ID_RE.match(job_id):
        return f"job_id {str(job_id)[:80]!r} is not a job id"
    if executor not in EXECUTORS:
        return f"executor {str(executor)[:80]!r} is not one of {', '.join(EXECUTORS)}"
    if executor == "local" and not job_id.isdigit():
        return f"local job_id {job_id!r} is not a process id"
    logs = record.get("log_paths", {})
    if not isinstance(logs, dict) or not all(isinstance(k, str) and isinstance(v, str) and len(v) < 4096
                                             for k, v in logs.items()):
        return "log_paths is not a mapping of names to paths"
    for name, types in (("host", (str,)), ("early", (str,)), ("folder", (str,)), ("desc", (str,)),
                        (UNIT, (str,)), ("submitted_at", (int, float)), ("driver_pid", (int,))):
        value = record.get(name)
        if value is not None and (not isinstance(value, types) or isinstance(value, bool)):
            return f"{name} {str(value)[:80]!r} has the wrong type"
    return ""


def _read(store: RunStore, kind: str, key: str) -> tuple[dict, os.stat_result] | None:
    rel = f"{kind}/{key[:2]}/{key}/{JOB}"
    where = f"{store.root}/{rel}"
    try:
        store.path(kind, key)  # kind and key validated
        fd = safefs.open_file(store.root, rel, os.O_RDONLY)  # no link followed anywhere under the root
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as e:
        _warn(where, str(e))
        return None
    with open(fd, "rb", closefd=True) as f:
        st = os.fstat(f.fileno())
        data = f.read(MAX_RECORD_BYTES + 1)
    if len(data) > MAX_RECORD_BYTES:
        _warn(where, f"larger than {MAX_RECORD_BYTES} bytes")
        return None
    try:
        record = json.loads(data.decode("utf-8"))
    except (ValueError, RecursionError) as e:  # UnicodeDecodeError is a ValueError
        _warn(where, f"not valid JSON ({type(e).__name__})")
        return None
    problem = _problem(record)
    if problem:
        _warn(where, problem)
        return None
    return {k: v for k, v in record.items() if not k.startswith("_")}, st


_warned: set[str] = set()


def _warn(where: str, why: str) -> None:
    if where not in _warned:  # drivers poll: once per file is enough
        _warned.add(where)
        log.warning("ignoring %s: %s", where, why)


def job_record(store: RunStore, kind: str, key: str) -> dict | None:
    """The entry's job.json (anyone's: for watching and adopting), None when absent or not a valid record."""
    found = _read(store, kind, key)
    return None if found is None else found[0]


def _distrust(st: os.stat_result) -> str:
    if st.st_uid != os.geteuid():
        return f"written by {_user(st.st_uid)}, not by you"
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"writable by others (mode {stat.filemode(st.st_mode)}), so anyone in the group may have written it"
    return ""


def _elsewhere(record: dict, kind: str, key: str) -> str:
    if record.get(UNIT) == f"{kind}/{key}":
        return ""
    return (f"written for {str(record.get(UNIT))[:80]!r}, not for the entry it lies in" if record.get(UNIT) else
            "written by an older driver (no 'unit' field naming its entry)")


def _user(uid: int) -> str:
    with contextlib.suppress(KeyError):
        return f"uid {uid} ({pwd.getpwuid(uid).pw_name})"
    return f"uid {uid}"


def owned_record(store: RunStore, kind: str, key: str) -> dict | None:
    """The entry's job.json with OWNER, OWN, HERE and TRUST set from the file and its place (content cannot fake
    them), and its kind and key."""
    found = _read(store, kind, key)
    if found is None:
        return None
    record, st = found
    why = _distrust(st)
    elsewhere = "" if why else _elsewhere(record, kind, key)
    return dict(record, kind=kind, key=key,
                **{OWNER: st.st_uid, OWN: not why, HERE: not why and not elsewhere, TRUST: why or elsewhere})


def pending_jobs(store: RunStore, kinds: tp.Collection[str] | None = None) -> list[dict]:
    """Valid job.json records (`owned_record`, with kind and key) of entries not done, of `kinds` (None: all)."""
    out = []
    for found in scan_store(store.root, kinds):
        if found.what != "entry":
            continue  # links and stray names: the store's walkers report them; nothing of ours is there
        kind, key = found.kind, found.key
        try:
            record = owned_record(store, kind, key)
            if record is not None and not store.is_done(kind, key):
                out.append(record)
        except (OSError, ValueError) as e:  # a hostile entry is skipped, never the end of the walk
            _warn(f"{store.root}/{kind}/{key[:2]}/{key}", str(e))
    return out


def skip_message(records: tp.Sequence[dict], what: str) -> list[str]:
    """One line per reason for the records given (not OWN or not HERE): left alone."""
    by_reason: dict[str, int] = {}
    for r in records:
        by_reason[r[TRUST]] = by_reason.get(r[TRUST], 0) + 1
    return [f"{what}: {n} job record{'s' if n > 1 else ''} {why}: left alone (only the user who wrote a record "
            "acts on it)" for why, n in sorted(by_reason.items())]


def _unlink_own(store: RunStore, record: dict) -> None:
    """Deletes the entry's job.json if it is still the own record that was read (not one put there since)."""
    with contextlib.suppress(OSError), safefs.dir_fd(store.root, f"{record['kind']}/{record['key'][:2]}/"
                                                                   f"{record['key']}") as entry:
        now = owned_record(store, record["kind"], record["key"])
        if now is not None and now[HERE] and now["job_id"] == record["job_id"]:
            os.unlink(JOB, dir_fd=entry)


def cancel_early(store: RunStore, kind: str, needed: tp.Collection[str],
                 say: tp.Callable[[str], None] = log.info) -> int:
    """A stage's first act: the `kind` units that an earlier stage of this user submitted early (job.json `early`)
    and that this stage does not need (their keys were computed from params since edited) are cancelled while
    their jobs are still pending (or, local, running), so they hold no GPU; their job.json is removed so that
    nothing adopts them. A job that also holds a needed unit is left alone, and so is every record this user did
    not write (another member's early units are theirs to cancel). Returns how many units were cancelled."""
    needed = set(needed)
    records = pending_jobs(store, (kind,))
    keep_jobs = {str(r["job_id"]) for r in records if r["key"] in needed}
    stale = [r for r in records if r["key"] not in needed and r.get("early") and str(r["job_id"]) not in keep_jobs]
    for line in skip_message([r for r in stale if not r[HERE]], f"{kind}: early units not cancelled"):
        say(line)
    stale = [r for r in stale if r[HERE]]
    if not stale:
        return 0
    watch = JobWatch()
    watch.refresh(stale, force=True)
    victims = []
    for record in stale:
        try:
            alive, state = watch.state(record)
        except ElsewhereError:
            continue  # started on another host: only that host can tell, and cancel it
        if alive and (state.startswith("PENDING") or record.get("executor") == "local"):
            victims.append(record)
    if victims:
        cancel_jobs(victims, say=say)
        for record in victims:
            _unlink_own(store, record)
        say(f"{kind}: cancelled {len(victims)} early units that no longer match the params (submitted by the "
            f"{sorted({str(r['early']) for r in victims})} stage under earlier settings)")
    return len(victims)
