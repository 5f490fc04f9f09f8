"""The digits train/val/test data the training tests share (sklearn's 8x8 digits: no download)."""

from __future__ import annotations

from awd.data import load_dataset, stratified_split
from awd.train_data import make_train_data


def digits_train_data(val_fraction: float = 0.15, seed: int = 0):
    """TrainData of digits with a stratified `val_fraction` held out of the training set."""
    train_set, test_set = load_dataset("digits"), load_dataset("digits", train=False)
    train_idx, val_idx = stratified_split(train_set.y, val_fraction, seed)
    return make_train_data(train_set, test_set, train_idx, val_idx)
