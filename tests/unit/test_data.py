import pickle

import numpy as np
import pytest
import torch

from awd.data import (
    DATASET_NAMES,
    ArrayDataset,
    augment,
    dataset_info,
    draw_augment,
    load_dataset,
    shift_flip,
    stratified_split,
    symmetric_noise,
    to_float,
)

# --- CIFAR files written in CIFAR's own python format ------------------------------------------------------------


def _pickle(path, obj):
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def _images(rng, n):
    return rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)


def write_cifar10(root, per_batch=3, n_test=4, seed=0):
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    train_x, train_y = [], []
    for b in range(1, 6):
        x, y = _images(rng, per_batch), rng.integers(0, 10, per_batch).tolist()
        _pickle(folder / f"data_batch_{b}", {"batch_label": f"training batch {b} of 5", "labels": y, "data": x})
        train_x.append(x)
        train_y += y
    test_x, test_y = _images(rng, n_test), rng.integers(0, 10, n_test).tolist()
    _pickle(folder / "test_batch", {"batch_label": "testing batch 1 of 1", "labels": test_y, "data": test_x})
    names = [f"class{i}" for i in range(10)]
    _pickle(folder / "batches.meta", {"num_cases_per_batch": per_batch, "label_names": names, "num_vis": 3072})
    return folder, (np.vstack(train_x), np.array(train_y)), (test_x, np.array(test_y)), names


