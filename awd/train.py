"""One training loop for every run of the benchmark: natural or PGD adversarial training, with any weight-decay
method (none | fixed | awd | adadecay) under SGD or ASAM.

Per iteration: batch from a seeded permutation → on-device crop + flip → (PGD) → ``DecayedOptimizer.step(closure)``
(forward/backward, ASAM's second pass at w + e, ``lam = wd.apply_()``, optimizer step) → DoG trace → cosine LR step.
Nothing in the iteration reads a value back to the host; losses, counts, λ and DoG stay on device until the end of
the epoch.

Augmentation: random crop with zero padding ``pad = max(1, H // 8)`` (4 px for 32×32 CIFAR as in the paper,
1 px for 8×8 digits, where 4 px would shift half the digit out) and a random horizontal flip.

Batches: every epoch is a fresh permutation cut into ``ceil(N / batch_size)`` nearly equal batches (all of size
≤ batch_size), so no epoch ends in a tiny batch that BatchNorm cannot normalise.

Validation labels come from the same label array as the training labels (noisy in the label-noise suite): early
stopping uses only what a practitioner would have.

Resume: ``resume/last.pt`` holds model, optimizer, weight decay, scheduler, DoG trace, history, best-so-far and
every RNG state, so resuming from any epoch end gives bit-identical weights on CPU with ``deterministic=True``. It is
written every ``checkpoint_every_s`` seconds (at an epoch end), at the end, and when the run is interrupted
(SystemExit, KeyboardInterrupt) or told to (``awd.checkpoint.checkpoint_now``: a job about to be requeued); the
protocol (sealed files, the best checkpoint, unusable state set aside) is ``awd.checkpoint.Checkpointer``. Everything under ``resume/`` is needed only to resume: the reported outputs are
``model.pt``, ``metrics.json``, ``history.json``, ``dog_trace.npz`` and the training predictions at the top level.
"""

from __future__ import annotations

import logging
import math
import os
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from awd.attacks import pgd
from awd.checkpoint import (
    Checkpointer,
    load_checkpoint,
    restore_rng_states,
    rng_states,
    save_checkpoint,
    save_npy,
    save_npz,
    write_json,
)
from awd.data import augment, augmentation, to_float
from awd.dog import DoGTrace
from awd.evaluate import accuracy, cross_entropy, total_loss, weight_norm
from awd.models import build_model
from awd.optim import ASAM, DecayedOptimizer, build_optimizer
from awd.train_config import TrainConfig, first_validated_epoch
from awd.train_data import TrainData, make_train_data
from awd.weight_decay import build_weight_decay

__all__ = ["NonFiniteLossError", "TrainConfig", "TrainData", "load_model", "make_train_data", "train"]

log = logging.getLogger(__name__)

MODEL = "model.pt"
CHECKPOINT_FORMAT = 2  # 2: last.pt / best.pt are sealed (awd.checkpoint integrity=True)
CHECKPOINT_EVERY_S = 600.0  # how often resume/last.pt is written (and at the end); changes nothing computed
TABLE2_WD = 5e-4  # the paper's Table 2 reports eq. 1 with this λ for every method
EVAL_BATCH = 512


class NonFiniteLossError(FloatingPointError):
    """Training diverged; carries where it happened so a caller can record the run as diverged."""

    def __init__(self, epoch: int, lr: float, lam: float, loss: float):
        self.epoch, self.lr, self.lam, self.loss = epoch, lr, lam, loss
        super().__init__(
            f"training loss became non-finite ({loss}) in epoch {epoch} (last lr={lr:.6g}, mean λ={lam:.6g}); "
            "lower the learning rate or the weight decay"
        )


