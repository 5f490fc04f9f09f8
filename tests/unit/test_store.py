import errno
import json
import math
import os
import threading

import pytest

import jobs.store as store_mod
from jobs.store import RunStore, StoreError

KEY = "ab" + "0" * 62


@pytest.fixture()
def store(tmp_path):
    return RunStore(tmp_path / "runs")


def _fill(store, kind="train", key=KEY):
    wd = store.workdir(kind, key)
    (wd / "weights.bin").write_bytes(b"\x01" * 1000)
    (wd / "sub").mkdir()
    (wd / "sub" / "trace.txt").write_text("0.1\n0.2\n")
    return wd


def _leftovers(path):
    return sorted(p.name for p in path.rglob("*") if p.name.endswith(".tmp"))


def test_commit_then_done(store):
    wd = _fill(store)
    assert wd == store.root / "train" / "ab" / KEY
    assert not store.is_done("train", KEY)
    store.record_jobs("train", KEY, "123", "local", {"stderr": "/x.err"})
    store.commit("train", KEY, {"acc": 0.9, "nan_ok": math.nan}, meta={"seconds": 1.5})
    assert store.is_done("train", KEY) and store.is_done("train", KEY, verify=True)
    res = store.result("train", KEY)
    assert res["acc"] == 0.9 and math.isnan(res["nan_ok"])
    manifest = json.loads((wd / "manifest.json").read_text())
    assert sorted(manifest["files"]) == ["result.json", "sub/trace.txt", "weights.bin"]  # job.json is bookkeeping
    assert manifest["files"]["weights.bin"]["size"] == 1000
    assert manifest["meta"] == {"seconds": 1.5}
    assert _leftovers(store.root) == []


def test_not_done_without_manifest(store):
    _fill(store)
    (store.workdir("train", KEY) / "result.json").write_text("{}")
    assert not store.is_done("train", KEY)
    with pytest.raises(StoreError, match=f"train/{KEY} is not done"):
        store.result("train", KEY)
    assert not (store.root / "_quarantine").exists()  # in progress is not damage


def test_truncated_file_is_reported_then_quarantined_only_on_request(store):
    wd = _fill(store)
    store.commit("train", KEY, {"acc": 1.0})
    with open(wd / "weights.bin", "r+b") as f:
        f.truncate(10)
    assert not store.is_done("train", KEY)
    assert store.damage("train", KEY) == "weights.bin has 10 bytes, manifest says 1000"
    with pytest.raises(StoreError, match=f"train/{KEY} is damaged: weights.bin has 10 bytes"):
        store.result("train", KEY)
    assert store.pending_jobs() == []
    assert wd.exists() and not (store.root / "_quarantine").exists()  # readers read: nothing moved

    assert store.quarantine_damaged([("train", KEY)]) == {("train", KEY): "weights.bin has 10 bytes, manifest says 1000"}
    assert not wd.exists()
    (moved,) = list((store.root / "_quarantine" / "train").iterdir())
    assert moved.name.startswith(KEY)
    assert "weights.bin has 10 bytes, manifest says 1000" in (moved / "reason.txt").read_text()
    assert (moved / "weights.bin").exists()  # kept for inspection


def test_quarantine_leaves_done_in_progress_and_busy_entries_alone(store):
    done, running, busy = KEY, "cd" + "1" * 62, "ef" + "2" * 62
    _fill(store, key=done)
    store.commit("train", done, {"acc": 1.0})
    _fill(store, key=running)  # no manifest yet: in progress is not damage
    wd = _fill(store, key=busy)
    store.commit("train", busy, {"acc": 1.0})
    (wd / "weights.bin").write_bytes(b"\x01" * 999)
    lock = store.run_lock("train", busy)
    with lock:  # a job holding the run lock is recomputing it and commits over it
        assert store.quarantine_damaged([("train", k) for k in (done, running, busy)]) == {}
    assert not (store.root / "_quarantine").exists()
    assert store.quarantine_damaged([("train", busy)]) == {("train", busy): "weights.bin has 999 bytes, manifest says 1000"}


def test_same_size_corruption_needs_verify(store):
    wd = _fill(store)
    store.commit("train", KEY, {"acc": 1.0})
    (wd / "weights.bin").write_bytes(b"\x02" * 1000)
    assert store.is_done("train", KEY)  # cheap mode checks sizes only
    assert not store.is_done("train", KEY, verify=True)
    assert store.quarantine_damaged([("train", KEY)], verify=False) == {}
    assert store.quarantine_damaged([("train", KEY)], verify=True)
    (moved,) = list((store.root / "_quarantine" / "train").iterdir())
    assert "weights.bin sha256 differs" in (moved / "reason.txt").read_text()


