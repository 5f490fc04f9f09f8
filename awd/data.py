"""Datasets as uint8 tensors in memory, splits, label noise and batched on-device augmentation.

CIFAR files are read by torchvision's own parser, but their presence is checked by name, not by md5: torchvision
verifies every batch against the official md5, which rules out tests on small files written in CIFAR's format and
re-packed copies of the data. Downloading (`download=True`) still verifies the official archive's md5.

`digits` is scikit-learn's bundled 8x8 digits (1797 images, no download). Its train/test parts are a fixed
stratified split: DIGITS_TEST_FRACTION (20 %) of the images, drawn with seed DIGITS_SPLIT_SEED (0), form the test set.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from awd.checks import is_int, is_real

DATASET_NAMES: tuple[str, ...] = ("digits", "cifar10", "cifar100")
_INFO = {"digits": (10, 1, 8), "cifar10": (10, 3, 32), "cifar100": (100, 3, 32)}
DIGITS_TEST_FRACTION = 0.2
DIGITS_SPLIT_SEED = 0


@dataclass
class ArrayDataset:
    x: torch.Tensor  # uint8, N x C x H x W
    y: torch.Tensor  # int64, N
    num_classes: int
    classes: list[str]
    name: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.x, torch.Tensor) or self.x.dtype != torch.uint8 or self.x.dim() != 4:
            raise ValueError(f"x must be a uint8 tensor N x C x H x W, got {_describe(self.x)}")
        if not isinstance(self.y, torch.Tensor) or self.y.dtype != torch.int64 or self.y.dim() != 1:
            raise ValueError(f"y must be an int64 tensor of shape (N,), got {_describe(self.y)}")
        if len(self.x) != len(self.y):
            raise ValueError(f"x has {len(self.x)} images but y has {len(self.y)} labels")
        if len(self.classes) != self.num_classes:
            raise ValueError(f"classes has {len(self.classes)} names but num_classes={self.num_classes}")
        if len(self.y) and (int(self.y.min()) < 0 or int(self.y.max()) >= self.num_classes):
            raise ValueError(f"labels must lie in [0, {self.num_classes}), got range [{int(self.y.min())}, {int(self.y.max())}]")

    def __len__(self) -> int:
        return len(self.y)


def _describe(t) -> str:
    if isinstance(t, torch.Tensor):
        return f"tensor dtype={t.dtype} shape={tuple(t.shape)}"
    return type(t).__name__


def _check_name(name: str) -> None:
    if name not in _INFO:
        raise ValueError(f"dataset={name!r} is unknown; allowed: {list(DATASET_NAMES)}")


# Standard augmentation per dataset (crop padding, horizontal flip): CIFAR's pad-4 crop + flip; digits are not
# mirror-symmetric and have 8 pixels, so a 1-pixel shift and no flip (flips cost ~25 points of accuracy there).
_AUGMENT = {"digits": (1, False), "cifar10": (4, True), "cifar100": (4, True)}


def augmentation(name: str) -> tuple[int, bool]:
    """(pad, flip) of the standard training augmentation of dataset `name`."""
    _check_name(name)
    return _AUGMENT[name]


def dataset_info(name: str) -> tuple[int, int, int]:
    """(num_classes, in_channels, image_size) without loading anything."""
    _check_name(name)
    return _INFO[name]


# --- loading -------------------------------------------------------------------------------------------------------


def _trust_local(cls):
    """A torchvision CIFAR class whose integrity check is presence of every expected file (md5=None)."""
    return type(
        f"Local{cls.__name__}",
        (cls,),
        {
            "train_list": [[f, None] for f, _ in cls.train_list],
            "test_list": [[f, None] for f, _ in cls.test_list],
            "meta": {**cls.meta, "md5": None},
        },
    )


@cache
def _cifar_class(name: str):
    # torchvision imported here, not at the top: its import (every model, torch._dynamo) costs ~1.3 CPU-s in each
    # stage driver and job process, and only CIFAR needs it
    from torchvision import datasets as tv_datasets

    return _trust_local({"cifar10": tv_datasets.CIFAR10, "cifar100": tv_datasets.CIFAR100}[name])


def cifar_files(name: str) -> tuple[str, list[str]]:
    """(folder name under root, every file expected in it)."""
    cls = _cifar_class(name)
    return cls.base_folder, [f for f, _ in cls.train_list + cls.test_list] + [cls.meta["filename"]]


def _load_cifar(name: str, root: Path, download: bool, train: bool) -> ArrayDataset:
    folder_name, expected = cifar_files(name)
    folder = root / folder_name
    if not download:
        if not folder.is_dir():
            raise FileNotFoundError(
                f"{name}: folder {folder} not found; put the extracted CIFAR python files there "
                f"({', '.join(expected)}) or set data download: true"
            )
        missing = [f for f in expected if not (folder / f).is_file()]
        if missing:
            raise FileNotFoundError(
                f"{name}: folder {folder} is incomplete, missing {missing} (expected {expected}); "
                "restore them or set data download: true"
            )
    ds = _cifar_class(name)(str(root), train=train, download=download)
    num_classes = _INFO[name][0]
    x = torch.from_numpy(np.ascontiguousarray(ds.data.transpose(0, 3, 1, 2)))
    y = torch.as_tensor(np.asarray(ds.targets, dtype=np.int64))
    return ArrayDataset(x=x, y=y, num_classes=num_classes, classes=[str(c) for c in ds.classes], name=name)


def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled digits as `sklearn.datasets.load_digits` reads them ((1797, 8, 8) float64 images,
    int64 labels), read from its data file without importing scikit-learn: that import was ~2.4 CPU-s in every
    process that loads digits (each job and several stage drivers of the embedded default). tests/unit/test_data.py
    pins them equal to load_digits' arrays."""
    import gzip
    import importlib.util

    spec = importlib.util.find_spec("sklearn")  # a top-level package: found, not imported
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("the digits dataset is scikit-learn's: install scikit-learn")
    path = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / "digits.csv.gz"
    with gzip.open(path, "rt") as f:
        data = np.loadtxt(f, delimiter=",")
    return data[:, :-1].reshape(-1, 8, 8), data[:, -1].astype(np.int64)


