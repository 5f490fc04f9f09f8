"""The training loop on sklearn's 8x8 digits with a narrow `tiny` CNN: learning, every weight-decay method,
adversarial and ASAM runs, bit-exact resume, best-checkpoint selection, divergence detection and config checks."""

import json
import re

import numpy as np
import pytest
import torch

import awd.train as train_mod
from awd.data import load_dataset
from awd.evaluate import accuracy
from awd.train import NonFiniteLossError, TrainConfig, TrainData, load_model, make_train_data, train
from tests.digits_util import digits_train_data
from tests.log_util import awd_log

METRIC_KEYS = {"reported_model", "best_epoch", "epochs_run", "val_acc", "val_robust_acc", "test_acc", "train_acc",
               "train_xent", "weight_norm", "total_loss", "final_lambda", "mean_dog", "seconds", "n_train", "n_test",
               "hardware", "software"}
# natural runs also carry the best-validation checkpoint's numbers, labelled
BEST_VAL_KEYS = {"best_val_val_acc", "best_val_test_acc", "best_val_weight_norm"}


@pytest.fixture(scope="module")
def digits():
    return digits_train_data()


def config(**kw):
    base = dict(dataset="digits", model="tiny", model_kw={"width": 8}, epochs=2, batch_size=64, lr=0.2,
                wd_method="fixed", wd=5e-4, dog=0.0, seed=0)
    base.update(kw)
    return TrainConfig.from_dict(base)


def read_history(out):
    return json.loads((out / "history.json").read_text())


def without_seconds(rows):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]


def assert_identical(a, b, where="state"):
    """Recursive exact equality of checkpoint contents (tensors with torch.equal), ignoring wall-clock times."""
    if isinstance(a, dict):
        assert set(a) == set(b), f"{where}: keys differ"
        for k in a:
            if k != "seconds":
                assert_identical(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), f"{where}: lengths differ"
        for i, (x, y) in enumerate(zip(a, b)):
            assert_identical(x, y, f"{where}[{i}]")
    elif isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and torch.equal(a, b), f"{where}: tensors differ"
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def load(path):
    return torch.load(path, map_location="cpu", weights_only=True)


# --- learning and outputs ---------------------------------------------------------------------------------------


