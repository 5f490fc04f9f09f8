"""Copying done run-store entries by key between two stores (the local one and one on a shared path).

Only the files an entry's manifest lists travel, with the manifest. Either store may be group-writable, so nothing
read from it is trusted as a path: the manifest must name the requested kind and key, and every file name in it
must be a normalised relative name inside the entry (no `..`, no absolute, hidden or bookkeeping name, none twice);
both trees are reached through directory fds that follow no symlink, and only regular files are copied
(jobs.safefs). Each file is hashed while it is copied into a temporary directory that only the copier can enter,
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
import hashlib
import json
import os
import re
import stat
import typing as tp
import uuid

from jobs import safefs
from jobs.safefs import UnsafePath
from jobs.store import BOOKKEEPING, MANIFEST, SMALL_FILE, RunStore

MANIFEST_LIMIT = 16 << 20  # a real manifest lists a few files in a few KB
MAX_FILES = 10_000
MAX_PARTS = 32  # directory levels of a listed name
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
RUN_LOCK = ".run.lock"  # RunStore.run_lock's file: jobs flock() it, as _locked does


@dataclasses.dataclass
class Transfer:
    copied: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    present: list[tuple[str, str]] = dataclasses.field(default_factory=list)  # already there, same manifest
    missing: list[tuple[str, str]] = dataclasses.field(default_factory=list)  # not done in the source
    refused: list[tuple[str, str, str]] = dataclasses.field(default_factory=list)  # kind, key, why
    bytes: int = 0


class Refused(Exception):
    pass


class _Missing(Exception):
    pass


def _no_twice(pairs: list[tuple[str, tp.Any]]) -> dict[str, tp.Any]:
    out: dict[str, tp.Any] = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"key {k[:200]!r} appears twice")
        out[k] = v
    return out


def check_names(names: tp.Iterable[tp.Any], what: str) -> dict[str, tuple[str, ...]]:
    """{name: parts} of an entry's payload names, each a normalised relative POSIX name that is neither hidden nor
    bookkeeping, and never both a file and another file's directory; Refused naming the first bad one."""
    allowed = ("allowed: a normalised relative POSIX name inside the entry (parts separated by single '/'; no '.', "
               f"'..' or empty part, no leading '/' or '.', no backslash or NUL, at most {MAX_PARTS} parts)")
    out = {}
    for name in names:
        try:
            parts = safefs.check_relpath(name, f"{what}: file name")
        except UnsafePath:
            raise Refused(f"{what}: file name {str(name)[:200]!r} is refused; {allowed}") from None
        if "\\" in name or len(parts) > MAX_PARTS or any(p.startswith(".") for p in parts):
            raise Refused(f"{what}: file name {name[:200]!r} is refused; {allowed}")
        if name in BOOKKEEPING:
            raise Refused(f"{what}: {name!r} is a bookkeeping file of the store, never a result file of an entry")
        out[name] = parts
    dirs = {"/".join(parts[:i]) for parts in out.values() for i in range(1, len(parts))}
    clash = sorted(dirs & set(out))
    if clash:
        raise Refused(f"{what}: {clash[0][:200]!r} is listed both as a file and as the directory of other files")
    return out


def check_manifest(data: bytes, kind: str, key: str, where: str) -> tuple[dict, dict[str, tuple[str, ...]]]:
    """The manifest of entry `kind`/`key` and its payload names split into parts; Refused says what is wrong."""
    what = f"{MANIFEST} in {where}"
    try:
        manifest = json.loads(data.decode("utf-8"), object_pairs_hook=_no_twice)
    except (ValueError, RecursionError) as e:  # UnicodeDecodeError is a ValueError
        raise Refused(f"{what} is not valid JSON ({type(e).__name__}: {str(e)[:200]})") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        raise Refused(f"{what} has no file list")
    if manifest.get("kind") != kind or manifest.get("key") != key:
        raise Refused(f"{what} is the manifest of {str(manifest.get('kind'))[:40]}/{str(manifest.get('key'))[:80]}, "
                      f"not of the requested {kind}/{key}: not copied")
    files = manifest["files"]
    if len(files) > MAX_FILES:
        raise Refused(f"{what} lists {len(files)} files, more than the {MAX_FILES} allowed")
    names = check_names(files, what)
    for rel, info in files.items():
        ok = isinstance(info, dict) and type(info.get("size")) is int and info["size"] >= 0 \
            and isinstance(info.get("sha256"), str) and SHA256_RE.match(info["sha256"]) \
            and type(info.get("mtime_ns", 0)) is int
        if not ok:
            raise Refused(f"{what}: the record of {rel!r} needs an integer size >= 0, a sha256 of 64 lowercase hex "
                          "digits and an optional integer mtime_ns")
    return manifest, names