def _load_digits(train: bool) -> ArrayDataset:
    images, labels = _digits_arrays()
    train_idx, test_idx = stratified_split(labels, DIGITS_TEST_FRACTION, DIGITS_SPLIT_SEED)
    idx = train_idx if train else test_idx
    pixels = np.rint(images[idx] * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)
    x = torch.from_numpy(pixels[:, None, :, :].copy())
    y = torch.from_numpy(labels[idx])
    return ArrayDataset(x=x, y=y, num_classes=10, classes=[str(c) for c in range(10)], name="digits")


def load_dataset(name: str, root: str | os.PathLike = "data/raw", download: bool = False, train: bool = True) -> ArrayDataset:
    """`name` in DATASET_NAMES. CIFAR is read from `root/cifar-10-batches-py` or `root/cifar-100-python`;
    `digits` ignores `root` and `download`."""
    _check_name(name)
    if not isinstance(train, bool):
        raise ValueError(f"train={train!r} must be True or False")
    if name == "digits":
        return _load_digits(train)
    return _load_cifar(name, Path(root), bool(download), train)


# --- splits and label noise ----------------------------------------------------------------------------------------


def _labels_numpy(labels, arg: str = "labels") -> np.ndarray:
    arr = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{arg} must be a 1-d integer array, got dtype={arr.dtype} shape={arr.shape}")
    return arr.astype(np.int64)


