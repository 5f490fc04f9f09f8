"""Copying done run-store entries by key between two stores (the local one and one on a shared path, or a remote
one: jobs.remote_fs).

Only the files an entry's manifest lists travel, with the manifest. Either store may be group-writable, so nothing
read from it is trusted as a path: the manifest must name the requested kind and key, and every file name in it
must be a normalised relative name inside the entry (no `..`, no absolute, hidden or bookkeeping name, none twice;
jobs.share_names); both trees are reached through directory fds that follow no symlink, and only regular files are
copied (jobs.safefs). Each file is hashed while it is copied into a temporary directory that only the copier can enter,
next to its destination: a source whose bytes do not match its manifest's sha256 is refused. Files, manifest and
directories are fsynced and given the manifest's mtimes (so later cheap checks pass), then the copy is renamed
into place under the entry's run lock: a reader never sees half an entry, and a job that took the lock first keeps
its entry.

An existing destination entry is replaced only if it differs, no job holds it, and it is the caller's own (its
directory owned by the caller): a lab member's pull or push never removes another member's work. A manifest is a
checksum list, not a signature: it detects corruption and mix-ups, not an entry forged by someone who may write
to the source; a remote is as trustworthy as the people who can write to it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import functools
import hashlib
import json
import os
import stat
import typing as tp
import uuid

from jobs import safefs
from jobs.safefs import UnsafePath
from jobs.share_names import MANIFEST_LIMIT, Refused, check_manifest, check_names
from jobs.store import MANIFEST, SMALL_FILE, RunStore

__all__ = ["MANIFEST_LIMIT", "Missing", "Refused", "Transfer", "check_manifest", "check_names", "copy_entries"]

if tp.TYPE_CHECKING:
    from jobs.remote_fs import RemoteStore

RUN_LOCK = ".run.lock"  # RunStore.run_lock's file: jobs flock() it, as _locked does


@dataclasses.dataclass
class Transfer:
    copied: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    present: list[tuple[str, str]] = dataclasses.field(default_factory=list)  # already there, same manifest
    missing: list[tuple[str, str]] = dataclasses.field(default_factory=list)  # not done in the source
    refused: list[tuple[str, str, str]] = dataclasses.field(default_factory=list)  # kind, key, why
    bytes: int = 0


class Missing(Exception):
    """The source has no committed entry of the key."""


Listed = tuple[dict, bytes, dict[str, tuple[str, ...]]]  # a checked manifest, its bytes, its names split in parts


def hash_stream(read: tp.Callable[[int], bytes], size: int, write: tp.Callable[[bytes], tp.Any] | None = None) -> str:
    """sha256 of what `read` returns (passed to `write` too), or '' when it returns other than exactly `size` bytes
    (reading stops a chunk past `size`: a source that grows without end is not read to its end)."""
    h, total = hashlib.sha256(), 0
    while total <= size:
        chunk = read(1 << 20)
        if not chunk:
            break
        h.update(chunk)
        total += len(chunk)
        if write is not None:
            write(chunk)
    return h.hexdigest() if total == size else ""


def _hash_fd(fd: int, size: int, out: int | None = None) -> str:
    return hash_stream(lambda n: os.read(fd, n), size, None if out is None else lambda b: _write_all(out, b))


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


class Source(tp.NamedTuple):
    """One listed file of a source entry, open for reading."""
    read: tp.Callable[[int], bytes]
    size: int  # what the source says it holds (its stat or listing), checked before hashing
    mtime_ns: int | None  # None where the source has none to give (a remote)


OpenSource = tp.Callable[[str], tp.ContextManager[Source]]


@contextlib.contextmanager
def local_source(entry_fd: int, where: str, rel: str) -> tp.Iterator[Source]:
    """`rel` of the entry `entry_fd`, reached without following a link; Refused when it is missing."""
    try:
        fd = safefs.open_file(entry_fd, rel)
    except (FileNotFoundError, NotADirectoryError):
        raise Refused(f"source {where}: {rel} is missing") from None
    try:
        st = os.fstat(fd)
        yield Source(lambda n: os.read(fd, n), st.st_size, st.st_mtime_ns)
    finally:
        os.close(fd)


def _problem(entry_fd: int, files: dict) -> str:
    """Why the entry's files do not match `files` ('' when they do); hashes small files and those whose mtime
    differs from the manifest's, as RunStore.damage(verify="changed") does."""
    for rel, info in sorted(files.items()):
        try:
            fd = safefs.open_file(entry_fd, rel)
        except (FileNotFoundError, NotADirectoryError):
            return f"{rel} is missing"
        except UnsafePath as e:
            return str(e)
        try:
            st = os.fstat(fd)
            if st.st_size != info["size"]:
                return f"{rel} has {st.st_size} bytes, {MANIFEST} says {info['size']}"
            if st.st_size > SMALL_FILE and st.st_mtime_ns == info.get("mtime_ns"):
                continue
            if _hash_fd(fd, info["size"]) != info["sha256"]:
                return f"{rel} does not match its sha256 in {MANIFEST}"
        finally:
            os.close(fd)
    return ""


