"""File operations under a root that other people can write into (a group-shared run store).

A group member can plant a symbolic link, a FIFO, a non-key name, a mount point or a hostile file anywhere they may
write. Everything here reaches a path only through directory file descriptors opened from the root, one component
at a time with `O_NOFOLLOW`, so the path a call acts on is the one under the root, never a link's target, and stays
on the root's filesystem (`st_dev`). Names are checked to be plain relative names (no `..`, no absolute path), so a
name read from a manifest or a remote cannot leave its directory either.

The root itself is followed once: it is the user's own setting (`$AWD_STORE`), not something a member planted.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import os
import stat
import typing as tp
import uuid
from pathlib import Path

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: a FIFO planted where a file belongs must not block the open; it is refused by the fstat that follows
FILE_FLAGS = os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
MAX_DEPTH = 64  # directory levels a walk descends (each level holds one fd); deeper trees are left alone
RECORD_DEPTH = 64  # nesting a JSON record may have; the store's own records need fewer than 8


class UnsafePath(OSError):
    """Refused: a symbolic link, a non-regular file where a file belongs, a name that would leave its directory,
    or a directory on another filesystem than the root."""


class CorruptRecord(ValueError):
    """A JSON record that is not a valid record: too large, nested too deep, not UTF-8, not JSON, of the wrong type,
    or not a regular file."""


def check_relpath(rel: str, what: str = "path") -> tuple[str, ...]:
    """The components of `rel`, a normalised relative name ('a/b.txt'); anything else raises UnsafePath."""
    if not isinstance(rel, str) or not rel:
        raise UnsafePath(f"{what} {rel!r} is not a relative file name")
    parts = tuple(rel.split("/"))
    if "\0" in rel or any(p in ("", ".", "..") for p in parts):
        raise UnsafePath(f"{what} {rel!r} is not a normalised relative name inside its directory (no '/' at either "
                         "end, no '.', '..' or empty component)")
    return parts


Root = str | Path | int  # a directory, or an open fd of one (which stays open)


def _open_root(root: Root) -> tuple[int, int]:
    fd = os.dup(root) if isinstance(root, int) else os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    return fd, os.fstat(fd).st_dev


def _where(root: Root, rel: str) -> str:
    return rel if isinstance(root, int) else f"{root}/{rel}" if rel else str(root)


def _open_child(parent: int, name: str, dev: int, where: str) -> int:
    try:
        fd = os.open(name, DIR_FLAGS, dir_fd=parent)
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.ENOTDIR):
            raise UnsafePath(f"{where}: a symbolic link or not a directory; not followed") from None
        raise
    if os.fstat(fd).st_dev != dev:
        os.close(fd)
        raise UnsafePath(f"{where}: on another filesystem than the root; not entered")
    return fd


def open_dir(root: Root, rel: str = "", *, create: bool = False, mode: int = 0o777) -> int:
    """An fd of the directory root/rel (rel '' is the root), reached without following any link; `create` makes
    missing components (mode & ~umask, as mkdir does). The caller closes it."""
    parts = check_relpath(rel) if rel else ()
    fd, dev = _open_root(root)
    try:
        for i, name in enumerate(parts):
            if create:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(name, mode, dir_fd=fd)
            child = _open_child(fd, name, dev, _where(root, "/".join(parts[:i + 1])))
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd


@contextlib.contextmanager
def dir_fd(root: Root, rel: str = "", *, create: bool = False, mode: int = 0o777) -> tp.Iterator[int]:
    fd = open_dir(root, rel, create=create, mode=mode)
    try:
        yield fd
    finally:
        os.close(fd)


def _split(rel: str) -> tuple[str, str]:
    parts = check_relpath(rel)
    return "/".join(parts[:-1]), parts[-1]


@contextlib.contextmanager
def _parent(root: Root, parent: str, create: bool = False) -> tp.Iterator[int]:
    """dir_fd(root, parent), or the caller's fd itself when that is the parent (no dup: the hot path of readers
    that hold an entry's fd)."""
    if isinstance(root, int) and not parent:
        yield root
    else:
        with dir_fd(root, parent, create=create) as fd:
            yield fd


def lstat(root: Root, rel: str) -> os.stat_result | None:
    """The lstat of root/rel (a link's own), None when it or a directory on the way is missing."""
    parent, name = _split(rel)
    try:
        with _parent(root, parent) as fd:
            return os.stat(name, dir_fd=fd, follow_symlinks=False)
    except (FileNotFoundError, NotADirectoryError):
        return None


def scan(root: Root, rel: str = "") -> list[tuple[str, os.stat_result]]:
    """(name, lstat) of every child of the directory root/rel, sorted by name; a child that vanishes is left out."""
    out = []
    with dir_fd(root, rel) as fd:
        for name in sorted(os.listdir(fd)):
            with contextlib.suppress(FileNotFoundError):
                out.append((name, os.stat(name, dir_fd=fd, follow_symlinks=False)))
    return out


