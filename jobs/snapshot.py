"""Code snapshots: a job runs the code its key names, not whatever the checkout holds when it starts.

At submission the code closure of a unit's function is copied into the run store at
`_code/u<uid>/<digest[:2]>/<digest>/`: per user (the driver's uid, which its jobs run as) and content-addressed by
the unit's code digest, so every unit of that user with that digest shares it. It is written once, read-only, in
directories only its owner may write (0755 whatever the umask; `_code` itself is sticky). A job verifies it against
its digest before importing from it, on every start (a requeued job too), and imports the snapshot's packages from
it alone: a `git pull` or an edit of the checkout while jobs are queued changes nothing for them.

Per user, because a shared store is group-writable: a snapshot runs only if it and everything in it is owned by the
user running it (or root) and writable by no one else, so another member's never qualifies and each member writes
their own (the cost is disk: a code closure, a few hundred KB, per member and digest). Verification reads every file
once, through directory fds that follow no symlink, and the import system then executes exactly those bytes from
memory (`_SnapshotLoader`): a file is never read again by path, so a change after the check (minutes later, when a
unit imports a module lazily) never runs. A snapshot that does not verify (an edited, added or removed file) makes
the job refuse with a `SnapshotError` naming the file. One in the layout of earlier versions,
`_code/<digest[:2]>/<digest>/`, still runs if it passes the same ownership checks.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import stat
import sys
import typing as tp
import uuid
from pathlib import Path

from jobs import safefs
from jobs.keys import combine_digests, semantic_digest, unit_closure
from jobs.safefs import UnsafePath

SNAPSHOTS = "_code"
MANIFEST = "snapshot.json"
RUNNER_PACKAGE = "jobs"  # runs every job from the checkout; unit code must not import it
MAX_FILES = 5_000
MAX_BYTES = 256 << 20  # a code closure is well under 10 MB


class SnapshotError(RuntimeError):
    pass


class _Missing(SnapshotError):
    """No snapshot directory of the digest."""


def _check_digest(digest: tp.Any) -> str:
    if not isinstance(digest, str) or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise SnapshotError(f"code digest {digest!r} is not a sha256 hex digest (see jobs.keys.code_digest)")
    return digest


def _user_dir() -> str:
    return f"u{os.geteuid()}"


def snapshot_path(store_root: str | Path, digest: str) -> Path:
    """Where this user's snapshot of `digest` lives."""
    _check_digest(digest)
    return Path(store_root) / SNAPSHOTS / _user_dir() / digest[:2] / digest


def _rel(module: str, path: Path) -> str:
    parts = module.split(".")
    return "/".join(parts + ["__init__.py"]) if path.name == "__init__.py" else "/".join(parts) + ".py"


def _trusted(st: os.stat_result) -> str:
    """Why a snapshot's file or directory may not be run ('' when it may): the owner and mode checks."""
    if st.st_uid not in (os.geteuid(), 0):
        return f"is owned by uid {st.st_uid}, not by you (uid {os.geteuid()}) or root"
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"is writable by group or others (mode {stat.S_IMODE(st.st_mode):04o})"
    return ""


def _read_tree(fd: int, where: str) -> dict[str, bytes]:
    """{relative path: bytes} of every file below the open directory `fd`, each checked by `_trusted` on the fd it
    is read from; anything that is neither a directory nor a regular file is refused."""
    out: dict[str, bytes] = {}
    total = 0

    def walk(dir_fd: int, prefix: str, depth: int) -> None:
        nonlocal total
        problem = _trusted(os.fstat(dir_fd))
        if problem:
            raise SnapshotError(f"{where}: {prefix or 'the snapshot directory'} {problem}")
        for name, st in safefs.scan(dir_fd):
            rel = prefix + name
            if len(out) >= MAX_FILES or depth > 32:
                raise SnapshotError(f"{where}: more than {MAX_FILES} files or 32 directory levels")
            if stat.S_ISDIR(st.st_mode):
                with safefs.dir_fd(dir_fd, name) as sub:
                    walk(sub, rel + "/", depth + 1)
                continue
            if not stat.S_ISREG(st.st_mode):
                raise SnapshotError(f"{where}: {rel} is not a regular file ({stat.filemode(st.st_mode)})")
            file_fd = safefs.open_file(dir_fd, name)
            with open(file_fd, "rb", closefd=True) as f:
                problem = _trusted(os.fstat(file_fd))
                if problem:
                    raise SnapshotError(f"{where}: {rel} {problem}")
                data = f.read(MAX_BYTES - total + 1)
            total += len(data)
            if total > MAX_BYTES:
                raise SnapshotError(f"{where}: more than {MAX_BYTES} bytes of code")
            out[rel] = data

    walk(fd, "", 0)
    return out


