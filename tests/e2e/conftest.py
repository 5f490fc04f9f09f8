"""One cold `dvc repro` of the reduced default per test session (per xdist worker), copied for each module that
starts from a reproduced repo: the tier pays for one cold repro instead of one per file."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.e2e_util import make_repo, run


@pytest.fixture(scope="session")
def reproduced(tmp_path_factory) -> Path:
    """The reduced default after a cold `dvc repro`, its outputs not yet committed (as a user's repo is then).
    Read-only for tests: they get copies (`warm_repo`)."""
    repo = make_repo(tmp_path_factory.mktemp("reproduced"))
    shutil.copytree(Path(__file__).resolve().parents[2] / ".dvc" / "plots", repo / ".dvc" / "plots")
    run(repo, "dvc", "repro")
    return repo


@pytest.fixture(scope="module")
def warm_repo(reproduced, tmp_path_factory) -> Path:
    """A private copy of `reproduced` (its run store, DVC cache and git history included)."""
    repo = tmp_path_factory.mktemp("warm") / "repo"
    shutil.copytree(reproduced, repo, symlinks=True)
    return repo