def test_garbled_manifest_is_damage(store):
    wd = _fill(store)
    store.commit("train", KEY, {"acc": 1.0})
    (wd / "manifest.json").write_text('{"files": ')
    assert not store.is_done("train", KEY)
    assert store.damage("train", KEY).startswith("unreadable manifest.json")
    with pytest.raises(StoreError, match=f"train/{KEY} is damaged: unreadable manifest.json"):
        store.manifest("train", KEY)
    assert wd.exists()
    store.quarantine_damaged([("train", KEY)])
    (moved,) = list((store.root / "_quarantine" / "train").iterdir())
    assert "unreadable manifest.json" in (moved / "reason.txt").read_text()


def test_failed_manifest_write_leaves_no_half_entry(store, monkeypatch):
    wd = _fill(store)
    real_replace = os.replace

    def full_disk(src, dst, **fds):  # the store renames through directory fds (jobs.safefs.write_atomic)
        if str(dst).endswith("manifest.json"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_replace(src, dst, **fds)

    monkeypatch.setattr(store_mod.os, "replace", full_disk)
    with pytest.raises(OSError, match="No space left"):
        store.commit("train", KEY, {"acc": 1.0})
    assert not store.is_done("train", KEY)
    assert not (wd / "result.json").exists() and not (wd / "manifest.json").exists()
    assert _leftovers(store.root) == []
    monkeypatch.setattr(store_mod.os, "replace", real_replace)
    store.commit("train", KEY, {"acc": 1.0})  # the retry succeeds
    assert store.result("train", KEY) == {"acc": 1.0}


def test_failed_result_write_leaves_nothing(store, monkeypatch):
    wd = _fill(store)

    def fsync_fails(fd):
        raise OSError(errno.EIO, "I/O error")

    monkeypatch.setattr(store_mod.os, "fsync", fsync_fails)
    with pytest.raises(OSError, match="I/O error"):
        store.commit("train", KEY, {"acc": 1.0})
    monkeypatch.undo()
    assert not store.is_done("train", KEY)
    assert sorted(p.name for p in wd.iterdir()) == ["sub", "weights.bin"]


def test_recommit_of_a_done_entry_is_not_done_midway(store, monkeypatch):
    _fill(store)
    store.commit("train", KEY, {"acc": 1.0})
    monkeypatch.setattr(store_mod, "_sha256", lambda *a: (_ for _ in ()).throw(OSError("read failed")))
    with pytest.raises(OSError):
        store.commit("train", KEY, {"acc": 2.0})
    monkeypatch.undo()
    assert not store.is_done("train", KEY)


def test_unserialisable_result_names_the_entry(store):
    with pytest.raises(TypeError, match=f"result of train/{KEY}"):
        store.commit("train", KEY, {"model": object()})
    assert not store.is_done("train", KEY)


@pytest.mark.parametrize("kind,key,match", [("Train", KEY, "kind 'Train'"), ("_logs", KEY, "kind '_logs'"),
                                            ("train", "xyz", "key 'xyz'"), ("train", "../../etc", "key")])
def test_bad_kind_or_key(store, kind, key, match):
    with pytest.raises(ValueError, match=match):
        store.path(kind, key)


def test_job_records_and_pending(store):
    other = "cd" + "1" * 62
    store.record_jobs("train", KEY, "7_1", "slurm", {"stdout": "/o", "stderr": "/e"}, pack_index=0)
    store.record_jobs("attack", other, "99", "local", {"stderr": "/e2"})
    rec = store.job_record("train", KEY)
    assert rec["job_id"] == "7_1" and rec["executor"] == "slurm" and rec["log_paths"]["stderr"] == "/e"
    assert rec["pack_index"] == 0
    assert sorted((r["kind"], r["key"]) for r in store.pending_jobs()) == [("attack", other), ("train", KEY)]
    store.commit("attack", other, {})
    assert [(r["kind"], r["key"]) for r in store.pending_jobs()] == [("train", KEY)]
    store.clear_job("train", KEY)
    assert store.job_record("train", KEY) is None and store.pending_jobs() == []


def test_errors_are_recorded_and_cleared_by_commit(store):
    store.record_error("train", KEY, "Traceback...\nValueError: boom\n")
    assert store.error("train", KEY).endswith("boom\n")
    store.commit("train", KEY, {})
    assert store.error("train", KEY) is None


def test_submit_lock_excludes_a_second_driver(store):
    held, release = threading.Event(), threading.Event()

    def first():
        with store.submit_lock():
            held.set()
            release.wait(30)

    t = threading.Thread(target=first)
    t.start()
    try:
        assert held.wait(30)
        said = []
        with pytest.raises(StoreError, match=r"submit lock held by pid \d+ on .* for more than 0.2s"):
            with store.submit_lock(say=said.append, timeout=0.2):
                pass
        assert said and "waiting" in said[0]
    finally:
        release.set()
        t.join()
    with store.submit_lock(timeout=5):  # free again
        pass


def test_status_and_dry_run_leave_a_damaged_entry_in_place(store, capsys):
    from jobs import Unit, dry_run
    from jobs.__main__ import main

    wd = _fill(store)
    store.record_jobs("train", KEY, str(2**22 + 12345), "local", {"stderr": "/x.err"})
    store.commit("train", KEY, {"acc": 1.0})
    with open(wd / "weights.bin", "r+b") as f:
        f.truncate(10)
    assert main(["status", "--store", str(store.root)]) == 0
    assert f"train/{KEY}" in capsys.readouterr().out  # not done, so its job is listed
    unit = Unit("train", KEY, "json:dumps", {"x": 1})
    assert dry_run([unit], store) == [unit]
    assert (wd / "weights.bin").stat().st_size == 10 and (wd / "manifest.json").exists()
    assert not (store.root / "_quarantine").exists()


def test_only_a_unit_that_will_run_has_its_function_imported(store):
    """A done unit's fn is never called: a stage with nothing to do does not import its units' modules (torch)."""
    from jobs import Unit, dry_run

    store.commit("train", KEY, {"acc": 1.0})
    done = Unit("train", KEY, "no_such_module_anywhere:fn", {"x": 1})
    assert dry_run([done], store) == []
    pending = Unit("train", "cd" + "0" * 62, "no_such_module_anywhere:fn", {"x": 2})
    with pytest.raises(ValueError, match="cannot use fn 'no_such_module_anywhere:fn'"):
        dry_run([done, pending], store)


@pytest.mark.parametrize("content, why", [
    (b"[" * 200_000, "nested too deeply"),
    (b'{"files": "\xff"}', "not UTF-8"),
    (b"[]", "a JSON list, not a dict"),
    (b'{"files": {"result.json": []}}', "record of 'result.json' is not an object"),
    (b'{"files": {"result.json": {"size": 1}, "../../etc/passwd": {"size": 1}}}', "not a normalised relative name"),
    (b'{"files": {"result.json": {"size": "big"}}}', "result.json has"),
])
def test_any_manifest_content_is_damage_never_a_crash(store, content, why):
    wd = _fill(store)
    store.commit("train", KEY, {"acc": 1.0})
    (wd / "manifest.json").write_bytes(content)
    assert not store.is_done("train", KEY, verify=True)
    assert why in store.damage("train", KEY)
    with pytest.raises(StoreError, match="is damaged"):
        store.result("train", KEY)
    assert list(store.quarantine_damaged([("train", KEY)])) == [("train", KEY)]


def test_links_in_an_entry_are_never_followed(store, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"\x01" * 1000)
    wd = _fill(store)
    (wd / "planted").symlink_to(outside / "secret")  # a member's link: hashed and pushed, it would leak the target
    store.commit("train", KEY, {"acc": 1.0})
    assert "planted" not in json.loads((wd / "manifest.json").read_text())["files"]
    (wd / "weights.bin").unlink()
    (wd / "weights.bin").symlink_to(outside / "secret")  # same size, same bytes: still not the committed file
    assert store.damage("train", KEY) == "weights.bin is not a regular file"
    os.mkfifo(wd / "error.txt")  # read, it would block the driver
    assert store.error("train", KEY) is None
    other = "cd" + "1" * 62
    (store.root / "train" / "cd").symlink_to(outside)
    with pytest.raises(OSError, match="symbolic link"):
        store.workdir("train", other)  # a job's files never go to the link's target
    with pytest.raises(OSError, match="symbolic link"):
        store.record_error("train", other, "x")
    assert sorted(p.name for p in outside.iterdir()) == ["secret"]


def test_hostile_bookkeeping_records_count_as_absent(store):
    wd = store.workdir("train", KEY)
    for name, data in (("job.json", b"[" * 200_000), ("attempts.json", b'{"not": "a list"}'),
                       (".heartbeat", b'{"t": "soon"}')):
        (wd / name).write_bytes(data)
    assert store.job_record("train", KEY) is None and store.pending_jobs() == []
    assert store.attempts("train", KEY) == [] and store.heartbeat("train", KEY) is None
    assert store.record_attempt("train", KEY, "preempted")[0]["cause"] == "preempted"  # replaced, not appended to


def test_quarantine_is_sticky(store):
    wd = _fill(store)
    store.commit("train", KEY, {"acc": 1.0})
    (wd / "weights.bin").write_bytes(b"")
    store.quarantine_damaged([("train", KEY)])
    for path in (store.root / "_quarantine", store.root / "_quarantine" / "train"):
        assert path.stat().st_mode & 0o1000  # members move entries in, never another member's out


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to hand an entry to another uid")
def test_a_damaged_entry_of_another_user_is_left_in_place(store, caplog):
    wd = _fill(store)
    store.commit("train", KEY, {"acc": 1.0})
    (wd / "weights.bin").write_bytes(b"")
    os.chown(wd, 4242, 4242)
    assert store.quarantine_damaged([("train", KEY)]) == {}
    assert wd.exists() and "belongs to uid4242: left in place" in caplog.text
