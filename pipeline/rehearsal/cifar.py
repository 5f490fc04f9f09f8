"""Small CIFAR-10/100 files in CIFAR's own (python pickle) format, for the prepare stage of a rehearsal.

The test sets keep their real size (10,000 images), so AutoAttack is sharded exactly as at paper scale; the
training sets are small (the stand-ins only need the split's size). Images are blank: nothing trains on them.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

TEST_IMAGES = 10_000
PIXELS = 3 * 32 * 32


def _dump(path: Path, obj: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        pickle.dump(obj, f, protocol=4)
    tmp.replace(path)


def _part(n: int, classes: int) -> tuple[np.ndarray, list[int]]:
    return np.zeros((n, PIXELS), dtype=np.uint8), (np.arange(n) % classes).tolist()


def write_cifar10(root: Path, train_images: int = 5_000) -> Path:
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    per_batch = train_images // 5
    for b in range(1, 6):
        x, y = _part(per_batch, 10)
        _dump(folder / f"data_batch_{b}", {"batch_label": f"training batch {b} of 5", "labels": y, "data": x})
    x, y = _part(TEST_IMAGES, 10)
    _dump(folder / "test_batch", {"batch_label": "testing batch 1 of 1", "labels": y, "data": x})
    _dump(folder / "batches.meta", {"num_cases_per_batch": per_batch, "num_vis": PIXELS,
                                    "label_names": [f"class{i}" for i in range(10)]})
    return folder


def write_cifar100(root: Path, train_images: int = 5_000) -> Path:
    folder = Path(root) / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", train_images), ("test", TEST_IMAGES)):
        x, fine = _part(n, 100)
        _dump(folder / split, {"data": x, "fine_labels": fine, "coarse_labels": [f // 5 for f in fine]})
    _dump(folder / "meta", {"fine_label_names": [f"fine{i}" for i in range(100)],
                            "coarse_label_names": [f"coarse{i}" for i in range(20)]})
    return folder


WRITERS = {"cifar10": write_cifar10, "cifar100": write_cifar100}


def write_datasets(root: Path, datasets) -> list[str]:
    """Writes the CIFAR datasets among `datasets` (digits is bundled with scikit-learn); returns those written."""
    written = []
    for name in datasets:
        if name in WRITERS:
            WRITERS[name](root)
            written.append(name)
    return written