def _open_snapshot(store_root: str | Path, digest: str) -> tuple[Path, dict[str, bytes]]:
    """The first candidate snapshot directory that exists and its files; _Missing if none does."""
    try:
        root = safefs.open_dir(store_root)
    except FileNotFoundError:
        raise _Missing(f"code snapshot {snapshot_path(store_root, digest)}: no such directory") from None
    try:
        for i, parts in enumerate([(SNAPSHOTS, _user_dir(), digest[:2], digest), (SNAPSHOTS, digest[:2], digest)]):
            where = f"code snapshot {Path(store_root, *parts)}"
            try:
                fd = safefs.open_dir(root, "/".join(parts))
            except (FileNotFoundError, NotADirectoryError):
                continue
            except UnsafePath as e:
                raise SnapshotError(f"{where}: {e}") from None
            try:
                if i and _trusted(os.fstat(fd)):
                    continue  # another member's snapshot in the old shared layout: never run, and not in the way
                return Path(store_root, *parts), _read_tree(fd, where)
            finally:
                os.close(fd)
    finally:
        os.close(root)
    raise _Missing(f"code snapshot {snapshot_path(store_root, digest)}: no such directory")


def _fix(dest: Path) -> str:
    return (f"; it is not safe to run. Remove the snapshot directory (chmod -R u+w {dest} && rm -rf {dest}) and "
            "rerun the stage from a checkout with the code you want: it is rewritten from there")


def _check(dest: Path, digest: str, files: dict[str, bytes]) -> dict:
    """The manifest, after checking that `files` are exactly its files, byte for byte, with code `digest`."""
    where, fix = f"code snapshot {dest}", _fix(dest)
    try:
        manifest = json.loads(files.get(MANIFEST, b"").decode("utf-8"))
        listed = manifest["files"]
        if manifest.get("digest") != digest or not isinstance(listed, dict):
            raise ValueError("digest or file list does not match")
        for module, info in listed.items():
            parts = module.split(".")
            if not all(p.isidentifier() for p in parts) or not isinstance(info, dict) or \
                    info.get("path") not in ("/".join(parts) + ".py", "/".join(parts) + "/__init__.py"):
                raise ValueError(f"module {module[:80]!r} has no valid path")
    except (ValueError, KeyError, TypeError, RecursionError) as e:
        raise SnapshotError(f"{where}: unreadable or wrong {MANIFEST} ({e}){fix}") from None
    expected = {info["path"] for info in listed.values()} | {MANIFEST}
    # any extra file counts, e.g. a planted __pycache__/*.pyc (the loader never reads one, but a checkout would)
    if set(files) != expected:
        extra, missing = sorted(set(files) - expected), sorted(expected - set(files))
        raise SnapshotError(f"{where}: " + "; ".join(
            ([f"unexpected file(s) {extra}"] if extra else []) + ([f"missing file(s) {missing}"] if missing else []))
            + fix)
    semantic = {}
    for module, info in sorted(listed.items()):
        data = files[info["path"]]
        if hashlib.sha256(data).hexdigest() != info.get("sha256"):
            raise SnapshotError(f"{where}: {info['path']} was modified after the snapshot was written{fix}")
        try:
            semantic[module] = semantic_digest(data, info["path"])
        except (SyntaxError, ValueError, RecursionError) as e:
            raise SnapshotError(f"{where}: {info['path']} does not parse ({e}){fix}") from None
    if combine_digests(semantic) != digest:
        raise SnapshotError(f"{where}: its files do not have code digest {digest}{fix}")
    return manifest


def _load(store_root: str | Path, digest: str) -> tuple[Path, dict, dict[str, bytes]]:
    _check_digest(digest)
    try:
        dest, files = _open_snapshot(store_root, digest)
    except OSError as e:
        raise SnapshotError(f"code snapshot {snapshot_path(store_root, digest)}: cannot be read ({e})") from None
    return dest, _check(dest, digest, files), files


def verify_snapshot(store_root: str | Path, digest: str) -> dict:
    """The snapshot's manifest, after checking that the directory holds exactly its files, byte for byte, that
    their code has `digest`, and that you (or root) own all of it and no one else may write it. Anything else
    raises SnapshotError naming what differs."""
    return _verified(store_root, digest)[1]


def _verified(store_root: str | Path, digest: str) -> tuple[Path, dict, dict[str, bytes]]:
    try:
        return _load(store_root, digest)
    except _Missing as e:
        raise SnapshotError(f"{e}: unreadable or wrong {MANIFEST}{_fix(snapshot_path(store_root, digest))}") from None


