"""End to end: what `dvc repro` recomputes after code and scheduling edits (issue 11's must-holds)."""

from __future__ import annotations

import json

import pytest

from tests.e2e_util import reduced_params, run, write_params

pytestmark = pytest.mark.e2e

KINDS = ("train", "autoattack", "prune")


def entries(repo) -> dict[str, set[str]]:
    return {kind: {p.name for p in (repo / "runs" / kind).glob("*/*") if (p / "manifest.json").exists()}
            for kind in KINDS}


def edit(repo, rel, old, new):
    path = repo / rel
    text = path.read_text()
    assert old in text, f"{rel}: {old!r} not found"
    path.write_text(text.replace(old, new, 1))


def commit(repo, message):
    run(repo, "git", "add", "-A")
    run(repo, "git", "commit", "-qm", message)


@pytest.fixture(scope="module")
def repo(warm_repo):
    repo = warm_repo  # the session's cold repro (tests/e2e/conftest.py), copied
    commit(repo, "results")
    return repo


def test_comment_and_docstring_edits_train_and_attack_nothing(repo):
    before = entries(repo)
    assert all(before.values()), before
    for rel in ("awd/weight_decay.py", "awd/train.py", "awd/attacks.py"):
        text = (repo / rel).read_text()
        first = text.index('"""') + 3
        (repo / rel).write_text("# a comment added at the top\n" + text[:first] + "Reworded. " + text[first:])
    out = run(repo, "dvc", "repro")
    assert "Running stage 'train'" in out.stdout  # its code deps changed: the stage reruns its bookkeeping ...
    assert entries(repo) == before, out.stdout[-3000:]  # ... and finds every unit cached
    commit(repo, "comment edits")


def test_changing_autoattack_shards_recomputes_no_autoattack(repo):
    before = entries(repo)
    results = json.loads((repo / "artifacts" / "attack" / "results.json").read_text())
    params = reduced_params()
    params["autoattack"]["shards"] = 1
    write_params(repo, params)
    out = run(repo, "dvc", "repro")
    assert "Running stage 'attack'" in out.stdout, out.stdout[-3000:]
    assert entries(repo) == before
    assert json.loads((repo / "artifacts" / "attack" / "results.json").read_text()) == results
    commit(repo, "one shard")


def test_a_one_token_change_of_prune_code_reruns_only_prune_units(repo):
    before = entries(repo)
    edit(repo, "awd/prune.py", "import copy\n", "import copy as copy\n")
    out = run(repo, "dvc", "repro")
    after = entries(repo)
    assert after["train"] == before["train"] and after["autoattack"] == before["autoattack"], out.stdout[-3000:]
    new = after["prune"] - before["prune"]
    assert len(new) == len(before["prune"]) > 0  # every prune unit, once