def _hash_fd(fd: int, size: int, out: int | None = None) -> str:
    """sha256 of what `fd` holds (written to `out` too), or '' when it does not hold exactly `size` bytes."""
    h, total = hashlib.sha256(), 0
    while total <= size:
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            break
        h.update(chunk)
        total += len(chunk)
        if out is not None:
            view = memoryview(chunk)
            while view:
                view = view[os.write(out, view):]
    return h.hexdigest() if total == size else ""


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


def _copy_into(src_fd: int, tmp_fd: int, names: dict[str, tuple[str, ...]], manifest: dict, manifest_bytes: bytes,
               where: str, umask: int) -> int:
    """Copies and hashes every listed file into the private directory `tmp_fd`; returns the bytes copied."""
    files, total = manifest["files"], 0
    made: set[tuple[str, ...]] = {()}
    for rel, parts in sorted(names.items()):
        info = files[rel]
        made.update(parts[:i] for i in range(1, len(parts)))
        try:
            sfd = safefs.open_file(src_fd, rel)
        except (FileNotFoundError, NotADirectoryError):
            raise Refused(f"source {where}: {rel} is missing") from None
        with contextlib.ExitStack() as stack:
            stack.callback(os.close, sfd)
            st = os.fstat(sfd)
            with safefs.dir_fd(tmp_fd, "/".join(parts[:-1]), create=True, mode=0o700) as ddir:
                dfd = _new_file(ddir, parts[-1])
            stack.callback(os.close, dfd)
            if st.st_size != info["size"] or _hash_fd(sfd, info["size"], dfd) != info["sha256"]:
                raise Refused(f"source {where}: {rel} does not match its sha256 in {MANIFEST}")
            os.fsync(dfd)
            mtime = info.get("mtime_ns") or st.st_mtime_ns
            os.utime(dfd, ns=(mtime, mtime))
            os.fchmod(dfd, 0o666 & ~umask)
        total += info["size"]
    fd = _new_file(tmp_fd, MANIFEST)
    try:
        view = memoryview(manifest_bytes)
        while view:
            view = view[os.write(fd, view):]
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


def _copy_one(src: RunStore, dest: RunStore, kind: str, key: str,
              is_live: tp.Callable[[RunStore, str, str], str]) -> int | None:
    """Bytes copied, None when `dest` has the entry already; _Missing when the source has no committed entry;
    Refused with why."""
    where = str(src.path(kind, key))
    try:
        entry = safefs.open_dir(src.root, f"{kind}/{key[:2]}/{key}")
    except (FileNotFoundError, NotADirectoryError):
        raise _Missing() from None
    try:
        try:
            data = safefs.read_bytes(entry, MANIFEST, MANIFEST_LIMIT)
        except (FileNotFoundError, NotADirectoryError):
            raise _Missing() from None
        except (UnsafePath, safefs.CorruptRecord) as e:
            raise Refused(f"source {where}: {e}") from None
        manifest, names = check_manifest(data, kind, key, where)
        # the source is hashed once, while it is copied: _copy_into refuses it there if it does not match
        return _to_dest(entry, where, dest, kind, key, (manifest, data, names), is_live)
    finally:
        os.close(entry)


def _to_dest(src_entry: int, src_where: str, dest: RunStore, kind: str, key: str,
             listed: tuple[dict, bytes, dict[str, tuple[str, ...]]],
             is_live: tp.Callable[[RunStore, str, str], str]) -> int | None:
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
                total = _copy_into(src_entry, tmp_fd, names, manifest, data, src_where, umask)
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


def copy_entries(src: RunStore, dest: RunStore, keys: tp.Iterable[tuple[str, str]],
                 is_live: tp.Callable[[RunStore, str, str], str] = lambda s, k, key: "") -> Transfer:
    """Copies every done (kind, key) of `src` that `dest` lacks; `is_live(dest, kind, key)` says why a job holds a
    destination entry ('' when none does). Nothing read from either store is followed or trusted as a path; what
    cannot be copied safely is in `refused`, with why."""
    out = Transfer()
    for kind, key in sorted({(str(k), str(v)) for k, v in keys}):
        try:
            src.path(kind, key)  # a kind or key that is no store name: ValueError, which says what is allowed
            copied = _copy_one(src, dest, kind, key, is_live)
        except _Missing:
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