def write_cifar100(root, n_train=6, n_test=5, seed=1):
    rng = np.random.default_rng(seed)
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    parts = {}
    for split, n in (("train", n_train), ("test", n_test)):
        x, fine = _images(rng, n), rng.integers(0, 100, n).tolist()
        _pickle(folder / split, {"data": x, "fine_labels": fine, "coarse_labels": [f // 5 for f in fine]})
        parts[split] = (x, np.array(fine))
    names = [f"fine{i}" for i in range(100)]
    _pickle(folder / "meta", {"fine_label_names": names, "coarse_label_names": [f"c{i}" for i in range(20)]})
    return folder, parts, names


def _as_nchw(flat):
    return torch.from_numpy(flat.reshape(-1, 3, 32, 32))


@pytest.mark.parametrize("train", [True, False])
def test_cifar10_loads_own_format(tmp_path, train):
    _, (tx, ty), (vx, vy), names = write_cifar10(tmp_path)
    ds = load_dataset("cifar10", tmp_path, train=train)
    x, y = (tx, ty) if train else (vx, vy)
    assert isinstance(ds, ArrayDataset)
    assert ds.x.dtype == torch.uint8 and ds.x.shape == (len(y), 3, 32, 32)
    assert ds.y.dtype == torch.int64
    # Same pixel layout as the files (row-major R, G, B planes), labels in file order.
    assert torch.equal(ds.x, _as_nchw(x))
    assert ds.y.tolist() == y.tolist()
    assert ds.num_classes == 10 and ds.classes == names and ds.name == "cifar10"


@pytest.mark.parametrize("train", [True, False])
def test_cifar100_loads_fine_labels(tmp_path, train):
    _, parts, names = write_cifar100(tmp_path)
    x, y = parts["train" if train else "test"]
    ds = load_dataset("cifar100", tmp_path, train=train)
    assert torch.equal(ds.x, _as_nchw(x))
    assert ds.y.tolist() == y.tolist()
    assert ds.num_classes == 100 and ds.classes == names


def test_cifar_download_true_uses_present_files(tmp_path):
    # Files already there: no network is touched (this machine has none) and they are read as is.
    write_cifar10(tmp_path)
    assert len(load_dataset("cifar10", tmp_path, download=True, train=False)) == 4


def test_cifar_missing_folder_names_it(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        load_dataset("cifar100", tmp_path / "nowhere")
    msg = str(err.value)
    assert str(tmp_path / "nowhere" / "cifar-100-python") in msg
    assert "download: true" in msg and "train" in msg and "meta" in msg


@pytest.mark.parametrize("missing", ["data_batch_3", "batches.meta"])
def test_cifar_incomplete_folder_names_missing_file(tmp_path, missing):
    folder, *_ = write_cifar10(tmp_path)
    (folder / missing).unlink()
    with pytest.raises(FileNotFoundError, match=f"missing \\['{missing}'\\]"):
        load_dataset("cifar10", tmp_path, train=False)


# --- digits --------------------------------------------------------------------------------------------------------


def test_digits_shapes_and_partition():
    from sklearn.datasets import load_digits

    train, test = load_dataset("digits", train=True), load_dataset("digits", train=False)
    for ds in (train, test):
        assert ds.x.dtype == torch.uint8 and ds.x.shape[1:] == (1, 8, 8)
        assert ds.y.dtype == torch.int64 and ds.num_classes == 10 and len(ds.classes) == 10
        assert set(ds.y.tolist()) == set(range(10))
    assert (len(train), len(test)) == (1437, 360)  # test part = ceil(0.2 * 1797)
    assert int(train.x.max()) == 255 and int(train.x.min()) == 0
    # Train and test together are exactly the 1797 scaled images (as a multiset of image+label rows): disjoint parts.
    digits = load_digits()
    full = np.rint(digits.images * 255 / 16).astype(np.uint8).reshape(len(digits.target), -1)
    full_rows = np.column_stack([full, digits.target]).astype(np.int64)
    ours = torch.cat([torch.cat([d.x.flatten(1).long(), d.y[:, None]], 1) for d in (train, test)]).numpy()
    assert np.array_equal(np.unique(full_rows, axis=0, return_counts=True)[1], np.unique(ours, axis=0, return_counts=True)[1])
    assert np.array_equal(np.unique(full_rows, axis=0), np.unique(ours, axis=0))


def test_digits_are_read_as_scikit_learn_reads_them_without_importing_it(monkeypatch):
    import sys

    from sklearn.datasets import load_digits

    from awd.data import _digits_arrays

    digits = load_digits()
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)  # an import of it would now raise
    images, labels = _digits_arrays()
    assert images.dtype == digits.images.dtype and np.array_equal(images, digits.images)
    assert labels.dtype == np.int64 and np.array_equal(labels, digits.target)
    assert list(digits.target_names) == list(range(10))
    assert load_dataset("digits", train=False).classes == [str(c) for c in digits.target_names]


def test_digits_deterministic():
    a, b = load_dataset("digits", train=False), load_dataset("digits", train=False)
    assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)


def test_dataset_info_and_names():
    assert DATASET_NAMES == ("digits", "cifar10", "cifar100")
    assert dataset_info("digits") == (10, 1, 8)
    assert dataset_info("cifar10") == (10, 3, 32)
    assert dataset_info("cifar100") == (100, 3, 32)
    with pytest.raises(ValueError, match=r"'mnist'.*digits.*cifar10.*cifar100"):
        dataset_info("mnist")
    with pytest.raises(ValueError, match=r"'mnist'"):
        load_dataset("mnist", "data")


def test_array_dataset_validates():
    with pytest.raises(ValueError, match="uint8"):
        ArrayDataset(torch.zeros(2, 1, 8, 8), torch.zeros(2, dtype=torch.int64), 2, ["a", "b"])
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\)"):
        ArrayDataset(torch.zeros(2, 1, 8, 8, dtype=torch.uint8), torch.tensor([0, 2]), 2, ["a", "b"])


# --- split and noise -----------------------------------------------------------------------------------------------


def _labels(n_per_class=(50, 30, 20, 7), seed=0):
    y = np.concatenate([np.full(n, c) for c, n in enumerate(n_per_class)])
    return np.random.default_rng(seed).permutation(y)


def test_stratified_split_is_stratified_sorted_and_deterministic():
    y = _labels()
    tr, va = stratified_split(y, 0.1, seed=3)
    assert tr.dtype == np.int64 and va.dtype == np.int64
    assert np.all(np.diff(tr) > 0) and np.all(np.diff(va) > 0)
    assert np.array_equal(np.sort(np.concatenate([tr, va])), np.arange(len(y)))
    for c in range(4):
        n_c = (y == c).sum()
        assert abs((y[va] == c).sum() - 0.1 * n_c) < 1
    tr2, va2 = stratified_split(torch.from_numpy(y), 0.1, seed=3)
    assert np.array_equal(va, va2) and np.array_equal(tr, tr2)
    assert not np.array_equal(va, stratified_split(y, 0.1, seed=4)[1])


@pytest.mark.parametrize("seed", [0, 1, 7, 123])
def test_the_stratified_split_is_scikit_learns_draw_for_draw(seed):
    """awd.data splits as StratifiedShuffleSplit does (without importing it): the same indices in the same order, on
    balanced and unbalanced label sets, at the fractions this project uses and odd ones."""
    from sklearn.model_selection import StratifiedShuffleSplit

    from awd.data import _stratified_shuffle_split

    rng = np.random.default_rng(seed)
    label_sets = [np.repeat(np.arange(10), 30), rng.integers(0, 10, 1797), rng.integers(0, 3, 41),
                  np.concatenate([np.zeros(50, int), np.ones(7, int), np.full(3, 2)]), rng.integers(0, 100, 5000)]
    for y in label_sets:
        for fraction in (0.1, 0.2, 0.25, 0.5, 0.37):
            if min(np.ceil(fraction * len(y)), len(y) - np.ceil(fraction * len(y))) < len(np.unique(y)):
                continue  # sklearn refuses these; so do we (below)
            theirs = next(StratifiedShuffleSplit(n_splits=1, test_size=fraction, random_state=seed)
                          .split(np.zeros(len(y)), y))
            ours = _stratified_shuffle_split(y.astype(np.int64), fraction, seed)
            assert all(np.array_equal(a, b) for a, b in zip(ours, theirs)), (len(y), fraction)
    with pytest.raises(ValueError, match="2 examples of every class"):
        _stratified_shuffle_split(np.array([0, 0, 1]), 0.5, seed)
    with pytest.raises(ValueError, match="fewer than the 3 classes"):
        _stratified_shuffle_split(np.repeat(np.arange(3), 4), 0.1, seed)


def test_stratified_split_zero_fraction_and_bad_values():
    tr, va = stratified_split(_labels(), 0.0, seed=0)
    assert len(va) == 0 and len(tr) == 107
    for bad in (-0.1, 1.0, "0.1"):
        with pytest.raises(ValueError, match=r"val_fraction=.*\[0, 1\)"):
            stratified_split(_labels(), bad, seed=0)
    with pytest.raises(ValueError, match="labels must be a 1-d integer"):
        stratified_split(np.zeros((3, 2), dtype=int), 0.1, seed=0)


@pytest.mark.parametrize("rate", [0.0, 0.2, 0.45])
def test_symmetric_noise_flips_exactly_rate(rate):
    y = _labels()
    noisy, flipped = symmetric_noise(y, rate, 4, seed=0)
    assert noisy.dtype == np.int64 and flipped.dtype == bool
    assert flipped.sum() == round(rate * len(y))
    assert np.array_equal(flipped, noisy != y)  # every flip lands on another class
    assert noisy.min() >= 0 and noisy.max() < 4


def test_symmetric_noise_deterministic_and_uniform():
    y = np.repeat(np.arange(10), 2000)
    a, fa = symmetric_noise(y, 0.5, 10, seed=7)
    b, fb = symmetric_noise(torch.from_numpy(y), 0.5, 10, seed=7)
    assert np.array_equal(a, b) and np.array_equal(fa, fb)
    assert not np.array_equal(a, symmetric_noise(y, 0.5, 10, seed=8)[0])
    # Flips are spread over the classes and, from class 0, over the 9 other classes about equally (1000 each/9).
    per_class = np.bincount(y[fa], minlength=10)
    assert per_class.min() > 900 and per_class.max() < 1100
    targets = np.bincount(a[fa & (y == 0)], minlength=10)
    assert targets[0] == 0 and targets[1:].min() > 80 and targets[1:].max() < 150


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(rate=1.0, num_classes=4), r"rate=1.0.*\[0, 1\)"),
        (dict(rate=-0.1, num_classes=4), r"rate=-0.1"),
        (dict(rate=0.1, num_classes=1), r"num_classes=1"),
        (dict(rate=0.1, num_classes=3), r"labels must lie in \[0, 3\)"),
    ],
)
def test_symmetric_noise_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        symmetric_noise(_labels(), seed=0, **kwargs)


