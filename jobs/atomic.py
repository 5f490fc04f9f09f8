"""The project's one atomic writer outside `awd/` (the run store, stage artifacts, results/) and its JSON format.

One durability policy: temporary file in the same directory, fsync, rename over the target, fsync the directory.
Readers see the old file or the whole new one, never a prefix, even after a crash; a failure leaves no temporary
behind. Everything outside the run store (stage artifacts, the report's `results/`, the docs) imports them from
here; `jobs.store` re-exports them for its own callers.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import typing as tp
import uuid
from pathlib import Path


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
    """Writes `data` to `path` atomically (see the module). The temporary is created O_EXCL|O_NOFOLLOW: a file or
    link someone placed under its name is never written through."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex[:12]}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
    try:
        with open(fd, "wb", closefd=True) as f:
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
