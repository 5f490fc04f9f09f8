"""One training run: the unit behind every cell of every suite."""

from __future__ import annotations

import logging
import math
import os
import sys
from contextlib import contextmanager
from pathlib import Path

from pipeline.units.data import load_prepared, load_sets, train_labels

# Keys of a unit's config that say where inputs live, not what is computed: never part of the cache key.
LOCATION_KEYS = ("_prepared", "_data_root")
# How often the run writes its resume checkpoint: changes nothing computed, so it is no part of the key.
CHECKPOINT_EVERY_ENV = "AWD_CHECKPOINT_EVERY_S"


def run_config(config: dict) -> dict:
    return {k: v for k, v in config.items() if k not in LOCATION_KEYS}


def checkpoint_every_s(default: float) -> float:
    raw = os.environ.get(CHECKPOINT_EVERY_ENV)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"environment variable {CHECKPOINT_EVERY_ENV}={raw!r}: allowed a number of seconds >= 0 "
                         f"(0: every epoch), or unset for {default:g}")
    return value


@contextmanager
def _epochs_in_job_log():
    """The job log (stdout) shows every epoch and resume, which awd logs at INFO, unless logging already goes
    to the console."""
    root = logging.getLogger()
    if any(getattr(h, "stream", None) in (sys.stdout, sys.stderr) for h in root.handlers):
        yield
        return
    logger, handler = logging.getLogger("awd"), logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def on_requeue() -> None:
    """The job runner calls this before the job is stopped and requeued (time limit, preemption): the run in
    progress writes its last epoch end, so that the rerun loses only the epoch in progress."""
    from awd.checkpoint import checkpoint_now

    checkpoint_now()


def train_unit(config: dict, workdir: Path, store=None) -> dict:
    from awd.train import CHECKPOINT_EVERY_S, TrainConfig, make_train_data, train

    run = run_config(config)
    cfg = TrainConfig.from_dict(run)
    every_s = checkpoint_every_s(CHECKPOINT_EVERY_S)
    train_set, test_set = load_sets(run, config["_data_root"])
    prepared = load_prepared(config["_prepared"], run)
    labels = train_labels(prepared, train_set, run)
    data = make_train_data(train_set, test_set, prepared["train_idx"], prepared["val_idx"], labels=labels)
    with _epochs_in_job_log():
        return train(cfg, data, Path(workdir), checkpoint_every_s=every_s)