def test_natural_training_learns_digits_and_writes_every_output(digits, tmp_path):
    with awd_log() as lines:
        metrics = train(config(epochs=3), digits, tmp_path, device="cpu")

    assert set(metrics) == METRIC_KEYS | BEST_VAL_KEYS
    history = read_history(tmp_path)
    losses = [h["train_loss"] for h in history]
    assert losses[0] > losses[1] > losses[2]
    assert metrics["test_acc"] > 0.6 and metrics["train_acc"] > 0.6  # chance is 0.1
    assert metrics["val_robust_acc"] is None and all(h["val_robust_acc"] is None for h in history)
    assert metrics["epochs_run"] == 3 and len(lines) == 3 and lines[0].startswith("epoch 1/3")
    assert json.loads((tmp_path / "metrics.json").read_text()) == metrics

    correct = np.load(tmp_path / "train_correct.npy")
    assert correct.dtype == bool and correct.shape == (len(digits.y_train),)
    assert correct.mean() == pytest.approx(metrics["train_acc"])
    pred = np.load(tmp_path / "train_pred.npy")
    assert np.array_equal(pred == digits.y_train.numpy(), correct)
    assert metrics["total_loss"] == pytest.approx(metrics["train_xent"] + 5e-4 / 2 * metrics["weight_norm"] ** 2)

    model = load_model(tmp_path, config(epochs=3), digits.num_classes, digits.in_channels)
    assert not model.training
    assert accuracy(model, digits.x_test, digits.y_test) == pytest.approx(metrics["test_acc"])

    trace = np.load(tmp_path / "dog_trace.npz")
    iters = int(trace["iters_per_epoch"])
    assert iters == -(-len(digits.y_train) // 64)
    assert np.array_equal(trace["iteration"], np.arange(3 * iters))
    assert np.allclose(trace["epoch_loss"], losses)
    assert np.allclose(trace["lam"], 5e-4)


@pytest.mark.parametrize("method", ["none", "fixed", "awd", "adadecay"])
def test_every_weight_decay_method_trains_and_records_lambda(digits, tmp_path, method):
    value = {"none": {}, "fixed": {"wd": 0.01}, "awd": {"wd": 0.0, "dog": 0.05}, "adadecay": {"wd": 0.01}}[method]
    cfg = config(wd_method=method, **value)
    metrics = train(cfg, digits, tmp_path, device="cpu")
    trace = np.load(tmp_path / "dog_trace.npz")
    history = read_history(tmp_path)

    assert metrics["test_acc"] > 0.3
    if method == "none":
        assert np.all(trace["lam"] == 0) and np.all(trace["dog"] == 0) and metrics["final_lambda"] == 0
    elif method in ("fixed", "adadecay"):
        assert np.allclose(trace["lam"], 0.01) and metrics["final_lambda"] == pytest.approx(0.01)
        assert np.all(trace["dog"] > 0)
    else:
        assert np.all(trace["lam"] > 0) and metrics["final_lambda"] > 0
        assert all(h["lambda_mean"] > 0 for h in history)
        # λ adapts every step (it is not a constant) and holds the measured DoG at the target up to the EMA lag
        assert trace["lam"].std() > 0
        assert metrics["mean_dog"] == pytest.approx(0.05, rel=0.1)


def test_weight_decay_shrinks_weights_compared_to_none(digits, tmp_path):
    none = train(config(wd_method="none"), digits, tmp_path / "none", device="cpu")
    fixed = train(config(wd=0.01), digits, tmp_path / "fixed", device="cpu")
    assert fixed["weight_norm"] < none["weight_norm"]


def test_dog_trace_is_downsampled_by_dog_log_every(digits, tmp_path):
    train(config(epochs=1, dog_log_every=3), digits, tmp_path, device="cpu")
    trace = np.load(tmp_path / "dog_trace.npz")
    iters = int(trace["iters_per_epoch"])
    assert int(trace["every"]) == 3
    assert np.array_equal(trace["iteration"], np.arange(0, iters, 3))
    assert trace["epoch_dog"].shape == (1,) and trace["epoch_iters"].tolist() == [iters]


def test_asam_runs_with_awd_for_both_gradient_choices(digits, tmp_path):
    lams = {}
    for grad in ("descent", "ascent"):
        cfg = config(optimizer="asam", asam_awd_grad=grad, wd_method="awd", wd=0.0, dog=0.05)
        metrics = train(cfg, digits, tmp_path / grad, device="cpu")
        lams[grad] = np.load(tmp_path / grad / "dog_trace.npz")["lam"]
        assert metrics["test_acc"] > 0.3 and np.all(lams[grad] > 0)
    # the first λ comes from the same start, with ‖g‖ taken at w (ascent) or at w + e (descent)
    assert lams["descent"][0] != lams["ascent"][0]
    assert not np.allclose(lams["descent"], lams["ascent"])


def test_bf16_and_channels_last_train(digits, tmp_path):
    metrics = train(config(bf16=True, channels_last=True), digits, tmp_path, device="cpu")
    assert np.isfinite(metrics["train_xent"]) and metrics["test_acc"] > 0.3


# --- resume, best checkpoint --------------------------------------------------------------------------------------

RESUMED = {
    "awd_adversarial_sgd": dict(wd_method="awd", wd=0.0, dog=0.03, adversarial=True, eps=0.1, step_size=0.05,
                                train_steps=2, val_steps=2),
    "adadecay_natural_asam": dict(wd_method="adadecay", wd=0.01, optimizer="asam"),
}


@pytest.fixture(scope="module", params=sorted(RESUMED))
def resumed(request, digits, tmp_path_factory):
    """The same 3-epoch run trained straight and interrupted after epochs 1 and 2 (model saved at each stop)."""
    cfg = config(epochs=3, **RESUMED[request.param])
    root = tmp_path_factory.mktemp(request.param)
    straight = train(cfg, digits, root / "straight", device="cpu")
    out, per_epoch = root / "interrupted", {}
    with awd_log() as logs:
        for stop in (1, 2):
            partial = train(cfg, digits, out, device="cpu", checkpoint_every_s=0, stop_after_epoch=stop)
            assert partial == {"epochs_run": stop, "complete": False}
            per_epoch[stop] = load(out / "resume" / "last.pt")["model"]
        metrics = train(cfg, digits, out, device="cpu", checkpoint_every_s=0)
    per_epoch[3] = load(out / "resume" / "last.pt")["model"]
    return {"cfg": cfg, "straight": straight, "metrics": metrics, "root": root, "logs": logs, "per_epoch": per_epoch}


def test_resumed_run_is_identical_to_uninterrupted(resumed):
    a, b = resumed["root"] / "straight", resumed["root"] / "interrupted"
    assert "resumed from epoch 1" in resumed["logs"] and "resumed from epoch 2" in resumed["logs"]
    assert not any(ln.startswith("cannot resume") for ln in resumed["logs"])  # resumed, not restarted
    assert_identical(load(a / "model.pt"), load(b / "model.pt"), "model.pt")
    # optimizer, weight decay, trace, RNG, history
    assert_identical(load(a / "resume" / "last.pt"), load(b / "resume" / "last.pt"), "last.pt")
    assert without_seconds(read_history(a)) == without_seconds(read_history(b))
    ta, tb = np.load(a / "dog_trace.npz"), np.load(b / "dog_trace.npz")
    assert set(ta.files) == set(tb.files) and all(np.array_equal(ta[k], tb[k]) for k in ta.files)
    drop = lambda m: {k: v for k, v in m.items() if k != "seconds"}  # noqa: E731
    assert drop(resumed["straight"]) == drop(resumed["metrics"])
    assert np.array_equal(np.load(a / "train_correct.npy"), np.load(b / "train_correct.npy"))


def test_best_checkpoint_is_the_epoch_with_best_validation_metric(resumed):
    """Adversarial runs report the early-stopped model; natural runs the final one, best-val only as extra fields."""
    out, cfg, metrics = resumed["root"] / "interrupted", resumed["cfg"], resumed["metrics"]
    history = read_history(out)
    key = "val_robust_acc" if cfg.adversarial else "val_acc"
    values = [h[key] for h in history]
    assert metrics["best_epoch"] == int(np.argmax(values)) + 1  # first epoch reaching the maximum
    assert load(out / "resume" / "best.pt")["epoch"] == metrics["best_epoch"]
    if cfg.adversarial:
        assert metrics["reported_model"] == "best_val" and metrics[key] == max(values)
        assert_identical(load(out / "model.pt"), resumed["per_epoch"][metrics["best_epoch"]], "model.pt")
        assert not BEST_VAL_KEYS & set(metrics)
    else:
        assert metrics["reported_model"] == "final" and metrics["val_acc"] == values[-1]
        assert metrics["best_val_val_acc"] == max(values)
        assert_identical(load(out / "model.pt"), resumed["per_epoch"][3], "model.pt")


def test_robust_accuracy_is_recorded_for_adversarial_runs_only(resumed):
    history, m = read_history(resumed["root"] / "straight"), resumed["straight"]
    if resumed["cfg"].adversarial:
        assert all(h["val_robust_acc"] <= h["val_acc"] for h in history)
        assert m["val_robust_acc"] is not None and m["val_robust_acc"] < m["val_acc"]
    else:
        assert m["val_robust_acc"] is None and all(h["val_robust_acc"] is None for h in history)


def test_natural_run_reports_the_final_model_and_labels_the_best_val_one(digits, tmp_path, monkeypatch):
    """Best val at epoch 2 of 3: every reported metric is the final model's; best_val_* are epoch 2's."""
    script = iter([0.5, 0.9, 0.7])
    real = train_mod.accuracy

    def scripted(model, x, y, *args, **kw):
        return next(script) if x is digits.x_val else real(model, x, y, *args, **kw)

    monkeypatch.setattr(train_mod, "accuracy", scripted)
    cfg = config(epochs=3)
    train(cfg, digits, tmp_path, device="cpu", checkpoint_every_s=0, stop_after_epoch=2)
    epoch2 = load(tmp_path / "resume" / "last.pt")["model"]
    metrics = train(cfg, digits, tmp_path, device="cpu")
    final = load(tmp_path / "resume" / "last.pt")["model"]
    assert not all(torch.equal(final[k], epoch2[k]) for k in final)
    assert metrics["best_epoch"] == 2 and metrics["val_acc"] == 0.7 and metrics["best_val_val_acc"] == 0.9
    assert_identical(load(tmp_path / "model.pt"), final, "model.pt")
    assert np.array_equal(np.load(tmp_path / "train_correct.npy"), _predict(cfg, final, digits.x_train) == digits.y_train.numpy())
    m_final, m_best = _model(cfg, final), _model(cfg, epoch2)
    assert metrics["test_acc"] == pytest.approx(real(m_final, digits.x_test, digits.y_test, 512, "cpu"))
    assert metrics["best_val_test_acc"] == pytest.approx(real(m_best, digits.x_test, digits.y_test, 512, "cpu"))
    from awd.evaluate import weight_norm
    assert metrics["weight_norm"] == pytest.approx(weight_norm(m_final))
    assert metrics["best_val_weight_norm"] == pytest.approx(weight_norm(m_best))


def test_adversarial_run_reports_the_best_val_checkpoint(digits, tmp_path, monkeypatch):
    script = iter([0.5, 0.9, 0.7])
    monkeypatch.setattr(train_mod._Run, "robust_accuracy", lambda self, x, y: next(script))
    cfg = config(epochs=3, adversarial=True, eps=0.1, step_size=0.05, train_steps=1, val_steps=1)
    train(cfg, digits, tmp_path, device="cpu", checkpoint_every_s=0, stop_after_epoch=2)
    epoch2 = load(tmp_path / "resume" / "last.pt")["model"]
    metrics = train(cfg, digits, tmp_path, device="cpu")
    assert metrics["reported_model"] == "best_val" and metrics["best_epoch"] == 2 and metrics["val_robust_acc"] == 0.9
    assert_identical(load(tmp_path / "model.pt"), epoch2, "model.pt")


def test_adversarial_early_stopping_validates_after_val_from_fraction_of_the_epochs(digits, tmp_path, monkeypatch):
    """The first floor(val_from_fraction * epochs) epochs are not PGD-validated: no robust accuracy in their history
    rows, and the best checkpoint is chosen among the later epochs."""
    attacked = []
    script = iter([0.6, 0.4])

    def robust(self, x, y):
        attacked.append(self.epoch)
        return next(script)

    monkeypatch.setattr(train_mod._Run, "robust_accuracy", robust)
    cfg = config(epochs=3, adversarial=True, eps=0.1, step_size=0.05, train_steps=1, val_steps=1, val_from_fraction=0.4)
    metrics = train(cfg, digits, tmp_path, device="cpu")
    assert attacked == [2, 3]
    history = json.loads((tmp_path / "history.json").read_text())
    assert [row["val_robust_acc"] for row in history] == [None, 0.6, 0.4]
    assert metrics["best_epoch"] == 2 and metrics["val_robust_acc"] == 0.6
    with pytest.raises(ValueError, match=r"val_from_fraction: must be in \[0, 1\), got 1.0"):
        TrainConfig.from_dict({**cfg.to_dict(), "val_from_fraction": 1.0})


def _model(cfg, state):
    from awd.models import build_model
    m = build_model(cfg.model, 10, 1, **cfg.model_kw)
    m.load_state_dict(state)
    return m.eval()


def _predict(cfg, state, x_u8):
    from awd.data import to_float
    with torch.no_grad():
        return _model(cfg, state)(to_float(x_u8)).argmax(1).numpy()


def test_crash_before_promoting_the_best_checkpoint_is_settled_on_resume(digits, tmp_path):
    cfg = config(epochs=2)
    straight = train(cfg, digits, tmp_path / "straight", device="cpu")
    out = tmp_path / "crashed"
    train(cfg, digits, out, device="cpu", checkpoint_every_s=0, stop_after_epoch=1)
    # crash after last.pt of epoch 1 was written, before best.pt.pending (epoch 1) was renamed to best.pt
    (out / "resume" / "best.pt").rename(out / "resume" / "best.pt.pending")
    train(cfg, digits, out, device="cpu", stop_after_epoch=1)  # resume settles, then stops at once
    assert not (out / "resume" / "best.pt.pending").exists() and load(out / "resume" / "best.pt")["epoch"] == 1
    metrics = train(cfg, digits, out, device="cpu")
    assert metrics["best_epoch"] == straight["best_epoch"] and metrics["test_acc"] == straight["test_acc"]
    assert_identical(load(out / "model.pt"), load(tmp_path / "straight" / "model.pt"), "model.pt")


def test_stale_pending_best_from_a_redone_epoch_is_dropped(digits, tmp_path):
    cfg = config(epochs=2)
    straight = train(cfg, digits, tmp_path / "straight", device="cpu")
    out = tmp_path / "crashed"
    train(cfg, digits, out, device="cpu", checkpoint_every_s=0, stop_after_epoch=1)
    # crash during epoch 2's checkpointing: its pending best exists but last.pt still says epoch 1
    junk = {k: torch.zeros_like(v) for k, v in load(out / "resume" / "best.pt")["model"].items()}
    torch.save({"epoch": 2, "val_acc": 1.0, "val_robust_acc": None, "model": junk}, out / "resume" / "best.pt.pending")
    train(cfg, digits, out, device="cpu", stop_after_epoch=1)  # resume settles, then stops at once
    assert not (out / "resume" / "best.pt.pending").exists()
    best = load(out / "resume" / "best.pt")
    assert best["epoch"] == 1 and any(v.any() for v in best["model"].values())
    metrics = train(cfg, digits, out, device="cpu")
    assert metrics["val_acc"] == straight["val_acc"] and metrics["best_epoch"] == straight["best_epoch"]
    assert_identical(load(out / "model.pt"), load(tmp_path / "straight" / "model.pt"), "model.pt")


def test_checkpoints_load_with_weights_only(digits, tmp_path):
    train(config(epochs=1, adversarial=True, train_steps=1, val_steps=1), digits, tmp_path, device="cpu")
    last = torch.load(tmp_path / "resume" / "last.pt", weights_only=True)
    assert {"model", "optimizer", "weight_decay", "scheduler", "trace", "history", "best", "rng", "epoch"} <= set(last)
    assert isinstance(last["rng"]["torch_cpu"], torch.Tensor)
    assert torch.load(tmp_path / "resume" / "best.pt", weights_only=True)["epoch"] == 1
    assert all(isinstance(v, torch.Tensor) for v in torch.load(tmp_path / "model.pt", weights_only=True).values())


def test_resume_refuses_a_different_config(digits, tmp_path):
    train(config(epochs=2), digits, tmp_path, device="cpu", checkpoint_every_s=0, stop_after_epoch=1)
    with pytest.raises(ValueError, match=r"different config.*'lr': \(0\.1, 0\.2\)"):
        train(config(epochs=2, lr=0.1), digits, tmp_path, device="cpu")


def test_finished_run_resumes_to_the_same_metrics(digits, tmp_path):
    first = train(config(epochs=1), digits, tmp_path, device="cpu")
    with awd_log() as lines:
        again = train(config(epochs=1), digits, tmp_path, device="cpu")
    assert lines == ["resumed from epoch 1"]
    assert {k: v for k, v in first.items() if k != "seconds"} == {k: v for k, v in again.items() if k != "seconds"}


# --- divergence ---------------------------------------------------------------------------------------------------


def test_huge_learning_rate_is_recorded_as_diverged(digits, tmp_path):
    with awd_log() as lines:
        metrics = train(config(lr=1e6), digits, tmp_path, device="cpu")
    assert metrics["diverged"] is True and metrics["diverged_epoch"] == 1 and metrics["epochs_run"] == 0
    assert metrics["last_finite"] is None and metrics["diverged_lambda"] == pytest.approx(5e-4)
    assert re.match(r"diverged: training loss became non-finite .* epoch 1 \(last lr=", lines[-1]), lines
    assert json.loads((tmp_path / "metrics.json").read_text())["diverged"] is True
    assert not (tmp_path / "model.pt").exists()  # nothing downstream may evaluate it


def test_divergence_after_finite_epochs_keeps_their_metrics(digits, tmp_path, monkeypatch):
    real = train_mod._Run.train_epoch

    def second_epoch_diverges(self):
        row = real(self)
        if self.epoch == 2:
            self.history.pop()
            raise NonFiniteLossError(self.epoch, row["lr"], row["lambda_mean"], float("nan"))
        return row

    monkeypatch.setattr(train_mod._Run, "train_epoch", second_epoch_diverges)
    metrics = train(config(epochs=3), digits, tmp_path, device="cpu")
    assert metrics["diverged_epoch"] == 2 and metrics["epochs_run"] == 1
    assert metrics["last_finite"]["epoch"] == 1 and 0 <= metrics["last_finite"]["val_acc"] <= 1


# --- config and data ----------------------------------------------------------------------------------------------


def test_from_dict_rejects_unknown_keys():
    with pytest.raises(ValueError, match=r"learning_rate: unknown key 'learning_rate'.*; allowed: dataset, "):
        TrainConfig.from_dict({"learning_rate": 0.1})


@pytest.mark.parametrize("key, value, message", [
    ("lr", -1.0, r"lr: must be > 0, got -1.0"),
    ("wd_method", "l1", r"wd_method: must be one of none, fixed, awd, adadecay or a plugin.*, got 'l1'"),
    ("optimizer", "adam", r"optimizer: unknown optimizer 'adam'.*; allowed: sgd, asam"),
    ("epochs", 0, r"epochs: must be >= 1, got 0"),
    ("seed", True, r"seed: must be an integer \(>= 0\), got true"),
    ("batch_size", 64.0, r"batch_size: must be an integer \(>= 1\), got 64.0"),
    ("nesterov", "yes", r"nesterov: must be true or false, got 'yes'"),
    ("val_fraction", 1.0, r"val_fraction: must be in \(0, 1\), got 1.0"),
    ("model_kw", [1], r"model_kw: must be a mapping of keyword arguments, got \[1\]"),
    ("lr", "0.1", r"lr: must be a number \(> 0\), got '0.1'"),
])
def test_from_dict_rejects_bad_values(key, value, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig.from_dict({key: value})


def test_from_dict_cross_field_checks_and_round_trip():
    with pytest.raises(ValueError, match=r"dog: must be > 0, got 0.0 \(DoG of method awd\)"):
        TrainConfig.from_dict({"wd_method": "awd", "dog": 0.0})
    with pytest.raises(ValueError, match=r"wd: must be > 0, got 0.0 \(λ of method fixed; use method none"):
        TrainConfig.from_dict({"wd_method": "fixed", "wd": 0.0})
    cfg = TrainConfig.from_dict({"lr": 1, "wd_method": "awd", "dog": 0.016})
    assert isinstance(cfg.lr, float) and cfg.lr == 1.0
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg


def test_make_train_data_uses_given_labels_and_holds_out_validation():
    train_set, test_set = load_dataset("digits"), load_dataset("digits", train=False)
    noisy = (train_set.y + 1) % 10
    flipped = np.ones(len(noisy), dtype=bool)
    data = make_train_data(train_set, test_set, np.arange(0, 100), np.arange(100, 120), labels=noisy, flipped=flipped)
    assert torch.equal(data.y_train, noisy[:100]) and torch.equal(data.y_val, noisy[100:120])
    assert torch.equal(data.x_val, train_set.x[100:120]) and data.flipped.shape == (100,)
    assert data.in_channels == 1 and data.num_classes == 10
    with pytest.raises(ValueError, match="overlap"):
        make_train_data(train_set, test_set, np.arange(0, 100), np.arange(90, 120))
    with pytest.raises(ValueError, match=r"TrainData.x_train must be a uint8 tensor"):
        TrainData(data.x_train.float(), data.y_train, data.x_val, data.y_val, data.x_test, data.y_test, 10)


def test_augmentation_follows_the_dataset():
    from awd.data import augmentation

    assert augmentation("cifar10") == (4, True) and augmentation("digits") == (1, False)
