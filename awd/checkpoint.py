"""Atomic writes of training state and results, and loading checkpoints with `weights_only=True`.

Every writer goes through a temporary file in the destination directory and `os.replace`, so a reader (or a
resumed run after a crash) sees either the old file or the new one, never a torn one; a failed write (disk full,
permission denied) leaves the old file and no temporary. Checkpoints hold only tensors and primitive containers,
which is what `torch.load(weights_only=True)` accepts: a file carrying pickled code is refused, never executed.

`save_checkpoint(..., integrity=True)` adds a sha256 of the contents (every tensor's bytes, every value) under
`INTEGRITY_KEY`; `load_checkpoint(..., require_integrity=True)` recomputes it, so flipped bits in tensor data,
which `torch.load` itself does not notice, are caught. Every failure to load is a `CheckpointError`.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import torch


def _atomic_write_bytes(path: Path, payload: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


INTEGRITY_KEY = "_integrity_sha256"


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used: unreadable, truncated, failing its integrity check, or refused by
    ``weights_only=True`` (``unsafe``: it carries pickled objects other than tensors and plain containers)."""

    def __init__(self, path, reason: str, unsafe: bool = False):
        self.path, self.reason, self.unsafe = Path(path), reason, unsafe
        super().__init__(f"{path}: {reason}")


def content_digest(obj) -> str:
    """sha256 over a canonical walk of a checkpoint: dict keys sorted, tensors by dtype, shape and bytes."""
    h = hashlib.sha256()

    def walk(x) -> None:
        if isinstance(x, torch.Tensor):
            t = x.detach().cpu().contiguous()
            h.update(f"T{t.dtype}{tuple(t.shape)}:".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
        elif isinstance(x, dict):
            h.update(f"D{len(x)}:".encode())
            for k in sorted(x, key=repr):
                h.update(f"{k!r}=".encode())
                walk(x[k])
        elif isinstance(x, (list, tuple)):
            h.update(f"{'L' if isinstance(x, list) else 'U'}{len(x)}:".encode())
            for v in x:
                walk(v)
        else:
            h.update(f"P{type(x).__name__}:{x!r};".encode())

    walk(obj)
    return h.hexdigest()


def save_checkpoint(obj: dict, path: str | Path, integrity: bool = False) -> None:
    if integrity:
        if INTEGRITY_KEY in obj:
            raise ValueError(f"save_checkpoint: {INTEGRITY_KEY!r} is reserved")
        obj = {**obj, INTEGRITY_KEY: content_digest(obj)}
    buf = io.BytesIO()
    torch.save(obj, buf)
    _atomic_write_bytes(Path(path), buf.getvalue())


# What torch.load raises on a truncated or garbled file (besides OSError, which is the filesystem's, not the file's).
_UNREADABLE = (RuntimeError, EOFError, ValueError, TypeError, KeyError, IndexError, AttributeError,
               UnicodeDecodeError, pickle.UnpicklingError, zipfile.BadZipFile, OverflowError, MemoryError)


def load_checkpoint(path: str | Path, map_location="cpu", require_integrity: bool = False) -> dict:
    """``torch.load(path, weights_only=True)``; raises CheckpointError for a file that cannot be trusted.

    A checkpoint saved with ``integrity=True`` is verified (and the digest removed); with ``require_integrity``
    a checkpoint without a digest is refused too."""
    path = Path(path)
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except OSError:
        raise
    except pickle.UnpicklingError as e:
        if "weights only load failed" in str(e).lower():
            first = next((ln for ln in str(e).splitlines() if "Unsupported" in ln or "global" in ln.lower()), "")
            raise CheckpointError(path, "refused: it holds pickled objects that weights_only=True does not allow "
                                  f"(code would run on loading){'; ' + first.strip() if first else ''}",
                                  unsafe=True) from None
        raise CheckpointError(path, f"unreadable ({type(e).__name__}: {e})") from None
    except _UNREADABLE as e:
        raise CheckpointError(path, f"unreadable ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") \
            from None
    if isinstance(obj, dict) and INTEGRITY_KEY in obj:
        obj = dict(obj)
        recorded = obj.pop(INTEGRITY_KEY)
        if content_digest(obj) != recorded:
            raise CheckpointError(path, "contents do not match the sha256 recorded when it was saved (corrupted)")
    elif require_integrity:
        raise CheckpointError(path, f"has no integrity digest ({INTEGRITY_KEY}): not written by save_checkpoint("
                                    "integrity=True), or damaged")
    return obj


def write_json(path: str | Path, obj) -> None:
    _atomic_write_bytes(Path(path), (json.dumps(obj, indent=1, sort_keys=True) + "\n").encode())


def save_npz(path: str | Path, **arrays) -> None:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    _atomic_write_bytes(Path(path), buf.getvalue())


def save_npy(path: str | Path, array: np.ndarray) -> None:
    buf = io.BytesIO()
    np.save(buf, array)
    _atomic_write_bytes(Path(path), buf.getvalue())


def rng_states(generators: dict[str, torch.Generator]) -> dict:
    """Global torch RNGs (CPU, every CUDA device) and the named generators, all as uint8 tensors."""
    state = {"torch_cpu": torch.get_rng_state(), "generators": {k: g.get_state() for k, g in generators.items()}}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_states(state: dict, generators: dict[str, torch.Generator]) -> None:
    missing = set(generators) - set(state["generators"])
    if missing:
        raise ValueError(f"checkpoint has no RNG state for generator(s) {sorted(missing)}")
    torch.set_rng_state(state["torch_cpu"])
    for name, gen in generators.items():
        gen.set_state(state["generators"][name])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
