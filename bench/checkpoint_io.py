"""Checkpoint I/O of a WRN-28-10 training run: one `resume/last.pt` write timed and sized, and the bytes the run
store receives per epoch when last.pt is written every epoch (before) and every 600 s (after).

The state is what `awd.train` checkpoints: the model (`awd.models.build_model("preact_wrn", 10)`) and SGD's momentum
buffers, plus the small parts (history, RNG states). The write is `awd.checkpoint.save_checkpoint(..., integrity=True)`
as training does it: serialise, sha256 seal, write, fsync the file and its directory. It also times the per-epoch
copy of the state that interval checkpoints keep for a write on request (`awd.checkpoint.snapshot`, a clone where the
tensors live: on CPU here, device-to-device on a GPU).

    .venv/bin/python -m bench.checkpoint_io [--dir DIR] [--reps 3]

DIR defaults to $AWD_STORE (the run store's filesystem) or the current directory; a temporary folder in it is removed
afterwards.
"""

from __future__ import annotations

import argparse
import io
import math
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch

from awd.checkpoint import rng_states, save_checkpoint, snapshot
from awd.models import build_model
from awd.optim import build_optimizer
from bench.common import report, wait_for_quiet

EPOCH_S = (10, 30, 50)  # natural WRN-28-10 epochs on one GPU, fast to slow (issue 15)
MB, GB = 1e6, 1e9


def wrn_state() -> tuple[dict, dict, int]:
    """(last.pt state, best.pt record, parameter count) of a WRN-28-10 run after one SGD step."""
    torch.manual_seed(0)
    model = build_model("preact_wrn", 10)
    optimizer = build_optimizer("sgd", model.parameters(), lr=0.1, momentum=0.9)
    for p in model.parameters():
        p.grad = torch.randn_like(p)  # random momentum buffers: as incompressible as real ones
    optimizer.step()
    row = {"epoch": 1, "train_loss": 2.0, "train_acc": 0.3, "val_acc": 0.3, "val_robust_acc": None,
           "lambda_mean": 5e-4, "dog_mean": 0.01, "weight_norm": 50.0, "lr": 0.1, "seconds": 30.0}
    state = {"format": 2, "epoch": 1, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
             "weight_decay": {"lam": torch.tensor(5e-4), "dog": torch.tensor(0.01)},
             "scheduler": {"last_epoch": 391}, "history": [row] * 200, "best": {"epoch": 1, "metric": 0.3},
             "rng": rng_states({"index": torch.Generator(), "augment": torch.Generator()})}
    best = {"epoch": 1, "val_acc": 0.3, "val_robust_acc": None, "model": model.state_dict()}
    return state, best, sum(p.numel() for p in model.parameters())


def timed(fn, reps: int) -> float:
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dir", default=os.environ.get("AWD_STORE") or ".", help="filesystem to write on")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--every-s", type=float, default=600.0, help="the checkpoint interval after the change")
    ap.add_argument("--jobs", type=int, default=64, help="concurrent training jobs sharing the filesystem")
    args = ap.parse_args()

    state, best, n_params = wrn_state()
    quiet = wait_for_quiet()
    work = Path(tempfile.mkdtemp(prefix=".bench-checkpoint-io-", dir=args.dir))
    try:
        last, best_path = work / "resume" / "last.pt", work / "resume" / "best.pt"
        copy_s = timed(lambda: snapshot(state), args.reps)
        serialise_s = timed(lambda: torch.save(state, io.BytesIO()), args.reps)
        write_s = timed(lambda: save_checkpoint(state, last, integrity=True), args.reps)
        best_s = timed(lambda: save_checkpoint(best, best_path, integrity=True), args.reps)
        last_b, best_b = last.stat().st_size, best_path.stat().st_size
        fs = os.statvfs(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    rows = []
    for epoch_s in EPOCH_S:
        every = math.ceil(args.every_s / epoch_s)  # epochs between writes: the first epoch end >= every_s later
        before, after = last_b, last_b / every
        rows.append(f"| {epoch_s} s | every epoch | {before / MB:.0f} | {args.jobs * before / epoch_s / GB:.2f} | "
                    f"every {every} epochs | {after / MB:.1f} | {args.jobs * after / epoch_s / GB:.3f} | "
                    f"{before / after:.0f}× |")
    body = f"""WRN-28-10 (`preact_wrn`, {n_params / 1e6:.1f} M parameters) + SGD momentum buffers; written to `{args.dir}` \
(block size {fs.f_bsize}); medians of {args.reps} writes.

| what | size (MB) | time (s) |
|---|---|---|
| `resume/last.pt` write: serialise + sha256 seal + write + fsync file and directory | {last_b / MB:.1f} | {write_s:.2f} |
| of which serialising alone (`torch.save` to memory) | | {serialise_s:.2f} |
| `resume/best.pt` write (model only; with last.pt when the best epoch changed) | {best_b / MB:.1f} | {best_s:.2f} |
| per-epoch copy of the state kept for a write on request (`snapshot`: a clone where the tensors live; CPU here) | \
{last_b / MB:.1f} | {copy_s:.3f} |

Bytes written to the run store per training epoch by `last.pt` (best.pt adds {best_b / MB:.0f} MB per improving epoch \
before, and at most that per write after), for natural epochs of 10–50 s and {args.jobs} concurrent jobs:

| natural epoch | before: last.pt | MB/epoch | {args.jobs} jobs GB/s | after: every {args.every_s:.0f} s | MB/epoch | \
{args.jobs} jobs GB/s | less |
|---|---|---|---|---|---|---|---|
""" + "\n".join(rows) + f"""

After, a run also writes last.pt once at its end and once when its job gets the time-limit signal (\
{write_s:.1f} s here, well inside the 90 s between submitit's signal and the limit). A crash (SIGKILL, node failure) \
redoes up to {args.every_s:.0f} s of training instead of one epoch."""
    report("Checkpoint I/O (WRN-28-10, resume/last.pt)", body, quiet)


if __name__ == "__main__":
    main()
