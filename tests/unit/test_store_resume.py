"""A committed entry drops its resume-only state (`resume/`) and stays valid whatever point the process dies at."""

import json
import os
import shutil

import pytest

import jobs.store as store_mod
from jobs.store import RunStore

KEY = "cd" + "1" * 62


class Killed(BaseException):
    """Stands in for SIGKILL: nothing after the raise runs, nothing catches it."""


@pytest.fixture()
def store(tmp_path):
    return RunStore(tmp_path / "runs")


def _running_unit(store):
    wd = store.workdir("train", KEY)
    (wd / "model.pt").write_bytes(b"m" * 300)
    (wd / "metrics.json").write_text('{"acc": 1}')
    (wd / "resume").mkdir()
    (wd / "resume" / "last.pt").write_bytes(b"l" * 5000)
    (wd / "resume" / "best.pt").write_bytes(b"b" * 4000)
    return wd


def test_commit_drops_resume_and_the_manifest_says_so(store):
    wd = _running_unit(store)
    store.commit("train", KEY, {"acc": 1.0})
    assert store.is_done("train", KEY, verify=True)
    assert sorted(p.name for p in wd.iterdir() if not p.name.startswith(".")) == [
        "manifest.json", "metrics.json", "model.pt", "result.json"]
    manifest = json.loads((wd / "manifest.json").read_text())
    assert sorted(manifest["files"]) == ["metrics.json", "model.pt", "result.json"]
    assert manifest["dropped"] == {"resume/best.pt": {"size": 4000}, "resume/last.pt": {"size": 5000}}


def test_an_entry_without_resume_state_commits_as_before(store):
    wd = store.workdir("train", KEY)
    (wd / "model.pt").write_bytes(b"m")
    store.commit("train", KEY, {"acc": 1.0})
    assert store.is_done("train", KEY, verify=True)
    assert json.loads((wd / "manifest.json").read_text())["dropped"] == {}


def test_killed_before_the_manifest_lands_keeps_the_unit_resumable(store, monkeypatch):
    wd = _running_unit(store)
    real = store_mod.safefs.write_atomic

    def die_at_manifest(root, rel, data, **kw):
        if str(rel).endswith("manifest.json"):
            raise Killed()
        return real(root, rel, data, **kw)

    monkeypatch.setattr(store_mod.safefs, "write_atomic", die_at_manifest)
    with pytest.raises(Killed):
        store.commit("train", KEY, {"acc": 1.0})
    monkeypatch.undo()
    assert not store.is_done("train", KEY)
    assert (wd / "resume" / "last.pt").read_bytes() == b"l" * 5000  # the retry resumes from it


@pytest.mark.parametrize("point", ["before_rename", "after_rename"])
def test_killed_after_the_manifest_leaves_a_valid_entry_and_garbage_that_is_cleaned(store, monkeypatch, point):
    wd = _running_unit(store)
    if point == "before_rename":
        monkeypatch.setattr(store_mod, "drop_resume_state", lambda entry: (_ for _ in ()).throw(Killed()))
    else:
        monkeypatch.setattr(shutil, "rmtree", lambda *a, **k: (_ for _ in ()).throw(Killed()))
    with pytest.raises(Killed):
        store.commit("train", KEY, {"acc": 1.0})
    monkeypatch.undo()
    assert store.is_done("train", KEY, verify=True)  # the resume files are not in the manifest
    left = [p for p in wd.iterdir() if p.name == "resume" or p.name.startswith(store_mod.DROPPED_PREFIX)]
    assert len(left) == 1
    assert store_mod.drop_resume_state(wd) == 9000
    assert not [p for p in wd.iterdir() if p.name == "resume" or p.name.startswith(store_mod.DROPPED_PREFIX)]
    assert store.is_done("train", KEY, verify=True)


def test_a_dropped_entry_is_still_damage_checked(store):
    wd = _running_unit(store)
    store.commit("train", KEY, {"acc": 1.0})
    os.truncate(wd / "model.pt", 10)
    assert not store.is_done("train", KEY)
    assert not (store.root / "_quarantine").exists()  # a reader moves nothing
    assert ("train", KEY) in store.quarantine_damaged([("train", KEY)])
    assert (store.root / "_quarantine").exists()