def _own_dir(parent: int, name: str, mode: int, where: str) -> int:
    """An fd of directory `name`, given `mode` whatever the umask made of it; an existing one must be yours (or
    root's: then it is left as root set it)."""
    with contextlib.suppress(FileExistsError):
        os.mkdir(name, mode, dir_fd=parent)
    fd = safefs.open_dir(parent, name)
    st = os.fstat(fd)
    if st.st_uid == os.geteuid():
        mode |= st.st_mode & stat.S_ISGID  # a setgid store's group stays on what is made below
        if stat.S_IMODE(st.st_mode) != mode:
            os.fchmod(fd, mode)
    elif st.st_uid != 0:
        os.close(fd)
        raise SnapshotError(f"{where} is owned by uid {st.st_uid}, not by you (uid {os.geteuid()}): refusing to "
                            "write or run code from it; its owner or an admin must remove it")
    return fd


def _shared_dir(parent: int) -> int:
    """`_code`, shared by every member (each makes their own u<uid> in it): sticky, so that no one can rename
    another's directory away; group-writable if the umask is (a lab's store)."""
    with contextlib.suppress(FileExistsError):
        os.mkdir(SNAPSHOTS, 0o777, dir_fd=parent)
    fd = safefs.open_dir(parent, SNAPSHOTS)
    st = os.fstat(fd)
    if st.st_uid == os.geteuid() and not st.st_mode & stat.S_ISVTX:
        os.fchmod(fd, stat.S_IMODE(st.st_mode) | stat.S_ISVTX)
    return fd


def _discard(parent: int, name: str, fd: int) -> None:
    """Removes our temporary snapshot `name` (read-only by then) through `fd`, the directory we made."""
    for rel, st in list(safefs.walk(fd)):
        if stat.S_ISDIR(st.st_mode):
            with safefs.dir_fd(fd, rel) as d:
                os.fchmod(d, stat.S_IRWXU)
    os.fchmod(fd, stat.S_IRWXU)
    for child in os.listdir(fd):
        safefs.remove(fd, child)
    with contextlib.suppress(OSError):
        os.rmdir(name, dir_fd=parent)