def _new_file(dir_fd: int, name: str) -> int:
    return os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dir_fd)


def _copy_into(open_src: OpenSource, tmp_fd: int, names: dict[str, tuple[str, ...]], manifest: dict,
               manifest_bytes: bytes, where: str, umask: int) -> int:
    """Copies and hashes every listed file into the private directory `tmp_fd`; returns the bytes copied."""
    files, total = manifest["files"], 0
    made: set[tuple[str, ...]] = {()}
    for rel, parts in sorted(names.items()):
        info = files[rel]
        made.update(parts[:i] for i in range(1, len(parts)))
        with open_src(rel) as src, contextlib.ExitStack() as stack:
            with safefs.dir_fd(tmp_fd, "/".join(parts[:-1]), create=True, mode=0o700) as ddir:
                dfd = _new_file(ddir, parts[-1])
            stack.callback(os.close, dfd)
            if src.size != info["size"] or _hash_to(src, info["size"], dfd) != info["sha256"]:
                raise Refused(f"source {where}: {rel} does not match its sha256 in {MANIFEST}")
            os.fsync(dfd)
            mtime = info.get("mtime_ns") or src.mtime_ns
            if mtime:
                os.utime(dfd, ns=(mtime, mtime))
            os.fchmod(dfd, 0o666 & ~umask)
        total += info["size"]
    fd = _new_file(tmp_fd, MANIFEST)
    try:
        _write_all(fd, manifest_bytes)
        os.fsync(fd)
        os.fchmod(fd, 0o666 & ~umask)
    finally:
        os.close(fd)
    for parts in sorted(made, key=len, reverse=True):  # deepest first: each directory after what it holds
        with safefs.dir_fd(tmp_fd, "/".join(parts)) as d:
            with contextlib.suppress(OSError):  # some filesystems refuse fsync on a directory
                os.fsync(d)
            os.fchmod(d, 0o777 & ~umask)  # an entry's usual mode (the lab's umask), now that it is complete
    return total


def _hash_to(src: Source, size: int, out: int) -> str:
    return hash_stream(src.read, size, lambda b: _write_all(out, b))


def _locked(entry_fd: int, where: str) -> int:
    """An fd holding the entry's run lock (flock, as jobs take it); Refused if a job holds it. Opened read-only:
    locking needs no write access, so another member's lock file (0644 under umask 022) is locked all the same."""
    try:
        fd = os.open(RUN_LOCK, os.O_RDONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o664,
                     dir_fd=entry_fd)
    except OSError as e:
        raise Refused(f"destination {where}: cannot open its run lock {RUN_LOCK} ({e.strerror}): not replaced") \
            from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise Refused(f"destination {where}: {RUN_LOCK} is not a regular file: not replaced")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise Refused(f"destination {where} is held by a job (its run lock): not replaced") from None
            raise
    except BaseException:
        os.close(fd)
        raise
    return fd


def _remove_held(parent_fd: int, name: str, fd: int) -> None:
    """Removes directory `name` through `fd`, the directory opened earlier: a directory someone swapped in under
    the name meanwhile is not what gets emptied, and only an empty one lets go of the name."""
    for child in os.listdir(fd):
        safefs.remove(fd, child)
    with contextlib.suppress(OSError):
        os.rmdir(name, dir_fd=parent_fd)


def _install(parent_fd: int, key: str, tmp: str, where: str, umask: int) -> None:
    """Renames the complete copy `tmp` to `key` under the entry's run lock (its directory made first if there is
    no entry, so that a job starting meanwhile finds the lock taken)."""
    with contextlib.suppress(FileExistsError):
        os.mkdir(key, 0o777 & ~umask, dir_fd=parent_fd)
    entry = safefs.open_dir(parent_fd, key)
    try:
        owner = os.fstat(entry).st_uid
        if owner != os.geteuid() and os.geteuid() != 0:
            raise Refused(f"destination {where} is an entry of uid {owner}, not yours, that differs from the source: "
                          "not replaced (only its owner may replace it)")
        lock = _locked(entry, where)
        old = f".{key}.replaced.{uuid.uuid4().hex[:8]}"
        try:
            os.rename(key, old, src_dir_fd=parent_fd, dst_dir_fd=parent_fd)
            moved, held = os.stat(old, dir_fd=parent_fd, follow_symlinks=False), os.fstat(entry)
            if (moved.st_dev, moved.st_ino) != (held.st_dev, held.st_ino):
                os.rename(old, key, src_dir_fd=parent_fd, dst_dir_fd=parent_fd)
                raise Refused(f"destination {where} was replaced by someone else while being locked: not replaced")
            os.rename(tmp, key, src_dir_fd=parent_fd, dst_dir_fd=parent_fd)
            with contextlib.suppress(OSError):
                os.fsync(parent_fd)
        finally:
            os.close(lock)
        _remove_held(parent_fd, old, entry)
    finally:
        os.close(entry)


