"""Code snapshots: a job runs the code its key names, not whatever the checkout holds when it starts.

At submission the code closure of a unit's function is copied into the run store at `_code/<digest[:2]>/<digest>/`
(content-addressed by the unit's code digest, so every unit with that digest shares it), written once and made
read-only. A job verifies the snapshot against its digest before importing from it, on every start (a requeued job
too), and imports the snapshot's packages from it alone: a `git pull` or an edit of the checkout while jobs are
queued changes nothing for them. A shared store is group-writable, so a snapshot that does not verify (an edited,
added or removed file) makes the job refuse with a `SnapshotError` naming the file.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.abc
import importlib.util
import json
import os
import shutil
import stat
import sys
import typing as tp
import uuid
from pathlib import Path

from jobs.keys import combine_digests, semantic_digest, unit_closure

SNAPSHOTS = "_code"
MANIFEST = "snapshot.json"
RUNNER_PACKAGE = "jobs"  # runs every job from the checkout; unit code must not import it


class SnapshotError(RuntimeError):
    pass


def snapshot_path(store_root: str | Path, digest: str) -> Path:
    if not isinstance(digest, str) or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise SnapshotError(f"code digest {digest!r} is not a sha256 hex digest (see jobs.keys.code_digest)")
    return Path(store_root) / SNAPSHOTS / digest[:2] / digest


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _rel(module: str, path: Path) -> str:
    parts = module.split(".")
    return "/".join(parts + ["__init__.py"]) if path.name == "__init__.py" else "/".join(parts) + ".py"


def _make_read_only(root: Path) -> None:
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            os.chmod(os.path.join(dirpath, name), stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
    for dirpath, _, _ in sorted(os.walk(root), key=lambda t: -len(t[0])):
        os.chmod(dirpath, stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)


def _remove(root: Path) -> None:
    for dirpath, _, _ in os.walk(root):
        with contextlib.suppress(OSError):
            os.chmod(dirpath, stat.S_IRWXU)
    shutil.rmtree(root, ignore_errors=True)


def write_snapshot(store_root: str | Path, module: str | tp.Sequence[str], digest: str,
                   root: str | Path | None = None) -> Path:
    """The snapshot of `module`'s code closure (from the checkout at `root`) under `digest`, written if missing.
    `module` may list a unit's plugin modules after its function's module (jobs.keys.unit_closure): their files
    join the snapshot, so the job imports the plugin from it too.

    Raises SnapshotError when the checkout's code no longer has that digest (edited since the key was computed)
    or when an existing snapshot does not verify."""
    dest = snapshot_path(store_root, digest)
    if dest.is_dir():
        verify_snapshot(store_root, digest)
        return dest
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
                "files": {m: {"path": _rel(m, closure[m]), "sha256": _sha256(src), "semantic": semantic[m]}
                          for m, src in sources.items()}}
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".{digest}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        for m, src in sources.items():
            target = tmp / manifest["files"][m]["path"]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(src)
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
        _make_read_only(tmp)
        try:
            os.rename(tmp, dest)
        except OSError:
            if not dest.is_dir():
                raise
            # another driver wrote the same digest first: keep its snapshot (same code by construction)
    finally:
        if tmp.exists():
            _remove(tmp)
    verify_snapshot(store_root, digest)
    return dest


def verify_snapshot(store_root: str | Path, digest: str) -> dict:
    """The snapshot's manifest, after checking that the directory holds exactly its files, byte for byte, and
    that their code has `digest`. Anything else raises SnapshotError naming what differs."""
    dest = snapshot_path(store_root, digest)
    where = f"code snapshot {dest}"
    fix = (f"; it is not safe to run. Remove the snapshot directory (chmod -R u+w {dest} && rm -rf {dest}) and "
           "rerun the stage from a checkout with the code you want: it is rewritten from there")
    try:
        manifest = json.loads((dest / MANIFEST).read_text())
        files = manifest["files"]
        if manifest.get("digest") != digest or not isinstance(files, dict):
            raise ValueError("digest or file list does not match")
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise SnapshotError(f"{where}: unreadable or wrong {MANIFEST} ({e}){fix}") from None
    expected = {info["path"] for info in files.values()} | {MANIFEST}
    # any extra file counts, e.g. a planted __pycache__/*.pyc, which Python would load instead of the source
    present = {Path(os.path.relpath(os.path.join(dirpath, name), dest)).as_posix()
               for dirpath, _, filenames in os.walk(dest) for name in filenames}
    if present != expected:
        extra, missing = sorted(present - expected), sorted(expected - present)
        raise SnapshotError(f"{where}: " + "; ".join(
            ([f"unexpected file(s) {extra}"] if extra else []) + ([f"missing file(s) {missing}"] if missing else []))
            + fix)
    semantic = {}
    for module, info in sorted(files.items()):
        data = (dest / info["path"]).read_bytes()
        if _sha256(data) != info["sha256"]:
            raise SnapshotError(f"{where}: {info['path']} was modified after the snapshot was written{fix}")
        semantic[module] = semantic_digest(data, info["path"])
    if combine_digests(semantic) != digest:
        raise SnapshotError(f"{where}: its files do not have code digest {digest}{fix}")
    return manifest


class _SnapshotFinder(importlib.abc.MetaPathFinder):
    """Serves every module of the snapshot's packages from the snapshot; any other module of those packages is
    refused (the key does not cover it), never looked up in the checkout."""

    def __init__(self, dest: Path, manifest: dict):
        self.dest = dest
        self.paths = {m: dest / info["path"] for m, info in manifest["files"].items()}
        self.packages = {m.split(".")[0] for m in self.paths}

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] not in self.packages:
            return None
        file = self.paths.get(name)
        if file is None:
            raise ModuleNotFoundError(f"module {name!r} is not in the code snapshot {self.dest}: the unit's key does "
                                      "not cover it (imported dynamically?)", name=name)
        package_dir = [str(file.parent)] if file.name == "__init__.py" else None
        return importlib.util.spec_from_file_location(name, file, submodule_search_locations=package_dir)


_active: dict[str, tp.Any] = {"digest": None, "finder": None}


def use_snapshot(store_root: str | Path, digest: str) -> Path:
    """Job side: verify the snapshot, then make every later import of its packages come from it. Switching to
    another digest drops the modules the previous one loaded."""
    manifest = verify_snapshot(store_root, digest)
    if _active["digest"] == digest:
        return _active["finder"].dest
    finder = _SnapshotFinder(snapshot_path(store_root, digest), manifest)
    old = _active["finder"]
    if old is not None:
        sys.meta_path.remove(old)
    for name in list(sys.modules):
        if name.split(".")[0] in finder.packages | (old.packages if old else set()):
            del sys.modules[name]
    sys.meta_path.insert(0, finder)
    _active.update(digest=digest, finder=finder)
    return finder.dest

