"""What a run store can lose: entries no kept key list names, old job logs and quarantine; never a live entry.

`plan(store, used, max_age_s)` lists the candidates (kind, path, bytes, why); `delete(store, items)` removes them,
each entry under its run lock and only after checking again that no job holds it. Which keys are used is the
caller's business (pipeline/store_cli.py: the current params and the unit lists of recent commits). The code
snapshots (`_code/`, jobs/snapshot.py) of the running user that no entry gc keeps names in its manifest
(`meta.code`) go too, once untouched for `max_age_s`, and none at all while an unfinished entry of the store may
still have a job (its snapshot is named only in the job's own pickle).

On a group-shared store every member can write where entries, logs and quarantine live, so the store is walked
with lstat and directory fds (jobs.safefs): a symbolic link is listed as one and, deleted, goes as the link itself,
never its target; a name that is not a key where an entry belongs is listed, not a crash. `delete` removes only
what the running uid owns: another member's entries and folders (and anything holding their files) are listed as
"owned by X, skipped" (with `all_users`) and left alone.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import os
import stat
import time
import typing as tp
import uuid
from pathlib import Path

from jobs import safefs
from jobs.layout import Found, scan_store
from jobs.snapshot import SNAPSHOTS
from jobs.store import DROPPED_PREFIX, MANIFEST, QUARANTINE, RESUME, RunStore, _user, claim_alive, drop_resume_state

LOGS = "_logs"
RUN_LOCK = ".run.lock"


@dataclasses.dataclass
class Item:
    what: str  # "entry", "resume state", "logs", "quarantine", "code snapshot", "symlink", "stray", "unreadable"
    path: Path
    bytes: int
    why: str
    kind: str = ""
    key: str = ""
    rel: str = ""  # under the store root: what delete walks to, without following links
    owner: int = -1
    skip: str = ""  # why delete leaves it alone ("" when the running uid may delete it)


def owner_name(uid: int) -> str:
    return f"{_user(uid)} (uid {uid})"


def _skip(info: safefs.TreeInfo, owner: int, me: int) -> str:
    if owner != me:
        return f"owned by {owner_name(owner)}, skipped"
    others = sorted(info.uids - {me})
    if others:
        return f"holds files of {', '.join(map(owner_name, others))}, skipped"
    if info.unvisited:
        return f"not walked entirely ({info.unvisited[0]}), skipped"
    return ""


def _item(store: RunStore, what: str, rel: str, st: os.stat_result, why: str, me: int, **kw: tp.Any) -> Item:
    info = safefs.tree(store.root, rel)
    skip = _skip(info, st.st_uid, me) if what != "unreadable" else "cannot be read, skipped"
    return Item(what, store.root / rel, info.bytes, why, rel=rel, owner=st.st_uid, skip=skip, **kw)


def entries(store: RunStore) -> tp.Iterator[tuple[str, str, Path]]:
    """(kind, key, path) of every entry directory; links and odd names are left out (`scan_store` reports them)."""
    for found in scan_store(store.root):
        if found.what == "entry":
            yield found.kind, found.key, store.root / found.rel


def _try_lock(entry: int) -> int | None:
    """An fd holding the entry's run lock (flock, as filelock takes it), None when a job holds it. The lock file is
    opened in the entry's directory fd without following a link; one that cannot be opened raises OSError."""
    try:
        fd = os.open(RUN_LOCK, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o664,
                     dir_fd=entry)
    except PermissionError:  # another member's lock file, not writable by us: flock needs no write access
        fd = os.open(RUN_LOCK, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=entry)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise safefs.UnsafePath(f"{RUN_LOCK} is not a regular file")
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        os.close(fd)
        if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return None
        raise
    return fd


