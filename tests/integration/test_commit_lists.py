"""`awd-bench gc` reads the unit lists of recent commits from the DVC cache by the hashes in each dvc.lock
(pipeline/commit_lists.py): a clone whose cache lacks them is told so once, quickly, without DVC index errors."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess

import yaml

from pipeline.commit_lists import read_commit_lists
from tests.e2e_util import ROOT, VENV_BIN, make_repo, run

LISTS = ["artifacts/train/runs.json", "artifacts/attack/units.json", "artifacts/prune/units.json"]
TRAIN, AA, PRUNE = "a1" * 32, "b2" * 32, "c3" * 32


def git_dvc_repo(path):
    path.mkdir()
    for cmd in (["git", "init", "-q"], ["git", "config", "user.email", "t@example.com"],
                ["git", "config", "user.name", "t"], [str(VENV_BIN / "dvc"), "init", "-q"]):
        subprocess.run(cmd, cwd=path, check=True, capture_output=True)
    return path


def cache_object(repo, data: bytes, suffix: str = "") -> str:
    """Stores `data` where DVC 3 keeps it (a directory listing with the suffix .dir); returns its hash as a lock
    records it."""
    md5 = hashlib.md5(data).hexdigest() + suffix  # noqa: S324 - DVC's content address
    path = repo / ".dvc" / "cache" / "files" / "md5" / md5[:2] / md5[2:]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return md5


def commit_lock(repo, stages: dict, message: str) -> None:
    (repo / "dvc.lock").write_text(yaml.safe_dump({"schema": "2.0", "stages": stages}))
    subprocess.run(["git", "add", "dvc.lock"], cwd=repo, check=True)
    subprocess.run(["git", "commit", "-qm", message], cwd=repo, check=True)


def test_lists_are_read_from_the_cache_by_the_lock_hashes_and_missing_ones_named_once(tmp_path):
    repo = git_dvc_repo(tmp_path / "repo")
    runs = json.dumps([{"key": TRAIN, "status": "done"}]).encode()
    units = json.dumps({"autoattack": [AA]}).encode()
    listing = json.dumps([{"md5": cache_object(repo, units), "relpath": "units.json"},
                          {"md5": "0" * 32, "relpath": "results.json"}]).encode()
    prune_listing = json.dumps([{"md5": "1" * 32, "relpath": "results.json"}]).encode()  # no units.json yet
    commit_lock(repo, {"attack": {"cmd": "x", "deps": [{"path": "artifacts/train/runs.json", "md5": "f" * 32}],
                                  "outs": [{"path": "artifacts/attack", "md5": "e" * 32 + ".dir"}]}}, "old")
    commit_lock(repo, {
        "attack": {"cmd": "x", "deps": [{"path": "artifacts/train/runs.json", "md5": cache_object(repo, runs)}],
                   "outs": [{"path": "artifacts/attack", "md5": cache_object(repo, listing, ".dir")}]},
        "prune": {"cmd": "x", "outs": [{"path": "artifacts/prune", "md5": cache_object(repo, prune_listing, ".dir")}]},
    }, "new")
    got = read_commit_lists(repo, 5, LISTS)
    new, old = subprocess.run(["git", "rev-list", "-n", "2", "HEAD"], cwd=repo, capture_output=True,
                              text=True).stdout.split()
    assert json.loads(got.texts[new[:7]]["artifacts/train/runs.json"])[0]["key"] == TRAIN
    assert json.loads(got.texts[new[:7]]["artifacts/attack/units.json"]) == {"autoattack": [AA]}
    assert got.predating == {"artifacts/prune/units.json": {new[:7]}}  # its stage ran, writing no unit list yet
    assert got.uncached == [old[:7]] and got.unreadable == []  # the old commit's objects were never cached here


def test_gc_on_a_fresh_clone_says_once_what_it_cannot_read_and_that_nothing_is_to_delete(tmp_path):
    repo = make_repo(tmp_path)
    shutil.copy2(ROOT / "dvc.lock", repo / "dvc.lock")  # the project's lock: results this clone never computed
    run(repo, "git", "add", "dvc.lock")
    run(repo, "git", "commit", "-qm", "lock")
    out = run(repo, "python", "-m", "pipeline.store_cli", "gc")
    text = out.stdout + out.stderr
    assert "Error" not in text and "Traceback" not in text, text
    assert text.count("gc: cannot read") == 2, text  # the kept commit's lists, the workspace's: one line each
    assert "the unit lists of 1 kept commit(s)" in text and "not in this clone's DVC cache" in text, text
    assert out.stdout.rstrip().endswith("gc: nothing to delete") and "items above" not in text, text
    refused = run(repo, "python", "-m", "pipeline.store_cli", "gc", "--delete", check=False)
    assert refused.returncode == 0 and "nothing to delete" in refused.stdout, refused.stdout + refused.stderr
