"""The paper's Fig. 2 recipe for estimating a DoG value from a fixed-λ run's trace (awd/dog.py records it).

Recipe (paper §2, Fig. 2): train with a fixed λ_wd, record DoG every iteration, find the epoch at which the
training loss plateaus at its floor (log scale), and take the mean DoG over all iterations from the start to the end
of that epoch. numpy alone: the train stage's driver estimates from stored traces without importing torch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import cast

import numpy as np

from awd.checks import is_int, is_real


def running_mean(x) -> np.ndarray:
    """Mean of x[0..i] for every i (the curve of the paper's Fig. 2(a))."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"running_mean: x must be 1-D, got shape {x.shape}")
    return np.cumsum(x) / np.arange(1, len(x) + 1)


def _check_losses(epoch_losses) -> np.ndarray:
    losses = np.asarray(epoch_losses, dtype=np.float64)
    if losses.ndim != 1 or len(losses) == 0:
        raise ValueError(f"epoch_losses must be a non-empty 1-D sequence, got shape {losses.shape}")
    if not np.all(np.isfinite(losses)) or np.any(losses <= 0):
        raise ValueError(f"epoch_losses must be finite and > 0 (they are compared on a log scale), got {losses}")
    return losses


def plateau_epoch(epoch_losses, window: int, rel_tol: float) -> int:
    """Index (0-based) of the epoch at which the training loss has flattened at its floor (paper Fig. 2(b)).

    Rule: the first epoch e, followed by at least ``window`` more epochs, whose loss is within a factor
    (1 + ``rel_tol``) of every loss after it: log loss[e] − min(log loss[e:]) ≤ log(1 + rel_tol). On the log scale
    of Fig. 2(b) that is the point where the curve reaches the level it stays at. A mid-training stall (flat for a
    while at high learning rate, then falling again) does not qualify, because the later fall takes the loss more
    than ``rel_tol`` below the stall. If no epoch qualifies (the loss still falls, or the flat tail is shorter than
    ``window``), the last epoch is returned: the whole run is averaged.
    """
    losses = _check_losses(epoch_losses)
    if not is_int(window) or window < 1:
        raise ValueError(f"window must be an int >= 1, got {window!r}")
    if not is_real(rel_tol) or not 0 < rel_tol < 1:
        raise ValueError(f"rel_tol must be a number in (0, 1), got {rel_tol!r}")
    logs = np.log(losses)
    floor_after = np.minimum.accumulate(logs[::-1])[::-1]  # min(log loss[e:]) for every e
    above = logs - floor_after
    for e in range(len(logs) - window):
        if above[e] <= math.log1p(rel_tol):
            return e
    return len(logs) - 1


def estimate_dog(
    dog_per_iter, iters_per_epoch: int | Sequence[int], epoch_losses, window: int, rel_tol: float
) -> tuple[float, int]:
    """(mean DoG over every iteration up to the end of the plateau epoch, plateau epoch).

    ``dog_per_iter`` holds one value per training iteration (a trace recorded with ``every=1``);
    ``iters_per_epoch`` is one int for all epochs or one per epoch.
    """
    dog = np.asarray(dog_per_iter, dtype=np.float64)
    if dog.ndim != 1 or len(dog) == 0:
        raise ValueError(f"dog_per_iter must be a non-empty 1-D sequence, got shape {dog.shape}")
    losses = _check_losses(epoch_losses)
    if is_int(iters_per_epoch):
        counts = np.full(len(losses), int(cast(int, iters_per_epoch)))  # is_int is no TypeGuard: numpy ints pass too
    else:
        counts = np.asarray(iters_per_epoch)
        if counts.shape != losses.shape:
            raise ValueError(
                f"iters_per_epoch: need one count per epoch ({len(losses)}), got shape {counts.shape}"
            )
    if not np.issubdtype(counts.dtype, np.integer) or np.any(counts < 1):
        raise ValueError(f"iters_per_epoch must be int(s) >= 1, got {iters_per_epoch!r}")
    epoch = plateau_epoch(losses, window, rel_tol)
    end = int(counts[: epoch + 1].sum())
    if len(dog) < end:
        raise ValueError(
            f"dog_per_iter has {len(dog)} values but the plateau epoch {epoch} ends at iteration {end}; "
            "record the trace with every=1 and check iters_per_epoch"
        )
    return float(dog[:end].mean()), epoch


def estimate_dog_from_epochs(epoch_dog, epoch_iters, epoch_losses, window: int, rel_tol: float) -> tuple[float, int]:
    """:func:`estimate_dog` from a trace's exact per-epoch means (``epoch_dog``, ``epoch_iters`` of
    :meth:`DoGTrace.flush`): the same value whatever the trace's downsampling ``every``."""
    means = np.asarray(epoch_dog, dtype=np.float64)
    counts = np.asarray(epoch_iters)
    losses = _check_losses(epoch_losses)
    if means.shape != losses.shape or counts.shape != losses.shape:
        raise ValueError(
            f"epoch_dog {means.shape}, epoch_iters {counts.shape} and epoch_losses {losses.shape} "
            "must have one entry per epoch"
        )
    if not np.issubdtype(counts.dtype, np.integer) or np.any(counts < 1):
        raise ValueError(f"epoch_iters must be ints >= 1, got {counts.tolist()}")
    epoch = plateau_epoch(losses, window, rel_tol)
    kept = slice(0, epoch + 1)
    return float((means[kept] * counts[kept]).sum() / counts[kept].sum()), epoch