def train(cfg: TrainConfig | dict, data: TrainData, out_dir, *, device=None,
          checkpoint_every_s: float = CHECKPOINT_EVERY_S, stop_after_epoch: int | None = None) -> dict:
    """Train (or resume) the run ``cfg`` on ``data``, writing into ``out_dir``; returns the metrics dict of
    docs/design.md. ``resume/last.pt`` is written when ``checkpoint_every_s`` seconds have passed since the last
    one (0: every epoch). With ``stop_after_epoch=k`` it stops once k epochs are done, without writing a checkpoint,
    and returns ``{"epochs_run": k, "complete": False}`` (a simulated crash)."""
    cfg = cfg if isinstance(cfg, TrainConfig) else TrainConfig.from_dict(cfg)
    if not isinstance(data, TrainData):
        raise TypeError(f"data must be a TrainData (see make_train_data), got {type(data).__name__}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    dev = _pick_device(device)
    checkpoints = Checkpointer(out, every_s=checkpoint_every_s, fmt=CHECKPOINT_FORMAT)
    with _determinism(cfg.deterministic, dev):
        state = checkpoints.resume(cfg.to_dict(), map_location=dev)
        run = _Run(cfg, data, dev)
        if state is not None:
            run.load_state(state)
            log.info("resumed from epoch %d", run.epoch)
        with checkpoints.active():
            while run.epoch < cfg.epochs:
                if stop_after_epoch is not None and run.epoch >= stop_after_epoch:
                    return {"epochs_run": run.epoch, "complete": False}
                try:
                    row = run.train_epoch()
                except NonFiniteLossError as err:
                    return _diverged(run, out, err)
                best = run.best_record(row)  # before run.state(), which records the best epoch
                checkpoints.epoch_end(run.state(), best=best, final=run.epoch == cfg.epochs)
                write_json(out / "history.json", run.history)
                log.info(_epoch_line(row, cfg.epochs))
        # every run has a best epoch: the first one beats the starting metric of -1 (_Run.best_record)
        assert checkpoints.best is not None
        return _finish(run, out, checkpoints.best)


class _Run:
    """The mutable state of one training run and the operations on it."""

    def __init__(self, cfg: TrainConfig, data: TrainData, device: torch.device):
        self.cfg, self.data, self.device = cfg, data, device
        torch.manual_seed(cfg.seed)  # model initialisation
        model = build_model(cfg.model, data.num_classes, data.in_channels, **cfg.model_kw).to(device)
        self.memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
        self.model = model.to(memory_format=self.memory_format)
        self.optimizer = build_optimizer("sgd", self.model.parameters(), cfg.lr, cfg.momentum, cfg.nesterov)
        asam = ASAM(self.optimizer, self.model, cfg.asam_rho, cfg.asam_eta) if cfg.optimizer == "asam" else None
        self.wd = build_weight_decay(cfg.wd_method, self.model, wd=cfg.wd, dog=cfg.dog, alpha=cfg.adadecay_alpha,
                                     ema=cfg.awd_ema, exclude_bn_bias=cfg.exclude_bn_bias, optimizer=self.optimizer)
        self.stepper = DecayedOptimizer(self.optimizer, self.wd, asam, cfg.asam_awd_grad)
        self.n_train = len(data.y_train)
        self.iters_per_epoch = math.ceil(self.n_train / cfg.batch_size)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, _cosine(cfg.epochs * self.iters_per_epoch))
        self.trace = DoGTrace(every=cfg.dog_log_every)
        self.index_gen = torch.Generator().manual_seed(cfg.seed)
        self.aug_gen = torch.Generator(device=device).manual_seed(cfg.seed + 1)  # crops, flips, PGD starts
        self.pad, self.flip = augmentation(cfg.dataset)
        self.x_train = data.x_train.to(device)
        self.y_train = data.y_train.to(device)
        self.epoch = 0
        self.history: list[dict] = []
        self.best = {"epoch": 0, "metric": -1.0}

    def train_epoch(self) -> dict:
        start = time.perf_counter()
        self.model.train()
        order = torch.randperm(self.n_train, generator=self.index_gen).to(self.device)
        dev = self.device
        loss_sum, correct = torch.zeros((), device=dev), torch.zeros((), dtype=torch.int64, device=dev)
        lam_sum, dog_sum = torch.zeros((), device=dev), torch.zeros((), device=dev)
        for idx in order.tensor_split(self.iters_per_epoch):
            lr = self.optimizer.param_groups[0]["lr"]
            loss, n_correct, lam, dog = self.step(idx)
            loss_sum += loss * len(idx)
            correct += n_correct
            lam_sum += lam
            dog_sum += dog
        self.trace.end_epoch()
        self.epoch += 1
        train_loss, lam_mean = loss_sum.item() / self.n_train, lam_sum.item() / self.iters_per_epoch
        if not math.isfinite(train_loss):
            raise NonFiniteLossError(self.epoch, lr, lam_mean, train_loss)
        val_acc = accuracy(self.model, self.data.x_val, self.data.y_val, EVAL_BATCH, dev)
        validated = self.cfg.adversarial and self.epoch >= first_validated_epoch(self.cfg.epochs,
                                                                            self.cfg.val_from_fraction)
        robust = self.robust_accuracy(self.data.x_val, self.data.y_val) if validated else None
        row = {
            "epoch": self.epoch, "train_loss": train_loss, "train_acc": correct.item() / self.n_train,
            "val_acc": val_acc, "val_robust_acc": robust, "lambda_mean": lam_mean,
            "dog_mean": dog_sum.item() / self.iters_per_epoch, "weight_norm": weight_norm(self.model), "lr": lr,
            "seconds": time.perf_counter() - start,
        }
        self.history.append(row)
        return row

    def step(self, idx: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """One iteration; returns (loss, #correct, λ, DoG) as device tensors."""
        cfg = self.cfg
        x = to_float(self.x_train[idx])
        if cfg.augment:
            x = augment(x, self.aug_gen, pad=self.pad, flip=self.flip)
        x = x.contiguous(memory_format=self.memory_format)
        y = self.y_train[idx]
        if cfg.adversarial:
            with self.autocast():
                x = pgd(self.model, x, y, eps=cfg.eps, step_size=cfg.step_size, steps=cfg.train_steps,
                        random_start=True, bn_mode=cfg.bn_mode, generator=self.aug_gen)

        def closure():
            loss, logits = self._loss(x, y)
            loss.backward()
            return loss, logits

        (loss, logits), lam = self.stepper.step(closure)
        dog = self.wd.dog()
        self.trace.record(lam, dog)
        self.scheduler.step()
        correct = (logits.detach().argmax(1) == y).sum()
        return loss.detach(), correct, lam, dog

    def _loss(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        with self.autocast():
            logits = self.model(x)
            return F.cross_entropy(logits.float(), y), logits

    def autocast(self):
        if not self.cfg.bf16:
            return nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)

    def robust_accuracy(self, x_u8: Tensor, y: Tensor) -> float:
        """PGD-val_steps accuracy with BatchNorm in eval mode and a fixed generator (the same attack every epoch)."""
        cfg, correct = self.cfg, 0
        gen = torch.Generator(device=self.device).manual_seed(cfg.seed + 2)
        was_training = self.model.training
        self.model.eval()
        for start in range(0, len(y), EVAL_BATCH):
            xb = to_float(x_u8[start : start + EVAL_BATCH].to(self.device)).contiguous(memory_format=self.memory_format)
            yb = y[start : start + EVAL_BATCH].to(self.device)
            x_adv = pgd(self.model, xb, yb, eps=cfg.eps, step_size=cfg.step_size, steps=cfg.val_steps,
                        random_start=True, bn_mode="eval", generator=gen)
            with torch.no_grad():
                correct += int((self.model(x_adv).argmax(1) == yb).sum())
        self.model.train(was_training)
        return correct / len(y)

    def best_record(self, row: dict) -> dict | None:
        """The best-checkpoint record of the epoch just trained if it beats the best so far (which it updates)."""
        metric = row["val_robust_acc"] if self.cfg.adversarial else row["val_acc"]
        if metric is None or metric <= self.best["metric"]:  # an adversarial epoch not PGD-validated
            return None
        self.best = {"epoch": self.epoch, "metric": metric}
        return {"epoch": self.epoch, "val_acc": row["val_acc"], "val_robust_acc": row["val_robust_acc"],
                "model": self.model.state_dict()}

    def state(self) -> dict:
        return {
            "format": CHECKPOINT_FORMAT, "config": self.cfg.to_dict(), "epoch": self.epoch,
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "weight_decay": self.wd.state_dict(), "scheduler": self.scheduler.state_dict(),
            "trace": self.trace.state_dict(), "history": self.history, "best": dict(self.best),
            "rng": rng_states(self._generators()),
        }

    def load_state(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.wd.load_state_dict(state["weight_decay"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.trace.load_state_dict(state["trace"])
        self.history, self.best, self.epoch = list(state["history"]), dict(state["best"]), int(state["epoch"])
        rng = state["rng"]
        rng["torch_cpu"] = rng["torch_cpu"].cpu()
        rng["generators"] = {k: v.cpu() for k, v in rng["generators"].items()}
        if "cuda" in rng:
            rng["cuda"] = [s.cpu() for s in rng["cuda"]]
        restore_rng_states(rng, self._generators())

    def _generators(self) -> dict:
        return {"index": self.index_gen, "augment": self.aug_gen}


def _epoch_line(row: dict, epochs: int) -> str:
    robust = "" if row["val_robust_acc"] is None else f" val_robust {row['val_robust_acc']:.4f}"
    return (f"epoch {row['epoch']}/{epochs} loss {row['train_loss']:.4f} acc {row['train_acc']:.4f} "
            f"val {row['val_acc']:.4f}{robust} λ̄ {row['lambda_mean']:.3g} DoG {row['dog_mean']:.3g} "
            f"‖W‖ {row['weight_norm']:.3f} lr {row['lr']:.4g} {row['seconds']:.1f}s")


def _diverged(run: _Run, out: Path, err: NonFiniteLossError) -> dict:
    """Divergence is a result, not a failure: it is deterministic, so the run is recorded (and never retried) with
    the epoch it happened in and the metrics of its last finite epoch (None when the first epoch diverged)."""
    last = run.history[-1] if run.history else None
    metrics = {
        "diverged": True, "diverged_epoch": int(err.epoch), "epochs_run": int(err.epoch) - 1,
        "diverged_lr": float(err.lr), "diverged_lambda": float(err.lam), "diverged_loss": str(err.loss),
        "last_finite": last, "seconds": float(sum(h["seconds"] for h in run.history)),
    }
    write_json(out / "history.json", run.history)
    write_json(out / "metrics.json", metrics)
    log.info("diverged: %s", err)
    return metrics


def _finish(run: _Run, out: Path, best: dict) -> dict:
    """Metrics of the reported model. Adversarial runs report the best-validation checkpoint (the paper's early
    stopping on PGD-20, A.1); natural runs report the end-of-training model (Table 2's X-ent "at the end of
    training", Table 5's fitted examples, Figs. 4/8's memorised noise), and the best-validation checkpoint only as
    the extra ``best_val_*`` fields."""
    start = time.perf_counter()
    cfg, data, dev, model = run.cfg, run.data, run.device, run.model
    trace = run.trace.flush()
    losses = np.asarray([h["train_loss"] for h in run.history], dtype=np.float64)
    save_npz(out / "dog_trace.npz", **trace, epoch_loss=losses, iters_per_epoch=np.int64(run.iters_per_epoch),
             every=np.int64(cfg.dog_log_every))
    write_json(out / "history.json", run.history)  # again: a crash may have come between last.pt and this file
    last_row = run.history[-1]
    if cfg.adversarial:
        model.load_state_dict(best["model"])
        reported = {"val_acc": best["val_acc"], "val_robust_acc": best["val_robust_acc"]}
    else:
        reported = {"val_acc": last_row["val_acc"], "val_robust_acc": None}
    model.eval()
    save_checkpoint({k: v.detach().cpu() for k, v in model.state_dict().items()}, out / MODEL)
    pred = _predictions(model, data.x_train, dev)
    correct = pred == data.y_train
    save_npy(out / "train_correct.npy", correct.numpy())
    save_npy(out / "train_pred.npy", pred.numpy())
    metrics = {
        "reported_model": "best_val" if cfg.adversarial else "final",
        "best_epoch": int(best["epoch"]),
        "epochs_run": int(run.epoch),
        "val_acc": float(reported["val_acc"]),
        "val_robust_acc": None if reported["val_robust_acc"] is None else float(reported["val_robust_acc"]),
        "test_acc": float(accuracy(model, data.x_test, data.y_test, EVAL_BATCH, dev)),
        "train_acc": float(correct.double().mean().item()),
        "train_xent": float(cross_entropy(model, data.x_train, data.y_train, EVAL_BATCH, dev)),
        "weight_norm": float(weight_norm(model)),
        "total_loss": float(total_loss(model, data.x_train, data.y_train, TABLE2_WD, EVAL_BATCH, dev)),
        "final_lambda": float(run.wd.state_dict()["lam"]),  # λ of the last update
        "mean_dog": float(np.mean([h["dog_mean"] for h in run.history])),
        "n_train": int(len(data.y_train)),
        "n_test": int(len(data.y_test)),
        **environment(dev),
    }
    if not cfg.adversarial:  # the early-stopped alternative, labelled, never the reported numbers
        model.load_state_dict(best["model"])
        model.eval()
        metrics.update(best_val_val_acc=float(best["val_acc"]),
                       best_val_test_acc=float(accuracy(model, data.x_test, data.y_test, EVAL_BATCH, dev)),
                       best_val_weight_norm=float(weight_norm(model)))
    metrics["seconds"] = float(sum(h["seconds"] for h in run.history) + time.perf_counter() - start)
    write_json(out / "metrics.json", metrics)
    return metrics


def environment(device: torch.device) -> dict:
    """Where the run ran, for the report (results differ across CPU vendors and GPU models)."""
    import platform

    if device.type == "cuda":
        hardware = torch.cuda.get_device_name(device)
    else:
        hardware = platform.machine()  # not platform.processor(): it runs `uname -p` in a subprocess
        try:
            with open("/proc/cpuinfo") as f:
                hardware = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), hardware)
        except OSError:
            pass
    return {"hardware": f"{hardware} ({device.type}, {torch.get_num_threads()} threads)",
            "software": f"python {platform.python_version()}, torch {torch.__version__}, {platform.system()}"}


@torch.no_grad()
def _predictions(model, x_u8: Tensor, device) -> Tensor:
    return torch.cat([model(to_float(x_u8[i : i + EVAL_BATCH].to(device))).argmax(1).cpu()
                      for i in range(0, len(x_u8), EVAL_BATCH)])


def load_model(out_dir, cfg: TrainConfig | dict, num_classes: int, in_channels: int) -> torch.nn.Module:
    """The reported model of a finished run (``out_dir/model.pt``: final for natural runs, best-validation for
    adversarial ones), on CPU, in eval mode."""
    cfg = cfg if isinstance(cfg, TrainConfig) else TrainConfig.from_dict(cfg)
    path = Path(out_dir) / MODEL
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: the training run has not finished")
    model = build_model(cfg.model, num_classes, in_channels, **cfg.model_kw)
    model.load_state_dict(load_checkpoint(path))
    return model.eval()


def _pick_device(device) -> torch.device:
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@contextmanager
def _determinism(enabled: bool, device: torch.device):
    saved = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
             torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic)
    if enabled and device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    # On CUDA some kernels (e.g. adaptive_avg_pool2d's backward) have no deterministic version: warn, don't fail.
    torch.use_deterministic_algorithms(enabled, warn_only=device.type != "cpu")
    torch.backends.cudnn.benchmark = not enabled
    torch.backends.cudnn.deterministic = enabled
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = saved[2], saved[3]


def _cosine(total_iters: int):
    # closed form (not CosineAnnealingLR's recursion): the lr at iteration t depends on t alone, and reaches 0
    return lambda t: 0.5 * (1.0 + math.cos(math.pi * min(t, total_iters) / total_iters))
