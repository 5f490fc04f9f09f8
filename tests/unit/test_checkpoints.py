"""Resume checkpoints on a time interval: what a crash or an interruption leaves in `resume/`, and that resuming
from it still ends bit-identical to an uninterrupted run; the layout of a finished run."""

import itertools
import json
import types

import pytest
import torch

import awd.checkpoint
import awd.train as train_mod
from awd.train import TrainConfig, load_model, train
from tests.digits_util import digits_train_data
from tests.log_util import awd_log

EPOCHS = 5


@pytest.fixture(scope="module")
def digits():
    return digits_train_data()


def config(**kw):
    base = dict(dataset="digits", model="tiny", model_kw={"width": 4}, epochs=EPOCHS, batch_size=64, lr=0.2,
                wd_method="awd", wd=0.0, dog=0.05, seed=0)
    return TrainConfig.from_dict(dict(base, **kw))


def load(path):
    return torch.load(path, map_location="cpu", weights_only=True)


def same_tensors(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def no_seconds(d: dict) -> dict:
    return {k: v for k, v in d.items() if k != "seconds"}


@pytest.fixture(scope="module")
def straight(digits, tmp_path_factory):
    out = tmp_path_factory.mktemp("straight")
    return out, train(config(), digits, out, device="cpu")


def assert_same_as_straight(out, metrics, straight):
    ref, ref_metrics = straight
    assert no_seconds(metrics) == no_seconds(ref_metrics)
    assert same_tensors(load(out / "model.pt"), load(ref / "model.pt"))
    assert same_tensors(load(out / "resume" / "last.pt")["optimizer"]["state"][0],
                        load(ref / "resume" / "last.pt")["optimizer"]["state"][0])
    rows = lambda p: [no_seconds(r) for r in json.loads((p / "history.json").read_text())]  # noqa: E731
    assert rows(out) == rows(ref)


def test_long_interval_crash_resumes_from_the_last_written_checkpoint(digits, tmp_path, monkeypatch, straight):
    """A clock that advances 100 s per reading and a 250 s interval: last.pt is written at the end of epoch 3
    only; a crash after epoch 4 resumes from epoch 3 and redoes epoch 4, to the same result."""
    ticks = itertools.count(0, 100)
    monkeypatch.setattr(awd.checkpoint, "time", types.SimpleNamespace(monotonic=lambda: float(next(ticks))))
    out = tmp_path / "run"
    assert train(config(), digits, out, device="cpu", checkpoint_every_s=250, stop_after_epoch=4) == \
        {"epochs_run": 4, "complete": False}
    assert load(out / "resume" / "last.pt")["epoch"] == 3
    assert len(json.loads((out / "history.json").read_text())) == 4  # progress is shown every epoch
    best = load(out / "resume" / "best.pt")["epoch"]
    assert best == load(out / "resume" / "last.pt")["best"]["epoch"] <= 3  # never ahead of last.pt

    with awd_log() as lines:
        metrics = train(config(), digits, out, device="cpu", checkpoint_every_s=250)
    assert lines[0] == "resumed from epoch 3" and lines[1].startswith(f"epoch 4/{EPOCHS}")
    assert load(out / "resume" / "last.pt")["epoch"] == EPOCHS  # and at the end, whatever the interval
    assert_same_as_straight(out, metrics, straight)


def test_crash_before_the_first_interval_restarts_from_scratch(digits, tmp_path, straight):
    out = tmp_path / "run"
    train(config(), digits, out, device="cpu", stop_after_epoch=2)  # the default interval, 600 s
    assert not (out / "resume" / "last.pt").exists() and not (out / "resume" / "best.pt").exists()
    with awd_log() as lines:
        metrics = train(config(), digits, out, device="cpu")
    assert not any(ln.startswith("resumed") for ln in lines) and lines[0].startswith(f"epoch 1/{EPOCHS}")
    assert_same_as_straight(out, metrics, straight)


def test_interruption_writes_the_last_epoch_end_and_the_rerun_resumes_from_it(digits, tmp_path, monkeypatch,
                                                                             straight):
    """SystemExit in the middle of epoch 3 (what submitit's handler of the time-limit signal raises after it
    requeued the job) writes the state of the end of epoch 2 on its way out, though no interval had passed."""
    real_step, steps = train_mod._Run.step, []

    def step(self, idx):
        if self.epoch == 2:
            steps.append(1)
            if len(steps) == 3:
                raise SystemExit(-1)
        return real_step(self, idx)

    out = tmp_path / "run"
    with monkeypatch.context() as m, awd_log() as lines:
        m.setattr(train_mod._Run, "step", step)
        with pytest.raises(SystemExit):
            train(config(), digits, out, device="cpu", checkpoint_every_s=3600)
    assert any("interrupted (SystemExit): writing the checkpoint of epoch 2" in ln for ln in lines), lines
    last = load(out / "resume" / "last.pt")
    assert last["epoch"] == 2 and load(out / "resume" / "best.pt")["epoch"] == last["best"]["epoch"]
    assert not (out / "model.pt").exists()

    with awd_log() as lines:
        metrics = train(config(), digits, out, device="cpu", checkpoint_every_s=3600)
    assert lines[0] == "resumed from epoch 2"
    assert_same_as_straight(out, metrics, straight)


def test_finished_run_needs_nothing_under_resume(digits, tmp_path, straight):
    ref, metrics = straight
    top = {p.name for p in ref.iterdir()}
    assert top == {"model.pt", "metrics.json", "history.json", "dog_trace.npz", "train_correct.npy",
                   "train_pred.npy", "resume"}
    assert {p.name for p in (ref / "resume").iterdir()} == {"last.pt", "best.pt"}
    done = tmp_path / "done"
    done.mkdir()
    for p in ref.iterdir():
        if p.is_file():
            (done / p.name).write_bytes(p.read_bytes())
    model = load_model(done, config(), digits.num_classes, digits.in_channels)  # what evaluation stages read
    assert same_tensors(model.state_dict(), load(ref / "model.pt"))


def test_bad_interval_is_refused_with_what_is_allowed(digits, tmp_path, monkeypatch):
    with pytest.raises(ValueError, match=r"checkpoint_every_s must be a finite number of seconds >= 0 .*got -1"):
        train(config(), digits, tmp_path, device="cpu", checkpoint_every_s=-1)
    from pipeline.units.train import checkpoint_every_s

    monkeypatch.delenv("AWD_CHECKPOINT_EVERY_S", raising=False)
    assert checkpoint_every_s(600.0) == 600.0
    monkeypatch.setenv("AWD_CHECKPOINT_EVERY_S", "0")
    assert checkpoint_every_s(600.0) == 0.0
    monkeypatch.setenv("AWD_CHECKPOINT_EVERY_S", "10min")
    with pytest.raises(ValueError, match=r"AWD_CHECKPOINT_EVERY_S='10min': allowed a number of seconds >= 0"):
        checkpoint_every_s(600.0)


def test_requeue_hook_writes_the_last_epoch_end_before_the_job_exits(digits, tmp_path, monkeypatch, straight):
    """What submitit does on the time-limit signal, in order: UnitBatch.checkpoint() (which calls the unit module's
    on_requeue()), requeue, SystemExit. Here the signal comes in the middle of epoch 3 with no interval due."""
    from jobs import Unit
    from jobs.job import UnitBatch

    unit = Unit("train", "0" * 64, "pipeline.units.train:train_unit", {})
    real_step, steps = train_mod._Run.step, []

    def step(self, idx):
        if self.epoch == 2:
            steps.append(1)
            if len(steps) == 3:
                UnitBatch(str(tmp_path / "store"), [unit]).checkpoint()  # the signal handler, mid-step
                assert load(out / "resume" / "last.pt")["epoch"] == 2  # on disk before the requeue
                raise SystemExit(-1)
        return real_step(self, idx)

    out = tmp_path / "run"
    with monkeypatch.context() as m, awd_log() as lines:
        m.setattr(train_mod._Run, "step", step)
        with pytest.raises(SystemExit):
            train(config(), digits, out, device="cpu", checkpoint_every_s=3600)
    assert [ln for ln in lines if "writing the checkpoint" in ln] == \
        ["a checkpoint was requested: writing the checkpoint of epoch 2"]  # and not again on the way out

    assert awd.checkpoint.checkpoint_now() == 0  # no run is training any more
    with awd_log() as lines:
        metrics = train(config(), digits, out, device="cpu", checkpoint_every_s=3600)
    assert lines[0] == "resumed from epoch 2"
    assert_same_as_straight(out, metrics, straight)
