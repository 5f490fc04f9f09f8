"""DVC stage `prepare`: per dataset, the seeded stratified validation split and the noisy labels with flip masks."""

from __future__ import annotations

import numpy as np

from awd.checkpoint import save_npz
from awd.data import load_dataset, stratified_split, symmetric_noise
from pipeline.common import ARTIFACTS, stage_args
from pipeline.params import check_data, load_params
from pipeline.suites import datasets_used, noise_settings
from pipeline.units.data import noise_tag


def prepare_dataset(params, dataset: str) -> dict:
    train = load_dataset(dataset, params.data.root, download=params.data.download, train=True)
    load_dataset(dataset, params.data.root, download=params.data.download, train=False)
    labels = train.y.numpy()
    train_idx, val_idx = stratified_split(labels, params.data.val_fraction, params.data.split_seed)
    arrays = {
        "train_idx": np.asarray(train_idx, dtype=np.int64),
        "val_idx": np.asarray(val_idx, dtype=np.int64),
        "val_fraction": np.float64(params.data.val_fraction),
        "split_seed": np.int64(params.data.split_seed),
    }
    for rate, seed in noise_settings(params, dataset):
        noisy, flipped = symmetric_noise(labels, rate, train.num_classes, seed)
        arrays[f"noisy_{noise_tag(rate, seed)}"] = np.asarray(noisy, dtype=np.int64)
        arrays[f"flipped_{noise_tag(rate, seed)}"] = np.asarray(flipped, dtype=bool)
    return arrays


def main() -> None:
    args = stage_args(__doc__)
    params = load_params(args.params)
    check_data(params)
    for dataset in datasets_used(params):
        arrays = prepare_dataset(params, dataset)
        save_npz(ARTIFACTS / "prepare" / f"{dataset}.npz", **arrays)
        print(f"prepare: {dataset}: {len(arrays['train_idx'])} train / {len(arrays['val_idx'])} val, "
              f"label noise (rate, seed) {noise_settings(params, dataset)}")


if __name__ == "__main__":
    from pipeline.common import run_entry_point

    run_entry_point(main)