# --- augmentation, conversion, batching ----------------------------------------------------------------------------


def _reference(x, dy, dx, flips, pad):
    # One image at a time, the obvious way.
    out = []
    for i in range(len(x)):
        p = torch.nn.functional.pad(x[i], (pad, pad, pad, pad))
        crop = p[:, dy[i] : dy[i] + x.shape[2], dx[i] : dx[i] + x.shape[3]]
        out.append(crop.flip(-1) if flips[i] else crop)
    return torch.stack(out)


def test_augment_matches_per_sample_reference():
    x = torch.rand(16, 3, 10, 12)
    out = augment(x, torch.Generator().manual_seed(5), pad=4)
    dy, dx, flips = draw_augment(16, torch.Generator().manual_seed(5), pad=4)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert torch.equal(out, _reference(x, dy, dx, flips, 4))
    assert 0 < flips.sum() < 16 and len(set(dy.tolist())) > 1  # the draws really vary per sample
    assert dy.min() >= 0 and dy.max() <= 8 and dx.max() <= 8


def test_shift_flip_explicit_offsets():
    x = torch.arange(2 * 1 * 3 * 3, dtype=torch.float32).view(2, 1, 3, 3)
    out = shift_flip(x, torch.tensor([1, 0]), torch.tensor([1, 2]), torch.tensor([False, True]), pad=1)
    assert torch.equal(out[0], x[0])  # centred window, no flip: identity
    # Window shifted one pixel up and one right, then mirrored.
    expected = torch.tensor([[0.0, 0, 0], [0, 11, 10], [0, 14, 13]])
    assert torch.equal(out[1, 0], expected)


