"""Copying done run-store entries by key between two stores (the local one and one on a shared path).

Only the files an entry's manifest lists travel, with the manifest; the copy is verified against the manifest's
sha256 (and given the manifest's mtimes, so later cheap checks pass) in a temporary directory next to its
destination, then renamed into place: a reader never sees half an entry, and a copy that does not verify is
dropped. A source entry that does not verify is not copied. An unfinished destination entry that no job holds is
replaced; one a job holds is left alone.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import typing as tp
import uuid
from pathlib import Path

from jobs.store import MANIFEST, RunStore, _fsync_dir, _sha256


@dataclasses.dataclass
class Transfer:
    copied: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    present: list[tuple[str, str]] = dataclasses.field(default_factory=list)  # already there, same manifest
    missing: list[tuple[str, str]] = dataclasses.field(default_factory=list)  # not done in the source
    refused: list[tuple[str, str, str]] = dataclasses.field(default_factory=list)  # kind, key, why
    bytes: int = 0


def _verify(entry: Path, manifest: dict) -> str:
    for rel, info in sorted(manifest.get("files", {}).items()):
        p = entry / rel
        if not p.is_file():
            return f"{rel} is missing"
        if p.stat().st_size != info.get("size") or _sha256(p) != info.get("sha256"):
            return f"{rel} does not match its sha256 in {MANIFEST}"
    return ""


def _copy(src: Path, dest_parent: Path, key: str, manifest: dict) -> Path:
    tmp = dest_parent / f".{key}.incoming.{uuid.uuid4().hex[:8]}"
    tmp.mkdir(parents=True)
    try:
        for rel, info in manifest["files"].items():
            target = tmp / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src / rel, target)
            with open(target, "rb+") as f:
                os.fsync(f.fileno())
            mtime = int(info.get("mtime_ns") or (src / rel).stat().st_mtime_ns)
            os.utime(target, ns=(mtime, mtime))
        shutil.copyfile(src / MANIFEST, tmp / MANIFEST)
        problem = _verify(tmp, manifest)
        if problem:
            raise OSError(f"the copy does not verify: {problem}")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return tmp


def copy_entries(src: RunStore, dest: RunStore, keys: tp.Iterable[tuple[str, str]],
                 is_live: tp.Callable[[RunStore, str, str], str] = lambda s, k, key: "") -> Transfer:
    """Copies every done (kind, key) of `src` that `dest` lacks; `is_live(dest, kind, key)` says why a job holds a
    destination entry ('' when none does)."""
    out = Transfer()
    for kind, key in sorted(set(keys)):
        entry = src.path(kind, key)
        try:
            manifest = json.loads((entry / MANIFEST).read_bytes())
        except (FileNotFoundError, NotADirectoryError):
            out.missing.append((kind, key))
            continue
        except ValueError as e:
            out.refused.append((kind, key, f"unreadable {MANIFEST} in {entry}: {e}"))
            continue
        problem = _verify(entry, manifest) if isinstance(manifest, dict) and "files" in manifest else \
            f"{MANIFEST} in {entry} has no file list"
        if problem:
            out.refused.append((kind, key, f"source {entry}: {problem}"))
            continue
        target = dest.path(kind, key)
        if (target / MANIFEST).exists():
            with contextlib.suppress(ValueError, OSError):
                if json.loads((target / MANIFEST).read_bytes()).get("files") == manifest["files"] and \
                        dest.is_done(kind, key, verify="changed"):
                    out.present.append((kind, key))
                    continue
        if target.exists():
            reason = is_live(dest, kind, key)
            if reason:
                out.refused.append((kind, key, f"destination {target} is held by a job ({reason})"))
                continue
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = _copy(entry, target.parent, key, manifest)
        if target.exists():  # an unfinished or different copy no job holds: set aside, then replace
            old = target.parent / f".{key}.replaced.{uuid.uuid4().hex[:8]}"
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
        _fsync_dir(target.parent)
        out.copied.append((kind, key))
        out.bytes += sum(int(i.get("size", 0)) for i in manifest["files"].values())
    return out