@contextlib.contextmanager
def source_entry(src: RunStore, kind: str, key: str) -> tp.Iterator[tuple[int, str, Listed]]:
    """The fd of a local store's committed entry, where it is, and its checked manifest; Missing when the store has
    no committed entry; Refused with why."""
    where = str(src.path(kind, key))
    try:
        entry = safefs.open_dir(src.root, f"{kind}/{key[:2]}/{key}")
    except (FileNotFoundError, NotADirectoryError):
        raise Missing() from None
    try:
        try:
            data = safefs.read_bytes(entry, MANIFEST, MANIFEST_LIMIT)
        except (FileNotFoundError, NotADirectoryError):
            raise Missing() from None
        except (UnsafePath, safefs.CorruptRecord) as e:
            raise Refused(f"source {where}: {e}") from None
        manifest, names = check_manifest(data, kind, key, where)
        yield entry, where, (manifest, data, names)
    finally:
        os.close(entry)


def _copy_one(src: RunStore, dest: RunStore, kind: str, key: str,
              is_live: tp.Callable[[RunStore, str, str], str]) -> int | None:
    """Bytes copied, None when `dest` has the entry already; Missing when the source has no committed entry;
    Refused with why."""
    with source_entry(src, kind, key) as (entry, where, listed):
        # the source is hashed once, while it is copied: _copy_into refuses it there if it does not match
        return to_dest(functools.partial(local_source, entry, where), where, dest, kind, key, listed, is_live)


def to_dest(open_src: OpenSource, src_where: str, dest: RunStore, kind: str, key: str, listed: Listed,
            is_live: tp.Callable[[RunStore, str, str], str]) -> int | None:
    """Puts the entry whose checked manifest is `listed` into the local store `dest`, each file read through
    `open_src` into a private directory beside its destination, verified, then renamed in under the run lock;
    None when `dest` has it already."""
    manifest, data, names = listed
    where, umask = str(dest.path(kind, key)), _umask()
    dest.root.mkdir(parents=True, exist_ok=True)
    parent = safefs.open_dir(dest.root, f"{kind}/{key[:2]}", create=True)
    try:
        if _present(parent, key, manifest):
            return None
        there = safefs.lstat(parent, key)
        if there is not None and not stat.S_ISDIR(there.st_mode):
            raise Refused(f"destination {where} is a symbolic link or a file (owned by uid {there.st_uid}), not an "
                          "entry: not followed, not replaced")
        if there is not None:
            reason = is_live(dest, kind, key)
            if reason:
                raise Refused(f"destination {where} is held by a job ({reason})")
        tmp = f".{key}.incoming.{uuid.uuid4().hex[:8]}"
        os.mkdir(tmp, 0o700, dir_fd=parent)  # private until complete: no one else can enter it meanwhile
        tmp_fd = safefs.open_dir(parent, tmp)
        try:
            try:
                total = _copy_into(open_src, tmp_fd, names, manifest, data, src_where, umask)
                _install(parent, key, tmp, where, umask)
            except BaseException:
                _remove_held(parent, tmp, tmp_fd)
                raise
        finally:
            os.close(tmp_fd)
        return total
    finally:
        os.close(parent)


def _present(parent: int, key: str, manifest: dict) -> bool:
    try:
        entry = safefs.open_dir(parent, key)
    except (FileNotFoundError, NotADirectoryError, UnsafePath):
        return False
    try:
        theirs = json.loads(safefs.read_bytes(entry, MANIFEST, MANIFEST_LIMIT))
        return isinstance(theirs, dict) and theirs.get("files") == manifest["files"] and \
            not _problem(entry, manifest["files"])
    except (OSError, ValueError, RecursionError):
        return False
    finally:
        os.close(entry)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def copy_entries(src: RunStore | RemoteStore, dest: RunStore | RemoteStore, keys: tp.Iterable[tuple[str, str]],
                 is_live: tp.Callable[[RunStore, str, str], str] = lambda s, k, key: "") -> Transfer:
    """Copies every done (kind, key) of `src` that `dest` lacks; `is_live(dest, kind, key)` says why a job holds a
    local destination entry ('' when none does). Either store may be a remote one (jobs.remote_fs: any filesystem
    DVC reaches), the other then local. Nothing read from either store is followed or trusted as a path; what
    cannot be copied safely is in `refused`, with why."""
    out = Transfer()
    for kind, key in sorted({(str(k), str(v)) for k, v in keys}):
        try:
            src.path(kind, key)  # a kind or key that is no store name: ValueError, which says what is allowed
            if isinstance(src, RunStore) and isinstance(dest, RunStore):
                copied = _copy_one(src, dest, kind, key, is_live)
            else:
                from jobs import remote_fs  # it builds on this module

                copied = remote_fs.copy_one(src, dest, kind, key, is_live)
        except Missing:
            out.missing.append((kind, key))
        except (Refused, ValueError) as e:
            out.refused.append((kind, key, str(e)))
        except OSError as e:  # a link refused on the way (UnsafePath), a permission, a full disk
            out.refused.append((kind, key, f"{type(e).__name__}: {e}"))
        else:
            if copied is None:
                out.present.append((kind, key))
            else:
                out.copied.append((kind, key))
                out.bytes += copied
    return out
