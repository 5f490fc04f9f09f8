"""Atomic writes of training state and results, and loading checkpoints with `weights_only=True`.

Every writer goes through a temporary file in the destination directory and `os.replace`, so a reader (or a
resumed run after a crash) sees either the old file or the new one, never a torn one; a failed write (disk full,
permission denied) leaves the old file and no temporary. Checkpoints hold only tensors and primitive containers,
which is what `torch.load(weights_only=True)` accepts: a file carrying pickled code is refused, never executed.

Durability: the file is fsynced before the rename and its directory after it, so a file that was written survives a
node crash. This is the policy of ``jobs/atomic.py``, kept here as a minimal twin because `awd` imports nothing of
`jobs` (the library stays usable without the cluster layer); tests/unit/test_atomic_twins.py pins that both behave
the same.

`save_checkpoint(..., integrity=True)` seals the file with the sha256 of its bytes (kept as the zip archive's
comment, invisible to `torch.load`); `load_checkpoint(..., require_integrity=True)` checks it before unpickling, so
a cut-short file and flipped bits in tensor data, which `torch.load` itself does not notice, are caught. A file that
cannot be trusted raises `CheckpointError`.

`Checkpointer` is the resume protocol of a training run: what lives in ``out_dir/resume/`` (only needed to resume,
so a store may drop the folder once the run is done), when it is written, and how it is read back.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
import os
import pickle
import re
import struct
import tempfile
import time
import zipfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

log = logging.getLogger(__name__)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return  # some filesystems do not open directories; the rename is still atomic
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


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
    _fsync_dir(path.parent)


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


# --- the resume protocol of a training run --------------------------------------------------------------------------

RESUME_DIR = "resume"
LAST, BEST, BEST_PENDING = "last.pt", "best.pt", "best.pt.pending"
UNUSABLE = ".{}.unusable"  # where an in-progress checkpoint that cannot be used is moved (outside the store manifest)


def snapshot(obj):
    """A deep copy, each tensor cloned where it lives: later updates of the live tensors cannot change it. On a GPU
    that is a device-to-device copy (milliseconds for a WRN-28-10 state, for one more copy of it in device memory)
    rather than a per-epoch transfer to the host."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().clone()
    if isinstance(obj, dict):
        return {k: snapshot(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(snapshot(v) for v in obj)
    return obj


_ACTIVE: list[Checkpointer] = []  # the runs now training in this process (inside Checkpointer.active())


def checkpoint_now() -> int:
    """Write, for every run training in this process, the state of its last epoch end if it is not on disk yet;
    returns how many were written. For a job about to be stopped (a time-limit or preemption signal): safe to call
    from a signal handler that interrupted the loop anywhere, since it writes only a finished epoch's copy."""
    written = 0
    for checkpointer in list(_ACTIVE):
        written += checkpointer.write_unsaved("a checkpoint was requested")
    return written


class Checkpointer:
    """``out_dir/resume/`` of one training run: ``last.pt`` (the full state at an epoch end), ``best.pt`` (the best
    epoch's model, as last.pt records it) and, for a moment, ``best.pt.pending``; all sealed (integrity=True).

    When: ``epoch_end(state)`` writes last.pt when ``every_s`` seconds have passed since the last write (0: every
    epoch), or when ``final``; otherwise it keeps a copy of the state (``snapshot``, on the device), which is
    written by ``checkpoint_now()`` (what a job does when told to stop) or when the loop is interrupted inside
    ``active()`` (SystemExit, as submitit exits after requeueing; Ctrl-C): the rerun loses only the epoch in
    progress. A crash (SIGKILL, node failure) loses what came after the last write.

    best.pt never runs ahead of last.pt: a new best is written as best.pt.pending, then last.pt, then renamed; a
    resume settles a pending file left by a crash in between. ``resume()`` sets aside a state that cannot be used
    (truncated, corrupted, refused by weights_only, best.pt not matching last.pt) as ``.<name>.unusable`` and starts
    over, so a bad file never makes every retry crash.
    """

    def __init__(self, out_dir, *, every_s: float, fmt: int, clock=None):
        if isinstance(every_s, bool) or not isinstance(every_s, (int, float)) or not math.isfinite(every_s) \
                or every_s < 0:
            raise ValueError(f"checkpoint_every_s must be a finite number of seconds >= 0 (0: every epoch), "
                             f"got {every_s!r}")
        self.dir = Path(out_dir) / RESUME_DIR
        self.every_s, self.fmt, self._clock = float(every_s), fmt, clock or time.monotonic
        self.best: dict | None = None  # {"epoch", "val_acc", "val_robust_acc", "model"}: the best epoch so far
        # (state, best record or None) of the last epoch end while not on disk; one attribute, so that a signal
        # handler sees either the previous pair or the new one
        self._unsaved: tuple[dict, dict | None] | None = None
        self._saved_at = self._clock()

    def resume(self, config: dict, map_location="cpu") -> dict | None:
        """The state last.pt holds, or None (nothing to resume, or set aside). ValueError: it is another run's."""
        last = self.dir / LAST
        if not last.exists():
            return None
        try:
            state = load_checkpoint(last, map_location=map_location, require_integrity=True)
            if state.get("format") != self.fmt:
                raise ValueError(f"{last}: checkpoint format {state.get('format')!r}, this code reads {self.fmt}")
            if state["config"] != config:
                diff = {k: (v, state["config"].get(k)) for k, v in config.items() if state["config"].get(k) != v}
                raise ValueError(f"{last} belongs to a run with a different config (key: (this run, checkpoint)): "
                                 f"{diff}; use a fresh output directory")
            self.best = self._settle_best(state["best"]["epoch"])
        except CheckpointError as err:
            self._set_aside(err)
            return None
        return state

    def epoch_end(self, state: dict, best: dict | None = None, final: bool = False) -> None:
        """``best``: the record of this epoch if it is the best so far (its model is copied too)."""
        state = snapshot(state)
        if best is not None:
            best = snapshot(best)
        elif self._unsaved is not None:
            best = self._unsaved[1]  # an earlier epoch's best that is not on disk yet
        self._unsaved = (state, best)
        if best is not None:
            self.best = best
        if final or self._clock() - self._saved_at >= self.every_s:
            self._write()

    @contextmanager
    def active(self):
        """While training: reachable by ``checkpoint_now()``, and an interruption writes the last epoch end."""
        _ACTIVE.append(self)
        try:
            yield
        except (SystemExit, KeyboardInterrupt) as stop:
            self.write_unsaved(f"interrupted ({type(stop).__name__})")
            raise
        finally:
            _ACTIVE.remove(self)

    def write_unsaved(self, why: str) -> int:
        if self._unsaved is None:
            return 0
        log.warning("%s: writing the checkpoint of epoch %s", why, self._unsaved[0].get("epoch"))
        self._write()
        return 1

    def _write(self) -> None:
        assert self._unsaved is not None, "_write is called with a checkpoint to write"
        state, best = self._unsaved
        pending = self.dir / BEST_PENDING
        if best is not None:
            save_checkpoint(best, pending, integrity=True)
        save_checkpoint(state, self.dir / LAST, integrity=True)
        if best is not None:  # only now: best.pt must never run ahead of the best epoch recorded in last.pt
            os.replace(pending, self.dir / BEST)
            _fsync_dir(self.dir)
        self._unsaved, self._saved_at = None, self._clock()

    def _settle_best(self, best_epoch: int) -> dict | None:
        """A crash between writing last.pt and promoting the pending best leaves best.pt one step behind: promote the
        pending file if last.pt counts it as best, else it belongs to an epoch that is about to be redone (or it is
        damaged): drop it. Then best.pt must hold the best epoch last.pt records, else CheckpointError."""
        pending, best = self.dir / BEST_PENDING, self.dir / BEST
        if pending.exists():
            try:
                epoch = load_checkpoint(pending, require_integrity=True).get("epoch")
            except CheckpointError:
                epoch = None
            if epoch == best_epoch:
                os.replace(pending, best)
            else:
                pending.unlink()
        if best_epoch == 0:
            return None
        if not best.exists():
            raise CheckpointError(best, f"is missing, but {LAST} records epoch {best_epoch} as the best")
        record = load_checkpoint(best, require_integrity=True)
        if record.get("epoch") != best_epoch:
            raise CheckpointError(best, f"holds epoch {record.get('epoch')}, but {LAST} records epoch {best_epoch} "
                                        "as the best")
        return record

    def _set_aside(self, err: CheckpointError) -> None:
        moved = []
        for name in (LAST, BEST, BEST_PENDING):
            if (self.dir / name).exists():
                os.replace(self.dir / name, self.dir / UNUSABLE.format(name))
                moved.append(f"{name} -> {UNUSABLE.format(name)}")
        self.best = None
        log.warning("cannot resume: %s; moved the in-progress checkpoints aside (%s) and restarting from epoch 0",
                    err, ", ".join(moved))