def live_reason(store: RunStore, kind: str, key: str, watch: tp.Any = None, check_lock: bool = True) -> str:
    """Why a job may hold this entry now ('' when none does): a run lock held, a fresh heartbeat, a submission
    claim alive, or a recorded job the scheduler (or ps) still shows. What cannot be judged counts as held."""
    from jobs.job import heartbeat_every_s
    from jobs.outcome import HEARTBEAT_STALE_AFTER

    rel = store.path(kind, key).relative_to(store.root).as_posix()
    if check_lock:
        try:
            with safefs.dir_fd(store.root, rel) as entry:
                if safefs.lstat(entry, RUN_LOCK) is not None:
                    fd = _try_lock(entry)
                    if fd is None:
                        return "its run lock is held"
                    os.close(fd)
        except (FileNotFoundError, NotADirectoryError):
            return ""
        except OSError as e:
            return f"its run lock cannot be checked ({e})"
    beat = store.heartbeat(kind, key)
    if beat is not None and beat["age_s"] < HEARTBEAT_STALE_AFTER * heartbeat_every_s():
        return f"heartbeat {beat['age_s']:.0f}s ago from job {str(beat.get('job_id'))[:40]}"
    record = store.job_record(kind, key)
    if record is not None and safefs.lstat(store.root, f"{rel}/{MANIFEST}") is None:
        if record.get("executor") == "claim":
            return "a driver is submitting it" if claim_alive(record) else ""
        if watch is not None:
            try:
                alive, state = watch.state(record)
            except RuntimeError as e:  # another host's local job: we cannot tell, so it counts as alive
                return f"job {str(record.get('job_id'))[:40]}: {e}"
            except Exception as e:  # noqa: BLE001 - a job.json no driver wrote: nothing to judge it by
                return f"its job.json cannot be judged ({type(e).__name__})"
            if alive:
                return f"job {record.get('job_id')} is {state}"
    return ""


def plan(store: RunStore, used: set[tuple[str, str]], max_age_s: float, now: float | None = None,
         all_users: bool = False) -> list[Item]:
    """Entries not in `used` ((kind, key) pairs), resume state left in done entries, logs and quarantine older
    than `max_age_s`, and whatever does not belong where it lies (links, non-key names); entries a live job holds
    are left out, and so are (unless `all_users`) entries and folders another user made: on a shared store, `used`
    only knows this checkout's params and commits. Items delete would not touch say why in `skip`."""
    from jobs.executors import JobWatch

    now = time.time() if now is None else now
    me = os.geteuid()
    found = list(scan_store(store.root))
    watch = JobWatch()
    records = [r for f in found if f.what == "entry" for r in [store.job_record(f.kind, f.key)] if r]
    with contextlib.suppress(Exception):  # no sacct here: states come from ps / the claims alone
        watch.refresh(records, force=True)
    items = []
    for f in found:
        if f.what != "entry":
            items.append(_item(store, f.what, f.rel, f.st, f.why, me))
        elif f.st.st_uid == me or all_users:
            items += _entry_items(store, f, used, watch, me)
    for top, what in ((LOGS, "logs"), (QUARANTINE, "quarantine")):
        items += _old_folders(store, top, what, now, max_age_s, me, all_users)
    going = {(i.kind, i.key) for i in items if i.what == "entry"}
    kept = [f for f in found if f.what == "entry" and (f.kind, f.key) not in going]
    return items + _snapshot_items(store, kept, watch, now, max_age_s, me)