def stratified_split(labels, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded stratified split -> (train_idx, val_idx), sorted int64. Per class the validation count is the class
    count times `val_fraction`, rounded up or down (scikit-learn's StratifiedShuffleSplit allocation).
    val_fraction=0 returns every index as train and an empty validation set."""
    y = _labels_numpy(labels)
    if not (is_real(val_fraction) and 0.0 <= val_fraction < 1.0):
        raise ValueError(f"val_fraction={val_fraction!r} must be a number in [0, 1)")
    if not is_int(seed):
        raise ValueError(f"seed={seed!r} must be an integer")
    if val_fraction == 0:
        return np.arange(len(y), dtype=np.int64), np.zeros(0, dtype=np.int64)
    train_idx, val_idx = _stratified_shuffle_split(y, float(val_fraction), int(seed))
    return np.sort(train_idx).astype(np.int64), np.sort(val_idx).astype(np.int64)


def _approximate_mode(class_counts: np.ndarray, n_draws: int, rng: np.random.RandomState) -> np.ndarray:
    continuous = class_counts / class_counts.sum() * n_draws
    floored = np.floor(continuous)
    need_to_add = int(n_draws - floored.sum())
    if need_to_add > 0:
        remainder = continuous - floored
        for value in np.sort(np.unique(remainder))[::-1]:  # the largest remainders first, ties drawn at random
            (inds,) = np.where(remainder == value)
            add_now = min(len(inds), need_to_add)
            floored[rng.choice(inds, size=add_now, replace=False)] += 1
            need_to_add -= add_now
            if need_to_add == 0:
                break
    return floored.astype(int)


def _stratified_shuffle_split(y: np.ndarray, test_size: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's StratifiedShuffleSplit(n_splits=1, test_size, random_state=seed).split, draw for draw, without
    importing scikit-learn (~2.4 CPU-s in every job and stage driver that splits data); tests/unit/test_data.py pins
    the two equal over many label sets, fractions and seeds."""
    n = len(y)
    n_test = math.ceil(test_size * n)
    n_train = n - n_test
    classes, y_indices, class_counts = np.unique(y, return_inverse=True, return_counts=True)
    if np.min(class_counts) < 2:
        raise ValueError(f"a stratified split needs 2 examples of every class; classes "
                         f"{classes[class_counts < 2].tolist()} have 1")
    for name, size in (("train", n_train), ("validation/test", n_test)):
        if size < len(classes):
            raise ValueError(f"a stratified split of {n} examples at fraction {test_size:g} leaves {size} for {name}, "
                             f"fewer than the {len(classes)} classes")
    class_indices = np.split(np.argsort(y_indices, kind="stable"), np.cumsum(class_counts)[:-1])
    rng = np.random.RandomState(seed)
    n_i = _approximate_mode(class_counts, n_train, rng)
    t_i = _approximate_mode(class_counts - n_i, n_test, rng)
    train: list = []
    test: list = []
    for i in range(len(classes)):
        perm = class_indices[i].take(rng.permutation(class_counts[i]), mode="clip")
        train.extend(perm[: n_i[i]])
        test.extend(perm[n_i[i]: n_i[i] + t_i[i]])
    return rng.permutation(train), rng.permutation(test)


def symmetric_noise(labels, rate: float, num_classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Flip exactly round(rate * n) labels, chosen uniformly without replacement, each to a uniformly drawn *other*
    class -> (noisy_labels int64, flipped_mask bool)."""
    y = _labels_numpy(labels)
    if not (is_real(rate) and 0.0 <= rate < 1.0):
        raise ValueError(f"rate={rate!r} must be a number in [0, 1)")
    if not is_int(num_classes) or num_classes < 2:
        raise ValueError(f"num_classes={num_classes!r} must be an integer >= 2")
    if len(y) and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes}), got range [{y.min()}, {y.max()}]")
    if not is_int(seed):
        raise ValueError(f"seed={seed!r} must be an integer")
    rng = np.random.default_rng(int(seed))
    n_flip = int(round(rate * len(y)))
    idx = rng.choice(len(y), size=n_flip, replace=False)
    # An offset in 1..K-1 modulo K is uniform over the K-1 other classes and never the original one.
    offsets = rng.integers(1, num_classes, size=n_flip)
    noisy = y.copy()
    noisy[idx] = (y[idx] + offsets) % num_classes
    flipped = np.zeros(len(y), dtype=bool)
    flipped[idx] = True
    return noisy, flipped


# --- tensors, augmentation, batching -------------------------------------------------------------------------------


def to_float(x: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 pixels -> floats in [0, 1]."""
    if not isinstance(x, torch.Tensor) or x.dtype != torch.uint8:
        raise ValueError(f"x must be a uint8 tensor, got {_describe(x)}")
    return x.to(dtype).div_(255.0)


def shift_flip(x: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, flip: torch.Tensor, pad: int) -> torch.Tensor:
    """Crop window (dy[i], dx[i]) in [0, 2*pad] of the zero-padded image i, mirrored left-right where flip[i]."""
    n, c, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    rows = dy.to(x.device, torch.int64)[:, None] + torch.arange(h, device=x.device)
    cols = dx.to(x.device, torch.int64)[:, None] + torch.arange(w, device=x.device)
    cols = torch.where(flip.to(x.device, torch.bool)[:, None], cols.flip(1), cols)
    out = padded.gather(2, rows[:, None, :, None].expand(n, c, h, w + 2 * pad))
    return out.gather(3, cols[:, None, None, :].expand(n, c, h, w))


def draw_augment(n: int, generator: torch.Generator | None = None, pad: int = 4, flip: bool = True, device=None):
    """The random draws `augment` uses: (dy, dx, flip), on the generator's device (else `device`, else CPU)."""
    device = generator.device if generator is not None else torch.device(device or "cpu")
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator, device=device)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator, device=device)
    if flip:
        flips = torch.randint(0, 2, (n,), generator=generator, device=device).bool()
    else:
        flips = torch.zeros(n, dtype=torch.bool, device=device)
    return dy, dx, flips


def augment(x: torch.Tensor, generator: torch.Generator | None = None, pad: int = 4, flip: bool = True) -> torch.Tensor:
    """Random crop with zero padding `pad` and random horizontal flip, per sample, for a float batch N x C x H x W on
    any device. Draws come from `generator` (on its own device), or from the global RNG of x's device when None."""
    if not isinstance(x, torch.Tensor) or x.dim() != 4 or not x.is_floating_point():
        raise ValueError(f"x must be a float tensor N x C x H x W, got {_describe(x)}")
    if not is_int(pad) or pad < 0:
        raise ValueError(f"pad={pad!r} must be an integer >= 0")
    dy, dx, flips = draw_augment(len(x), generator, int(pad), flip, device=x.device)
    return shift_flip(x, dy, dx, flips, pad)
