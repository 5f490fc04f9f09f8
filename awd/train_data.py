"""What a training run trains on: ``TrainData`` (uint8 images and int64 labels of the train / validation / test
parts, checked on construction) and ``make_train_data`` (from datasets and a split)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor


@dataclass
class TrainData:
    x_train: Tensor  # uint8 N×C×H×W
    y_train: Tensor  # int64 N, the labels trained on (possibly noisy)
    x_val: Tensor
    y_val: Tensor
    x_test: Tensor
    y_test: Tensor
    num_classes: int
    flipped: Tensor | None = None  # bool N: which training labels were flipped by the label noise

    def __post_init__(self):
        shape = None
        for part in ("train", "val", "test"):
            x, y = getattr(self, f"x_{part}"), getattr(self, f"y_{part}")
            if not isinstance(x, Tensor) or x.dtype != torch.uint8 or x.dim() != 4:
                raise ValueError(f"TrainData.x_{part} must be a uint8 tensor N×C×H×W, got {_describe(x)}")
            if not isinstance(y, Tensor) or y.dtype != torch.int64 or y.shape != (len(x),):
                raise ValueError(f"TrainData.y_{part} must be an int64 tensor of shape ({len(x)},), got {_describe(y)}")
            if len(x) == 0:
                raise ValueError(f"TrainData.x_{part} is empty")
            if shape is not None and x.shape[1:] != shape:
                raise ValueError(f"TrainData.x_{part} has image shape {tuple(x.shape[1:])}, x_train has {tuple(shape)}")
            shape = x.shape[1:]
            if int(y.min()) < 0 or int(y.max()) >= self.num_classes:
                raise ValueError(f"TrainData.y_{part} has labels in [{int(y.min())}, {int(y.max())}], "
                                 f"allowed [0, {self.num_classes})")
        if self.flipped is not None and (self.flipped.dtype != torch.bool or self.flipped.shape != self.y_train.shape):
            raise ValueError(f"TrainData.flipped must be a bool tensor of shape {tuple(self.y_train.shape)}, "
                             f"got {_describe(self.flipped)}")

    @property
    def in_channels(self) -> int:
        return int(self.x_train.shape[1])


def _describe(t) -> str:
    return f"tensor dtype={t.dtype} shape={tuple(t.shape)}" if isinstance(t, Tensor) else type(t).__name__


def _index(idx, name: str, n: int) -> Tensor:
    idx = torch.as_tensor(np.asarray(idx), dtype=torch.int64)
    if idx.dim() != 1 or (len(idx) and (int(idx.min()) < 0 or int(idx.max()) >= n)):
        raise ValueError(f"{name} must be 1-d indices into the {n} training images, got shape {tuple(idx.shape)}"
                         + (f" range [{int(idx.min())}, {int(idx.max())}]" if idx.numel() else ""))
    return idx


def make_train_data(dataset, test, train_idx, val_idx, labels=None, flipped=None) -> TrainData:
    """TrainData from the full training ArrayDataset, the test ArrayDataset and a split. ``labels`` (length of the
    full training set) replaces the dataset's labels for both train and validation parts; ``flipped`` likewise."""
    n = len(dataset.y)
    tr, va = _index(train_idx, "train_idx", n), _index(val_idx, "val_idx", n)
    if torch.isin(tr, va).any():
        raise ValueError("train_idx and val_idx overlap: the validation split must be held out")
    y = dataset.y if labels is None else torch.as_tensor(np.asarray(labels), dtype=torch.int64)
    if y.shape != (n,):
        raise ValueError(f"labels must have one entry per training image ({n}), got shape {tuple(y.shape)}")
    flip = None
    if flipped is not None:
        flip = torch.as_tensor(np.asarray(flipped), dtype=torch.bool)
        if flip.shape != (n,):
            raise ValueError(f"flipped must have one entry per training image ({n}), got shape {tuple(flip.shape)}")
        flip = flip[tr]
    return TrainData(x_train=dataset.x[tr], y_train=y[tr], x_val=dataset.x[va], y_val=y[va], x_test=test.x,
                     y_test=test.y, num_classes=int(dataset.num_classes), flipped=flip)