def test_augment_seeded_and_identity_cases():
    x = torch.rand(8, 1, 8, 8)
    a = augment(x, torch.Generator().manual_seed(1))
    b = augment(x, torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    assert not torch.equal(a, augment(x, torch.Generator().manual_seed(2)))
    assert torch.equal(augment(x, torch.Generator().manual_seed(1), pad=0, flip=False), x)
    flipped_only = augment(x, torch.Generator().manual_seed(1), pad=0)
    assert all(torch.equal(o, i) or torch.equal(o, i.flip(-1)) for o, i in zip(flipped_only, x))
    cl = augment(x.contiguous(memory_format=torch.channels_last), torch.Generator().manual_seed(1))
    assert torch.equal(cl, a)


def test_augment_bad_input():
    with pytest.raises(ValueError, match="float tensor"):
        augment(torch.zeros(2, 1, 8, 8, dtype=torch.uint8))
    with pytest.raises(ValueError, match="pad=-1"):
        augment(torch.zeros(2, 1, 8, 8), pad=-1)


def test_to_float():
    x = torch.tensor([[[[0, 128, 255]]]], dtype=torch.uint8)
    f = to_float(x)
    assert f.dtype == torch.float32
    torch.testing.assert_close(f, torch.tensor([[[[0.0, 128 / 255, 1.0]]]]))
    with pytest.raises(ValueError, match="uint8"):
        to_float(f)


def test_numpy_integer_arguments_accepted():
    y = _labels()
    assert len(stratified_split(y, np.float64(0.1), np.int64(0))[1]) == 11
    assert symmetric_noise(y, 0.1, np.int64(4), np.int64(0))[1].sum() == 11