def open_file(root: Root, rel: str, flags: int = os.O_RDONLY) -> int:
    """An fd of the regular file root/rel; a link, FIFO, device or directory there raises UnsafePath."""
    parent, name = _split(rel)
    with _parent(root, parent) as d:
        try:
            fd = os.open(name, flags | FILE_FLAGS, dir_fd=d)
        except OSError as e:
            if e.errno in (errno.ELOOP, errno.EISDIR, errno.ENXIO):
                raise UnsafePath(f"{_where(root, rel)}: not a regular file (a symbolic link is never followed)") from None
            raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise UnsafePath(f"{_where(root, rel)}: not a regular file")
    return fd


def read_bytes(root: Root, rel: str, limit: int) -> bytes:
    """The content of the regular file root/rel; a larger one than `limit` bytes raises CorruptRecord."""
    fd = open_file(root, rel)
    with open(fd, "rb", closefd=True) as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise CorruptRecord(f"{_where(root, rel)}: larger than {limit} bytes")
    return data


def _depth(obj: tp.Any, limit: int) -> bool:
    stack = [(obj, 1)]
    while stack:
        value, level = stack.pop()
        children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else None
        if children is None:
            continue
        if level > limit:
            return False
        stack.extend((child, level + 1) for child in children)
    return True


def read_json(root: Root, rel: str, *, limit: int, expect: type | None = None,
              depth: int = RECORD_DEPTH) -> tp.Any:
    """A small JSON record (UTF-8, at most `limit` bytes and `depth` levels, of type `expect`). A missing file
    raises FileNotFoundError; any other content, or a link or non-regular file in its place, raises CorruptRecord."""
    where = _where(root, rel)
    try:
        text = read_bytes(root, rel, limit).decode("utf-8")
        obj = json.loads(text)
    except (FileNotFoundError, NotADirectoryError):
        raise FileNotFoundError(errno.ENOENT, "no such record", where) from None
    except UnsafePath as e:
        raise CorruptRecord(str(e)) from None
    except RecursionError:
        raise CorruptRecord(f"{where}: nested too deeply to parse") from None
    except UnicodeDecodeError as e:
        raise CorruptRecord(f"{where}: not UTF-8 ({e.reason} at byte {e.start})") from None
    except CorruptRecord:
        raise
    except ValueError as e:
        raise CorruptRecord(f"{where}: not JSON ({str(e)[:200]})") from None
    if not _depth(obj, depth):
        raise CorruptRecord(f"{where}: nested deeper than {depth} levels")
    if expect is not None and not isinstance(obj, expect):
        raise CorruptRecord(f"{where}: a JSON {type(obj).__name__}, not a {expect.__name__}")
    return obj


def walk(root: Root, rel: str = "", *, skip: tp.Callable[[str], bool] = lambda name: False,
         refused: list[str] | None = None) -> tp.Iterator[tuple[str, os.stat_result]]:
    """(path relative to root/rel, lstat) of everything below the directory root/rel, parents before children,
    names sorted; links are yielded, never followed; directories on another filesystem, deeper than MAX_DEPTH or
    swapped while being read are not entered (`refused` collects why). `skip(name)`: names left out entirely."""
    refused = [] if refused is None else refused
    with dir_fd(root, rel) as fd:
        yield from _walk(fd, "", os.fstat(fd).st_dev, 0, skip, refused)


