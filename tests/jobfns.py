"""Unit functions for the jobs/ tests, importable by name ("jobfns:record") in job subprocesses.

Each call appends a line to `config["counter"]` so a test can count executions across processes.
"""

from __future__ import annotations

import os
import time
from pathlib import Path


def _count(config: dict, tag: str) -> None:
    with open(config["counter"], "a") as f:
        f.write(f"{tag} {os.getpid()}\n")


def _block_until(path: str, limit_s: float = 900.0) -> None:
    # The limit only keeps a broken test from leaving a job behind forever (tests release their jobs at teardown);
    # it outlasts a test slowed down tenfold on a loaded machine.
    deadline = time.time() + limit_s
    while not Path(path).exists():
        if time.time() > deadline:
            raise TimeoutError(f"{path} never appeared")
        time.sleep(0.05)


def record(config: dict, workdir: Path, store) -> dict:
    _count(config, "run")
    # stands in for a training checkpoint: a requeued attempt finds what the interrupted one wrote
    resumed = (workdir / "checkpoint").exists()
    (workdir / "checkpoint").touch()
    if config.get("started"):
        Path(config["started"]).touch()
    if config.get("release"):
        _block_until(config["release"])
    time.sleep(config.get("sleep_s", 0))  # long enough that jobs overlap in the scheduler's second-resolution times
    if config.get("fail_if_exists") and Path(config["fail_if_exists"]).exists():
        raise RuntimeError(f"asked to fail for x={config['x']}")
    (workdir / "data.txt").write_text(f"x={config['x']}\n" * 10)
    return {"double": config["x"] * 2, **({"resumed": resumed} if config.get("report_resume") else {})}


def not_a_dict(config: dict, workdir: Path, store) -> list:
    _count(config, "run")
    return [config["x"]]