def _write(store_root: Path, digest: str, sources: dict[str, bytes], manifest: dict) -> None:
    """Writes the snapshot in a private temporary directory (0700, files created O_EXCL), fsyncs it, makes it
    read-only and renames it into place in this user's 0755 directory."""
    store_root.mkdir(parents=True, exist_ok=True)
    fds = [safefs.open_dir(store_root)]
    try:
        fds.append(_shared_dir(fds[-1]))
        fds.append(_own_dir(fds[-1], _user_dir(), 0o755, str(store_root / SNAPSHOTS / _user_dir())))
        fds.append(_own_dir(fds[-1], digest[:2], 0o755, str(snapshot_path(store_root, digest).parent)))
        parent = fds[-1]
        tmp = f".{digest}.{uuid.uuid4().hex[:8]}.tmp"
        os.mkdir(tmp, 0o700, dir_fd=parent)
        tmp_fd = safefs.open_dir(parent, tmp)
        try:
            dirs: set[str] = {""}
            for m, src in sources.items():
                rel = manifest["files"][m]["path"]
                parts = rel.split("/")
                dirs.update("/".join(parts[:i]) for i in range(1, len(parts)))
                os.close(safefs.open_dir(tmp_fd, "/".join(parts[:-1]), create=True, mode=0o700))
                safefs.write_new(tmp_fd, rel, src, mode=0o444)
            body = (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode()
            safefs.write_new(tmp_fd, MANIFEST, body, mode=0o444)
            for rel in sorted(dirs, key=lambda r: -r.count("/") - bool(r)):  # deepest first, the top last
                with safefs.dir_fd(tmp_fd, rel) as d:
                    with contextlib.suppress(OSError):  # some filesystems refuse fsync on a directory
                        os.fsync(d)
                    os.fchmod(d, 0o555)
            try:
                os.rename(tmp, digest, src_dir_fd=parent, dst_dir_fd=parent)
            except OSError:
                if safefs.lstat(parent, digest) is None:
                    raise
                _discard(parent, tmp, tmp_fd)  # another driver of yours wrote the same digest first: same code
            else:
                with contextlib.suppress(OSError):
                    os.fsync(parent)
        except BaseException:
            with contextlib.suppress(OSError):
                _discard(parent, tmp, tmp_fd)
            raise
        finally:
            os.close(tmp_fd)
    finally:
        for fd in fds:
            os.close(fd)


def write_snapshot(store_root: str | Path, module: str | tp.Sequence[str], digest: str,
                   root: str | Path | None = None) -> Path:
    """The snapshot of `module`'s code closure (from the checkout at `root`) under `digest`, written if missing.
    `module` may list a unit's plugin modules after its function's module (jobs.keys.unit_closure): their files
    join the snapshot, so the job imports the plugin from it too.

    Raises SnapshotError when the checkout's code no longer has that digest (edited since the key was computed)
    or when an existing snapshot does not verify."""
    _check_digest(digest)
    try:
        return _load(store_root, digest)[0]
    except _Missing:
        pass
    closure = unit_closure(module, root)
    module = module if isinstance(module, str) else " + ".join(module)
    runner = [m for m in closure if m.split(".")[0] == RUNNER_PACKAGE]
    if runner:
        raise SnapshotError(f"unit code {module} imports {runner[0]}: the {RUNNER_PACKAGE} package runs from the "
                            "checkout and cannot be part of a unit's code snapshot; move what it needs out of it")
    sources = {m: p.read_bytes() for m, p in closure.items()}
    semantic = {m: semantic_digest(src, str(closure[m])) for m, src in sources.items()}
    if combine_digests(semantic) != digest:
        raise SnapshotError(f"the code of {module} in {root or 'the checkout'} changed after its units' keys were "
                            "computed (edited during submission?); rerun the stage")
    manifest: dict[str, tp.Any] = {"digest": digest, "module": module,
                "files": {m: {"path": _rel(m, closure[m]), "sha256": hashlib.sha256(src).hexdigest(), "semantic": semantic[m]}
                          for m, src in sources.items()}}
    try:
        _write(Path(store_root), digest, sources, manifest)
    except OSError as e:
        raise SnapshotError(f"code snapshot {snapshot_path(store_root, digest)}: cannot be written ({e})") from None
    return _load(store_root, digest)[0]


class _SnapshotLoader(importlib.abc.InspectLoader):
    """Executes the bytes it was given (those verified), never the file they came from."""

    def __init__(self, name: str, path: Path, source: bytes):
        self.name, self.path, self.source = name, path, source

    def create_module(self, spec: tp.Any) -> None:
        return None

    def get_source(self, fullname: str) -> str:
        return importlib.util.decode_source(self.source)

    def get_code(self, fullname: str) -> tp.Any:
        return compile(self.source, str(self.path), "exec", dont_inherit=True)

    def is_package(self, fullname: str) -> bool:
        return self.path.name == "__init__.py"

    def exec_module(self, module: tp.Any) -> None:
        exec(self.get_code(module.__name__), module.__dict__)  # noqa: S102 - the verified snapshot's own code


class _SnapshotFinder(importlib.abc.MetaPathFinder):
    """Serves every module of the snapshot's packages from the snapshot's verified bytes; any other module of those
    packages is refused (the key does not cover it), never looked up in the checkout."""

    def __init__(self, dest: Path, manifest: dict, files: dict[str, bytes]):
        self.dest = dest
        self.modules = {m: (dest / info["path"], files[info["path"]]) for m, info in manifest["files"].items()}
        self.packages = {m.split(".")[0] for m in self.modules}

    def find_spec(self, name: str, path: tp.Any = None, target: tp.Any = None) -> importlib.machinery.ModuleSpec | None:
        if name.split(".")[0] not in self.packages:
            return None
        if name not in self.modules:
            raise ModuleNotFoundError(f"module {name!r} is not in the code snapshot {self.dest}: the unit's key does "
                                      "not cover it (imported dynamically?)", name=name)
        file, source = self.modules[name]
        loader = _SnapshotLoader(name, file, source)
        spec = importlib.machinery.ModuleSpec(name, loader, origin=str(file), is_package=loader.is_package(name))
        if spec.submodule_search_locations is not None:
            spec.submodule_search_locations.append(str(file.parent))
        spec.has_location = True  # __file__ names the snapshot's file (tracebacks, tests), read by no one
        spec.cached = None  # no bytecode cache: nothing is written or read beside the snapshot
        return spec


_active: dict[str, tp.Any] = {"digest": None, "finder": None}


def use_snapshot(store_root: str | Path, digest: str) -> Path:
    """Job side: verify the snapshot, then make every later import of its packages execute its verified bytes.
    Switching to another digest drops the modules the previous one loaded."""
    dest, manifest, files = _verified(store_root, digest)
    if _active["digest"] == digest and _active["finder"].dest == dest:
        return dest
    finder = _SnapshotFinder(dest, manifest, files)
    old = _active["finder"]
    if old is not None:
        sys.meta_path.remove(old)
    for name in list(sys.modules):
        if name.split(".")[0] in finder.packages | (old.packages if old else set()):
            del sys.modules[name]
    sys.meta_path.insert(0, finder)
    _active.update(digest=digest, finder=finder)
    return finder.dest
