"""Atomic writes of training state and results, and loading checkpoints with `weights_only=True`.

Every writer goes through a temporary file in the destination directory and `os.replace`, so a reader (or a
resumed run after a crash) sees either the old file or the new one, never a torn one; a failed write (disk full,
permission denied) leaves the old file and no temporary. Checkpoints hold only tensors and primitive containers,
which is what `torch.load(weights_only=True)` accepts: a file carrying pickled code is refused, never executed.

`save_checkpoint(..., integrity=True)` seals the file with the sha256 of its bytes (kept as the zip archive's
comment, invisible to `torch.load`); `load_checkpoint(..., require_integrity=True)` checks it before unpickling, so
a cut-short file and flipped bits in tensor data, which `torch.load` itself does not notice, are caught. A file that
cannot be trusted raises `CheckpointError`.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import re
import struct
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


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used: unreadable, truncated, failing its integrity check, or refused by
    ``weights_only=True`` (``unsafe``: it carries pickled objects other than tensors and plain containers)."""

    def __init__(self, path, reason: str, unsafe: bool = False):
        self.path, self.reason, self.unsafe = Path(path), reason, unsafe
        super().__init__(f"{path}: {reason}")


# torch.save writes a zip archive; an integrity seal is the sha256 of the unsealed file, kept as the archive comment
# (the last bytes of the file), which torch.load and zip tools ignore: the contents stay exactly what was saved.
_EOCD_SIG, _EOCD_LEN = b"PK\x05\x06", 22
_SEAL_PREFIX = b"awd-sha256:"
_SEAL_LEN = len(_SEAL_PREFIX) + 64


def _seal(data: bytes) -> bytes:
    eocd = len(data) - _EOCD_LEN
    if eocd < 0 or data[eocd:eocd + 4] != _EOCD_SIG or data[-2:] != b"\x00\x00":
        raise RuntimeError("save_checkpoint(integrity=True): torch.save did not end its archive with a plain zip "
                           "end-of-central-directory record; cannot seal it")
    seal = _SEAL_PREFIX + hashlib.sha256(data).hexdigest().encode()
    return data[:-2] + struct.pack("<H", len(seal)) + seal


def _check_seal(data: bytes) -> str:
    """"ok", "none" (no seal) or "mismatch" (sealed, but the bytes changed since)."""
    eocd = len(data) - _SEAL_LEN - _EOCD_LEN
    if eocd < 0 or data[-_SEAL_LEN:-64] != _SEAL_PREFIX:
        return "none"
    if data[eocd:eocd + 4] != _EOCD_SIG or data[eocd + 20:eocd + 22] != struct.pack("<H", _SEAL_LEN):
        return "mismatch"
    unsealed = data[:eocd + 20] + b"\x00\x00"
    return "ok" if hashlib.sha256(unsealed).hexdigest().encode() == data[-64:] else "mismatch"


def save_checkpoint(obj: dict, path: str | Path, integrity: bool = False) -> None:
    buf = io.BytesIO()
    torch.save(obj, buf)
    data = buf.getvalue()
    _atomic_write_bytes(Path(path), _seal(data) if integrity else data)


# What torch.load raises on a truncated or garbled file (besides OSError, which is the filesystem's, not the file's).
_UNREADABLE = (RuntimeError, EOFError, ValueError, TypeError, KeyError, IndexError, AttributeError,
               UnicodeDecodeError, pickle.UnpicklingError, zipfile.BadZipFile, OverflowError, MemoryError)


def load_checkpoint(path: str | Path, map_location="cpu", require_integrity: bool = False) -> dict:
    """``torch.load(path, weights_only=True)``; raises CheckpointError for a file that cannot be trusted.

    A checkpoint saved with ``integrity=True`` is verified before it is unpickled; with ``require_integrity`` a
    checkpoint without a seal (e.g. cut short) is refused too. OSError (missing file, no permission) propagates."""
    path = Path(path)
    data = path.read_bytes()
    seal = _check_seal(data)
    if seal == "mismatch":
        raise CheckpointError(path, "its bytes do not match the sha256 recorded when it was saved (corrupted)")
    if seal == "none" and require_integrity:
        raise CheckpointError(path, f"has no integrity seal ({len(data)} bytes): cut short, damaged, or not written "
                                    "by save_checkpoint(integrity=True)")
    try:
        return torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        if "weights only load failed" in str(e).lower():
            found = re.search(r"Unsupported global: GLOBAL (\S+)", str(e))
            raise CheckpointError(path, "refused: it holds pickled objects that weights_only=True does not allow"
                                  + (f" ({found.group(1)})" if found else "") + "; loading it could run code, so "
                                  "it is not loaded; inspect it, then delete it", unsafe=True) from None
        raise CheckpointError(path, f"unreadable ({type(e).__name__}: {e})") from None
    except _UNREADABLE as e:
        first = str(e).splitlines()[0] if str(e) else ""
        raise CheckpointError(path, f"unreadable ({type(e).__name__}: {first})") from None


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