def _snapshot_items(store: RunStore, kept: list[Found], watch: tp.Any, now: float, max_age_s: float,
                    me: int) -> list[Item]:
    """The running user's code snapshots (`_code/u<uid>/<xx>/<digest>/`, and `_code/<xx>/<digest>/` of earlier
    versions when theirs) that no kept done entry names and that are untouched for `max_age_s`; none while a kept
    unfinished entry may have a job, which names its snapshot only in its pickle."""
    named = set()
    for f in kept:
        if safefs.lstat(store.root, f"{f.rel}/{MANIFEST}") is None:
            if live_reason(store, f.kind, f.key, watch):
                return []
            continue
        code = ((store.manifest(f.kind, f.key) or {}).get("meta") or {}).get("code")
        if isinstance(code, str):
            named.add(code)
    items: list[Item] = []
    for top in (f"{SNAPSHOTS}/u{me}", SNAPSHOTS):
        st = safefs.lstat(store.root, top)
        for prefix, pst in _children(store, top, st, me, items) if st is not None else []:
            if len(prefix) != 2 or not all(c in "0123456789abcdef" for c in prefix):
                continue  # u<uid> folders (and what is not a snapshot's) are not this level's
            for digest, dst in _children(store, f"{top}/{prefix}", pst, me, items):
                rel = f"{top}/{prefix}/{digest}"
                if digest in named or digest.startswith(".") or dst.st_uid != me or not stat.S_ISDIR(dst.st_mode):
                    continue
                info = safefs.tree(store.root, rel)
                age = now - info.newest_mtime
                if age > max_age_s:
                    items.append(Item("code snapshot", store.root / rel, info.bytes,
                                      f"named by no kept entry, untouched for {age / 86400:.1f} days", rel=rel,
                                      owner=me, skip=_skip(info, me, me)))
    return items


def _writable(store: RunStore, rel: str, me: int) -> None:
    """Gives the owner write access to every directory of a read-only tree (a code snapshot) before it is removed,
    through directory fds that follow no link; what another uid owns is left as it is (and then kept)."""
    with safefs.dir_fd(store.root, rel) as fd:
        if os.fstat(fd).st_uid == me:
            os.fchmod(fd, stat.S_IRWXU)
        for sub, st in safefs.walk(store.root, rel):
            if stat.S_ISDIR(st.st_mode) and st.st_uid == me:
                with safefs.dir_fd(store.root, f"{rel}/{sub}") as child:
                    os.fchmod(child, stat.S_IRWXU)


def _entry_items(store: RunStore, f: Found, used: set[tuple[str, str]], watch: tp.Any, me: int) -> list[Item]:
    done = safefs.lstat(store.root, f"{f.rel}/{MANIFEST}") is not None
    if (f.kind, f.key) in used:
        if f.st.st_uid != me or not done:
            return []
        try:
            leftovers = [n for n, _ in safefs.scan(store.root, f.rel) if n == RESUME or n.startswith(DROPPED_PREFIX)]
        except OSError:
            return []
        if not leftovers:
            return []
        infos = [safefs.tree(store.root, f"{f.rel}/{n}") for n in leftovers]
        return [Item("resume state", store.root / f.rel, sum(i.bytes for i in infos),
                     "resume-only files of a done entry (a commit was cut short)", f.kind, f.key, rel=f.rel,
                     owner=me, skip=next((s for i in infos if (s := _skip(i, me, me))), ""))]
    if live_reason(store, f.kind, f.key, watch):
        return []
    why = "done, used by no kept key list" if done else "unfinished, used by no kept key list, no live job"
    return [_item(store, "entry", f.rel, f.st, why, me, kind=f.kind, key=f.key)]


def _scan(store: RunStore, rel: str, st: os.stat_result, me: int, out: list[Item]) -> list[tuple[str, os.stat_result]]:
    try:
        return safefs.scan(store.root, rel)
    except FileNotFoundError:
        return []
    except OSError as e:
        out.append(_item(store, "unreadable", rel, st, f"cannot be read ({e.strerror or e})", me))
        return []


def _children(store: RunStore, rel: str, st: os.stat_result, me: int, out: list[Item]) -> list[tuple[str, os.stat_result]]:
    """The (name, lstat) of a directory's children; a link there is an item of `out` and is not entered."""
    if stat.S_ISLNK(st.st_mode):
        out.append(_item(store, "symlink", rel, st, "a symbolic link where a folder belongs (never followed)", me))
        return []
    return _scan(store, rel, st, me, out) if stat.S_ISDIR(st.st_mode) else []


