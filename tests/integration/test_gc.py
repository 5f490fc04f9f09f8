"""jobs.gc: what a store can lose, and never an entry a live job holds."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from jobs.gc import delete, plan
from jobs.store import RunStore

USED, ORPHAN, LOCKED, CLAIMED, BEATING = ("a1" * 32, "b2" * 32, "c3" * 32, "d4" * 32, "e5" * 32)


@pytest.fixture()
def store(tmp_path):
    return RunStore(tmp_path / "runs")


def done(store, key, resume=False):
    wd = store.workdir("train", key)
    (wd / "model.pt").write_bytes(b"m" * 1000)
    if resume:
        (wd / "resume").mkdir()
        (wd / "resume" / "last.pt").write_bytes(b"l" * 500)
    store.commit("train", key, {"acc": 1.0})
    return wd


def test_lists_unused_entries_and_old_folders_and_deletes_exactly_them(store):
    used_wd = done(store, USED)
    (used_wd / "resume").mkdir()  # a commit cut short after its manifest: resume state left behind
    (used_wd / "resume" / "last.pt").write_bytes(b"l" * 700)
    done(store, ORPHAN)
    old = store.root / "_quarantine" / "train" / f"{ORPHAN}.20200101T000000.abc"
    old.mkdir(parents=True)
    (old / "reason.txt").write_text("x")
    fresh_logs = store.root / "_logs" / "me" / "train"
    fresh_logs.mkdir(parents=True)
    (fresh_logs / "1_0_log.out").write_text("x")
    past = time.time() - 10 * 86400
    for p in (old / "reason.txt", old):
        os.utime(p, (past, past))
    items = plan(store, {("train", USED)}, max_age_s=86400)
    got = {(i.what, i.key or i.path.name) for i in items}
    assert got == {("resume state", USED), ("entry", ORPHAN), ("quarantine", old.name)}
    assert next(i for i in items if i.what == "resume state").bytes == 700
    freed = delete(store, items, say=lambda s: None)
    assert freed >= 700 + 1000
    assert store.is_done("train", USED, verify=True) and not (used_wd / "resume").exists()
    assert not store.path("train", ORPHAN).exists() and not old.exists() and fresh_logs.exists()


def test_entries_a_live_job_holds_are_never_listed_or_deleted(store, tmp_path):
    for key in (LOCKED, CLAIMED, BEATING):
        store.workdir("train", key)
    store.claim("train", CLAIMED)  # this process is the driver submitting it
    store.beat("train", BEATING, "123")
    lock = store.path("train", LOCKED) / ".run.lock"
    ready = tmp_path / "locked"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import filelock, pathlib, sys, time; l = filelock.FileLock(sys.argv[1]); l.acquire(); "
        "pathlib.Path(sys.argv[2]).touch(); time.sleep(60)"), str(lock), str(ready)])
    try:
        deadline = time.time() + 30
        while not ready.exists():
            assert time.time() < deadline and holder.poll() is None
            time.sleep(0.05)
        assert plan(store, set(), max_age_s=0) == []  # run lock held, claim alive, heartbeat fresh
    finally:
        holder.kill()
        holder.wait()
    (item,) = plan(store, {("train", CLAIMED), ("train", BEATING)}, max_age_s=86400)
    assert item.key == LOCKED  # its lock is free now: an unfinished entry nobody works on
    assert delete(store, [item], say=lambda s: None) == item.bytes and not store.path("train", LOCKED).exists()


def test_delete_rechecks_liveness(store):
    store.workdir("train", ORPHAN)
    (item,) = plan(store, set(), max_age_s=86400)
    store.beat("train", ORPHAN, "77")  # a job started on it after the listing
    said = []
    assert delete(store, [item], say=said.append) == 0
    assert store.path("train", ORPHAN).exists() and "heartbeat" in said[0]


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to hand an entry to another uid")
def test_another_users_entries_are_listed_on_request_and_never_deleted(store):
    wd = done(store, ORPHAN)
    os.chown(wd, 4242, 4242)  # a collaborator computed it in the shared store
    assert plan(store, set(), max_age_s=86400) == []
    (item,) = plan(store, set(), max_age_s=86400, all_users=True)  # listed, but theirs to delete
    assert item.key == ORPHAN and item.skip.startswith("owned by ") and "(uid 4242)" in item.skip
    said = []
    assert delete(store, [item], say=said.append) == 0
    assert store.is_done("train", ORPHAN, verify=True) and "owned by" in said[0]


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to hand a file to another uid")
def test_an_entry_of_ours_holding_another_users_file_is_kept(store):
    wd = done(store, ORPHAN)
    (wd / "extra.bin").write_bytes(b"x")
    os.chown(wd / "extra.bin", 4242, 4242)  # a collaborator wrote into it
    (item,) = plan(store, set(), max_age_s=86400)
    assert item.skip.startswith("holds files of")
    assert delete(store, [item], say=lambda s: None) == 0 and (wd / "extra.bin").exists()


def test_links_are_listed_and_deleted_as_links_never_followed(store, tmp_path):
    outside = tmp_path / "home"
    (outside / "project").mkdir(parents=True)
    (outside / "project" / "notes.txt").write_text("work")
    done(store, USED)
    past = time.time() - 100 * 86400
    links = {"_quarantine/train": outside, "_logs/someone": outside, "_logs/me/train": outside / "project",
             "train/a1/x": outside, f"train/a1/{ORPHAN}": outside, "train/b2": outside, "prune": outside}
    for rel, target in links.items():
        (store.root / rel).parent.mkdir(parents=True, exist_ok=True)
        (store.root / rel).symlink_to(target)
        os.utime(store.root / rel, (past, past), follow_symlinks=False)
    items = plan(store, {("train", USED)}, max_age_s=0)
    assert sorted(i.rel for i in items) == sorted(links) and {i.what for i in items} == {"symlink"}
    assert all(i.skip == "" and i.bytes == 0 for i in items)  # ours: deletable, as links
    delete(store, items, say=lambda s: None)
    assert not any(os.path.lexists(store.root / rel) for rel in links)
    assert (outside / "project" / "notes.txt").read_text() == "work"
    assert store.is_done("train", USED, verify=True)


def test_names_that_are_not_keys_are_listed_not_a_crash(store):
    done(store, USED)
    prefix = store.root / "train" / "a1"
    (prefix / "not-a-key").mkdir()
    (prefix / "README").write_text("x")
    (prefix / ORPHAN).mkdir()  # a key under the wrong prefix
    (store.root / "train" / "zz").mkdir()
    (store.root / "train" / ".b2").mkdir()  # dot-names are the store's temporaries: not listed
    items = plan(store, {("train", USED)}, max_age_s=86400)
    assert sorted((i.what, i.rel) for i in items) == [
        ("stray", "train/a1/README"), ("stray", f"train/a1/{ORPHAN}"), ("stray", "train/a1/not-a-key"),
        ("stray", "train/zz")]
    assert store.pending_jobs() == []  # the other readers of the layout pass over them too
    delete(store, items, say=lambda s: None)
    assert sorted(p.name for p in prefix.iterdir()) == [USED]


def snapshot(store, digest, days_old, user_dir=True):
    """A read-only code snapshot directory as jobs/snapshot.py leaves it, untouched for `days_old` days."""
    top = store.root / "_code" / (f"u{os.geteuid()}" if user_dir else "")
    path = top / digest[:2] / digest
    (path / "awd").mkdir(parents=True)
    (path / "awd" / "x.py").write_text("x = 1\n")
    (path / "snapshot.json").write_text("{}")
    past = time.time() - days_old * 86400
    for p in (path / "awd" / "x.py", path / "snapshot.json", path / "awd", path):
        os.utime(p, (past, past))
    for d in (path / "awd", path):
        d.chmod(0o555)
    return path


def test_code_snapshots_no_kept_entry_names_go_once_old_and_never_while_a_job_may_run(store):
    named, orphan, young, legacy = ("1a" * 32, "2b" * 32, "3c" * 32, "4d" * 32)
    done(store, USED)
    store.commit("train", USED, {"acc": 1.0}, meta={"code": named})
    done(store, ORPHAN)
    store.commit("train", ORPHAN, {"acc": 1.0}, meta={"code": orphan})  # the entry goes, so its code does
    paths = {d: snapshot(store, d, 40) for d in (named, orphan)}
    paths[young] = snapshot(store, young, 1)
    paths[legacy] = snapshot(store, legacy, 40, user_dir=False)  # `_code/<xx>/<digest>/` of earlier versions

    items = plan(store, {("train", USED)}, max_age_s=30 * 86400)
    got = {(i.what, i.path.name) for i in items}
    assert got == {("entry", ORPHAN), ("code snapshot", orphan), ("code snapshot", legacy)}, got
    assert all(i.bytes > 0 and "named by no kept entry" in i.why for i in items if i.what == "code snapshot")
    delete(store, items, say=lambda s: None)
    assert not paths[orphan].exists() and not paths[legacy].exists()
    assert paths[named].exists() and paths[young].exists()

    for p in sorted(paths[young].rglob("*"), reverse=True) + [paths[young]]:
        os.utime(p, (time.time() - 40 * 86400,) * 2)

    def snapshots():
        return [i.path.name for i in plan(store, {("train", USED)}, max_age_s=30 * 86400) if i.what == "code snapshot"]
    assert snapshots() == [young]
    store.workdir("train", BEATING)
    store.beat("train", BEATING, "12345")  # a job computing a unit: its snapshot is named only in its pickle
    assert snapshots() == []
