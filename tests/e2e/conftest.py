"""One cold `dvc repro` of the reduced default per test run, copied for each module that starts from a reproduced
repo: the tier pays for one cold repro instead of one per file. Under pytest-xdist the workers share it: the first
to get here builds it under a lock, the others wait and copy it."""

from __future__ import annotations

import fcntl
import shutil
from pathlib import Path

import pytest

from tests.e2e_util import make_repo, run


@pytest.fixture(scope="session")
def reproduced(tmp_path_factory, worker_id) -> Path:
    """The reduced default after a cold `dvc repro`, its outputs not yet committed (as a user's repo is then).
    Read-only for tests: they get copies (`warm_repo`)."""
    base = tmp_path_factory.getbasetemp()
    shared = (base.parent if worker_id != "master" else base) / "reproduced"  # xdist: the workers' common folder
    shared.mkdir(exist_ok=True)
    repo = shared / "repo"
    with open(shared / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (shared / "done").exists():
            shutil.rmtree(repo, ignore_errors=True)  # a worker that failed half-way
            make_repo(shared)
            shutil.copytree(Path(__file__).resolve().parents[2] / ".dvc" / "plots", repo / ".dvc" / "plots")
            run(repo, "dvc", "repro")
            (shared / "done").touch()
    return repo


@pytest.fixture(scope="module")
def warm_repo(reproduced, tmp_path_factory) -> Path:
    """A private copy of `reproduced` (its run store, DVC cache and git history included)."""
    repo = tmp_path_factory.mktemp("warm") / "repo"
    shutil.copytree(reproduced, repo, symlinks=True)
    return repo
