"""DoG traces: λ and DoG recorded during training, the input of the paper's Fig. 2 recipe (awd/dog_estimate.py)."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from awd.checks import is_int


class DoGTrace:
    """Per-iteration λ and DoG, kept on device until :meth:`flush` (one host sync per flush).

    ``record(lam, dog)`` once per iteration; iterations 0, every, 2·every, ... are stored. Independently of
    ``every``, exact per-epoch means over all iterations are accumulated on device; ``end_epoch()`` closes an epoch.
    """

    def __init__(self, every: int = 1):
        if not is_int(every) or every < 1:
            raise ValueError(f"every must be an int >= 1, got {every!r}")
        self.every = every
        self.iteration = 0  # iterations recorded so far (host counter: no sync)
        self._pending: list[tuple[int, Tensor, Tensor]] = []
        self._epoch_sum: Tensor | None = None  # [Σλ, ΣDoG] of the open epoch
        self._epoch_count = 0
        self._pending_epochs: list[tuple[Tensor, int]] = []
        self._host: dict[str, list[float]] = {
            k: [] for k in ("iteration", "lam", "dog", "epoch_lam", "epoch_dog", "epoch_iters")
        }

    def record(self, lam: Tensor, dog: Tensor) -> None:
        pair = torch.stack([torch.as_tensor(lam).detach().float(), torch.as_tensor(dog).detach().float()])
        self._epoch_sum = pair if self._epoch_sum is None else self._epoch_sum.to(pair.device) + pair
        self._epoch_count += 1
        if self.iteration % self.every == 0:
            self._pending.append((self.iteration, pair[0], pair[1]))
        self.iteration += 1

    def end_epoch(self) -> None:
        """Close the current epoch (its mean λ and DoG become ``epoch_lam``/``epoch_dog``); no-op if empty."""
        if self._epoch_count and self._epoch_sum is not None:
            self._pending_epochs.append((self._epoch_sum / self._epoch_count, self._epoch_count))
        self._epoch_sum, self._epoch_count = None, 0

    def flush(self) -> dict[str, np.ndarray]:
        """Move pending values to the host; return everything recorded so far as numpy arrays.

        Keys: ``iteration`` (int64), ``lam``, ``dog`` (float64, the downsampled per-iteration values),
        ``epoch_lam``, ``epoch_dog`` (float64 per closed epoch), ``epoch_iters`` (int64 iterations per epoch).
        """
        if self._pending:
            its, lams, dogs = zip(*self._pending)
            values = torch.stack([torch.stack(lams), torch.stack(dogs)]).cpu().double().numpy()
            self._host["iteration"].extend(its)
            self._host["lam"].extend(values[0].tolist())
            self._host["dog"].extend(values[1].tolist())
            self._pending = []
        if self._pending_epochs:
            means, counts = zip(*self._pending_epochs)
            values = torch.stack(means).cpu().double().numpy()
            self._host["epoch_lam"].extend(values[:, 0].tolist())
            self._host["epoch_dog"].extend(values[:, 1].tolist())
            self._host["epoch_iters"].extend(counts)
            self._pending_epochs = []
        ints = ("iteration", "epoch_iters")
        return {k: np.asarray(v, dtype=np.int64 if k in ints else np.float64) for k, v in self._host.items()}

    def state_dict(self) -> dict:
        """Everything needed to resume (flushes first); loadable with ``torch.load(weights_only=True)``."""
        data = self.flush()
        state: dict[str, Tensor | int] = {k: torch.from_numpy(v) for k, v in data.items()}
        state["every"] = self.every
        state["position"] = self.iteration
        state["open_epoch_count"] = self._epoch_count
        state["open_epoch_sum"] = (
            self._epoch_sum.detach().cpu().clone() if self._epoch_sum is not None else torch.zeros(2)
        )
        return state

    def load_state_dict(self, state: dict) -> None:
        if state["every"] != self.every:
            raise ValueError(f"DoGTrace.load_state_dict: saved every={state['every']}, this trace has {self.every}")
        self._host = {k: state[k].tolist() for k in self._host}
        self.iteration = int(state["position"])
        self._epoch_count = int(state["open_epoch_count"])
        self._epoch_sum = state["open_epoch_sum"].clone() if self._epoch_count else None
        self._pending, self._pending_epochs = [], []