def _old_folders(store: RunStore, top: str, what: str, now: float, max_age_s: float, me: int,
                 all_users: bool) -> list[Item]:
    """`_logs/<user>/<stage>/` and `_quarantine/<kind>/<key.time>/`: one item per leaf untouched for longer than
    `max_age_s`; a link on the way is an item of its own."""
    items: list[Item] = []
    st = safefs.lstat(store.root, top)
    for name, nst in _children(store, top, st, me, items) if st is not None else []:
        rel = f"{top}/{name}"
        for sub, sst in _children(store, rel, nst, me, items):
            leaf = f"{rel}/{sub}"
            if stat.S_ISLNK(sst.st_mode):
                items.append(_item(store, "symlink", leaf, sst, f"a symbolic link in {rel}/ (never followed)", me))
                continue
            if sst.st_uid != me and not all_users:
                continue
            info = safefs.tree(store.root, leaf)
            age = now - info.newest_mtime
            if age > max_age_s:
                items.append(Item(what, store.root / leaf, info.bytes, f"untouched for {age / 86400:.1f} days",
                                  rel=leaf, owner=sst.st_uid, skip=_skip(info, sst.st_uid, me)))
    return items


def delete(store: RunStore, items: tp.Iterable[Item], say: tp.Callable[[str], None] = print) -> int:
    """Removes the items the running uid owns entirely; returns the bytes freed. An entry disappears at once
    (renamed away, then deleted) and only while its run lock is ours and no job is seen to hold it. Nothing is
    followed: a link goes as the link itself."""
    from jobs.executors import JobWatch

    me = os.geteuid()
    freed = 0
    watch = JobWatch()
    for item in items:
        name = f"{item.kind}/{item.key}" if item.key else item.rel
        try:
            st = safefs.lstat(store.root, item.rel)
        except OSError as e:
            say(f"kept {name}: cannot be reached without following a link ({e})")
            continue
        if st is None:
            continue
        if st.st_uid != me or item.skip or item.what == "unreadable":
            say(f"kept {name}: {item.skip or f'owned by {owner_name(st.st_uid)}, skipped'}")
            continue
        if item.what == "resume state":
            with safefs.dir_fd(store.root, item.rel) as fd:
                freed += drop_resume_state(fd, owner=me)
            continue
        info = safefs.tree(store.root, item.rel)
        problem = _skip(info, st.st_uid, me)  # checked again: others may have written into it since the listing
        if problem:
            say(f"kept {name}: {problem}")
            continue
        if item.what == "entry":
            freed += _delete_entry(store, item, watch, say, me)
            continue
        if item.what == "code snapshot":
            _writable(store, item.rel, me)
        removed = safefs.remove(store.root, item.rel, owner=me)
        freed += removed.bytes
        for kept in removed.kept:
            say(f"left {kept}")
    return freed


def _delete_entry(store: RunStore, item: Item, watch: tp.Any, say: tp.Callable[[str], None], me: int) -> int:
    prefix, key = item.rel.rsplit("/", 1)
    trash = f".{key}.gc.{uuid.uuid4().hex[:8]}"
    try:
        with safefs.dir_fd(store.root, prefix) as parent, safefs.dir_fd(parent, key) as entry:
            lock = _try_lock(entry)
            if lock is None:
                say(f"kept {item.kind}/{item.key}: a job took its run lock")
                return 0
            try:
                reason = live_reason(store, item.kind, item.key, watch, check_lock=False)
                if reason:
                    say(f"kept {item.kind}/{item.key}: {reason}")
                    return 0
                os.rename(key, trash, src_dir_fd=parent, dst_dir_fd=parent)
            finally:
                os.close(lock)
            removed = safefs.remove(parent, trash, owner=me)
    except OSError as e:
        say(f"kept {item.kind}/{item.key}: {e}")
        return 0
    for kept in removed.kept:
        say(f"left {prefix}/{kept}")
    return removed.bytes