def _walk(fd: int, prefix: str, dev: int, depth: int, skip: tp.Callable[[str], bool],
          refused: list[str]) -> tp.Iterator[tuple[str, os.stat_result]]:
    for name in sorted(os.listdir(fd)):
        if skip(name):
            continue
        try:
            st = os.stat(name, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            continue
        rel = f"{prefix}{name}"
        yield rel, st
        if stat.S_ISDIR(st.st_mode):
            child = _enter(fd, name, rel, st, dev, depth, refused)
            if child is not None:
                try:
                    yield from _walk(child, f"{rel}/", dev, depth + 1, skip, refused)
                finally:
                    os.close(child)


@dataclasses.dataclass
class TreeInfo:
    bytes: int = 0  # regular files' sizes
    newest_mtime: float = 0.0
    uids: set[int] = dataclasses.field(default_factory=set)  # owners of everything in it, itself included
    links: int = 0  # symbolic links in it (counted, never followed)
    unvisited: list[str] = dataclasses.field(default_factory=list)  # directories not entered: why


def tree(root: Root, rel: str) -> TreeInfo:
    """Size, newest mtime and owners of root/rel and everything below it, without following links or entering
    another filesystem. A missing path gives an empty TreeInfo."""
    info = TreeInfo()
    top = lstat(root, rel)
    if top is None:
        return info
    everything = [(rel, top)]
    if stat.S_ISDIR(top.st_mode):
        with contextlib.suppress(FileNotFoundError, NotADirectoryError, UnsafePath):
            everything += list(walk(root, rel, refused=info.unvisited))
    for _, st in everything:
        info.uids.add(st.st_uid)
        info.newest_mtime = max(info.newest_mtime, st.st_mtime)
        info.links += stat.S_ISLNK(st.st_mode)
        info.bytes += st.st_size if stat.S_ISREG(st.st_mode) else 0
    return info


def _enter(parent: int, name: str, rel: str, st: os.stat_result, dev: int, depth: int,
           refused: list[str]) -> int | None:
    """The fd of directory `name` if it is the one lstat saw, on the root's filesystem and not too deep."""
    if st.st_dev != dev:
        refused.append(f"{rel}: on another filesystem")
        return None
    if depth >= MAX_DEPTH:
        refused.append(f"{rel}: deeper than {MAX_DEPTH} levels")
        return None
    try:
        fd = os.open(name, DIR_FLAGS, dir_fd=parent)
    except OSError as e:
        refused.append(f"{rel}: {e.strerror or e}")
        return None
    now = os.fstat(fd)
    if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
        os.close(fd)
        refused.append(f"{rel}: replaced while being read")
        return None
    return fd


@dataclasses.dataclass
class Removed:
    bytes: int = 0  # regular files' sizes unlinked
    kept: list[str] = dataclasses.field(default_factory=list)  # what was left in place: why


def remove(root: Root, rel: str, *, owner: int | None = None) -> Removed:
    """Removes root/rel (a file, a link as the link itself, or a directory with everything in it) without
    following links or entering another filesystem. With `owner`, anything another uid owns is left in place (and
    so are the directories holding it): `kept` says what and why."""
    out = Removed()
    parent, name = _split(rel)
    try:
        with dir_fd(root, parent) as fd:
            _remove_at(fd, name, rel, os.fstat(fd).st_dev, 0, owner, out)
    except (FileNotFoundError, NotADirectoryError):
        pass
    return out


def _remove_at(parent: int, name: str, rel: str, dev: int, depth: int, owner: int | None, out: Removed) -> None:
    try:
        st = os.stat(name, dir_fd=parent, follow_symlinks=False)
    except FileNotFoundError:
        return
    if owner is not None and st.st_uid != owner:
        out.kept.append(f"{rel}: owned by uid {st.st_uid}")
        return
    if not stat.S_ISDIR(st.st_mode):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name, dir_fd=parent)
            out.bytes += st.st_size if stat.S_ISREG(st.st_mode) else 0
        return
    fd = _enter(parent, name, rel, st, dev, depth, out.kept)
    if fd is None:
        return
    try:
        for child in sorted(os.listdir(fd)):
            _remove_at(fd, child, f"{rel}/{child}", dev, depth + 1, owner, out)
    finally:
        os.close(fd)
    try:
        os.rmdir(name, dir_fd=parent)
    except FileNotFoundError:
        pass
    except OSError as e:
        if e.errno not in (errno.ENOTEMPTY, errno.EEXIST):
            raise
        if not any(k.startswith(f"{rel}/") for k in out.kept):
            out.kept.append(f"{rel}: not empty (written to while being removed)")


def rename(root: Root, src: str, dest: str) -> None:
    """Renames root/src to root/dest (a link moves as the link itself); the parents are reached without links."""
    src_parent, src_name = _split(src)
    dest_parent, dest_name = _split(dest)
    with dir_fd(root, src_parent) as s, dir_fd(root, dest_parent) as d:
        os.rename(src_name, dest_name, src_dir_fd=s, dst_dir_fd=d)


def write_new(root: Root, rel: str, data: bytes, *, mode: int = 0o666) -> None:
    """Creates root/rel with `data`; an existing file or link there raises FileExistsError (never opened)."""
    parent, name = _split(rel)
    with _parent(root, parent) as d:
        _write_fd(os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode,
                          dir_fd=d), data)


def write_atomic(root: Root, rel: str, data: bytes, *, mode: int = 0o666, create: bool = False) -> None:
    """Replaces root/rel with `data` at once (a temporary file created O_EXCL in the same directory, fsync, rename
    over the target, fsync the directory): readers see the old content or the new, and a link planted at the
    target is replaced, never written through. `create` makes missing parent directories."""
    parent, name = _split(rel)
    with _parent(root, parent, create) as d:
        tmp = f".{name}.{uuid.uuid4().hex[:12]}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=d)
        try:
            _write_fd(fd, data)
            os.replace(tmp, name, src_dir_fd=d, dst_dir_fd=d)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=d)
            raise
        with contextlib.suppress(OSError):  # some filesystems refuse fsync on a directory; the rename stands
            os.fsync(d)


def _write_fd(fd: int, data: bytes) -> None:
    with open(fd, "wb", closefd=True) as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
