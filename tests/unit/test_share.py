"""jobs.share: copying entries by key between stores, refusing anything in a manifest or a tree it cannot trust.

The two-user attacks are in tests/security/test_share_attacks.py; these are the same checks as one user."""

from __future__ import annotations

import json
import os
import re
import stat

import pytest

from jobs.share import Refused, check_manifest, copy_entries
from jobs.store import RunStore

KEY = "ab" + "12" * 31


@pytest.fixture
def stores(tmp_path):
    src, dest = RunStore(tmp_path / "src"), RunStore(tmp_path / "dest")
    work = src.workdir("train", KEY)
    (work / "model.pt").write_bytes(b"w" * (2 << 20))  # above SMALL_FILE: the cheap check skips hashing it
    (work / "sub").mkdir()
    (work / "sub" / "history.json").write_text("[]")
    src.commit("train", KEY, {"acc": 0.5})
    return src, dest


def manifest_bytes(files: dict, kind: str = "train", key: str = KEY) -> bytes:
    return json.dumps({"kind": kind, "key": key, "files": files}).encode()


GOOD = {"size": 1, "sha256": "0" * 64}


@pytest.mark.parametrize("name", ["../x", "a/../../x", "/etc/passwd", "a//b", "./a", "a/.", "a\\b", "a\0b", "",
                                  ".hidden", "sub/.run.lock", "manifest.json", "job.json", "a/" * 40 + "b"])
def test_a_manifest_name_that_could_leave_its_entry_is_refused(name):
    with pytest.raises(Refused, match="file name|bookkeeping"):
        check_manifest(manifest_bytes({name: GOOD}), "train", KEY, "here")


def test_a_name_listed_twice_or_as_file_and_directory_is_refused():
    twice = b'{"kind": "train", "key": "%s", "files": {"a": {}, "a": {}}}' % KEY.encode()
    with pytest.raises(Refused, match="appears twice"):
        check_manifest(twice, "train", KEY, "here")
    with pytest.raises(Refused, match="both as a file and as the directory"):
        check_manifest(manifest_bytes({"a": GOOD, "a/b": GOOD}), "train", KEY, "here")


@pytest.mark.parametrize("data, message", [
    (b"[" * 200_000, "not valid JSON"), (b"\xff\xfe", "not valid JSON"), (b"[]", "has no file list"),
    (manifest_bytes({"r.json": GOOD}, key="cd" * 32), "is the manifest of train/cdcd"),
    (manifest_bytes({"r.json": GOOD}, kind="prune"), f"is the manifest of prune/{KEY}"),
    (manifest_bytes({"r.json": {"size": True, "sha256": "0" * 64}}), "needs an integer size"),
    (manifest_bytes({"r.json": {"size": 1, "sha256": "x"}}), "sha256 of 64 lowercase hex"),
])
def test_a_manifest_that_is_not_one_of_the_requested_entry_is_refused(data, message):
    with pytest.raises(Refused, match=message):
        check_manifest(data, "train", KEY, "here")


def test_copy_verifies_and_a_second_copy_finds_the_entry_present(stores):
    src, dest = stores
    out = copy_entries(src, dest, [("train", KEY), ("train", "cd" * 32)])
    assert out.copied == [("train", KEY)] and out.missing == [("train", "cd" * 32)] and out.refused == []
    assert out.bytes == sum(i["size"] for i in src.manifest("train", KEY)["files"].values())
    assert dest.is_done("train", KEY, verify=True)
    assert dest.manifest("train", KEY) == src.manifest("train", KEY)
    assert sorted(os.listdir(dest.path("train", KEY).parent)) == [KEY]
    assert copy_entries(src, dest, [("train", KEY)]).present == [("train", KEY)]


def test_a_source_file_that_does_not_match_its_sha256_is_refused_and_nothing_lands(stores):
    src, dest = stores
    (src.path("train", KEY) / "sub" / "history.json").write_text("{}")  # same size, other bytes
    out = copy_entries(src, dest, [("train", KEY)])
    assert out.copied == [] and "sub/history.json does not match its sha256" in out.refused[0][2]
    assert os.listdir(dest.path("train", KEY).parent) == []


@pytest.mark.parametrize("plant", ["symlink", "fifo"])
def test_a_source_file_that_is_a_symlink_or_fifo_is_refused_never_read(stores, tmp_path, plant):
    src, dest = stores
    history = src.path("train", KEY) / "sub" / "history.json"
    history.unlink()
    if plant == "symlink":
        (tmp_path / "outside.json").write_text("[]")
        history.symlink_to(tmp_path / "outside.json")
    else:
        os.mkfifo(history)
    out = copy_entries(src, dest, [("train", KEY)])
    assert out.copied == [] and "not a regular file" in out.refused[0][2], out


def test_a_symlinked_entry_directory_is_refused(stores, tmp_path):
    src, dest = stores
    entry = src.path("train", KEY)
    os.rename(entry, tmp_path / "elsewhere")
    entry.symlink_to(tmp_path / "elsewhere")
    out = copy_entries(src, dest, [("train", KEY)])
    assert out.copied == [] and "a symbolic link or not a directory; not followed" in out.refused[0][2], out


def test_an_unfinished_destination_entry_is_replaced_and_a_locked_one_is_not(stores):
    src, dest = stores
    (dest.workdir("train", KEY) / "partial.pt").write_text("half")
    lock = dest.run_lock("train", KEY)
    lock.acquire(timeout=0)
    try:
        out = copy_entries(src, dest, [("train", KEY)])
        assert "is held by a job (its run lock): not replaced" in out.refused[0][2]
        assert (dest.path("train", KEY) / "partial.pt").exists()
    finally:
        lock.release()
    assert copy_entries(src, dest, [("train", KEY)]).copied == [("train", KEY)]
    assert not (dest.path("train", KEY) / "partial.pt").exists() and dest.is_done("train", KEY, verify=True)
    assert sorted(os.listdir(dest.path("train", KEY).parent)) == [KEY]


def test_the_copy_takes_the_umask_and_the_manifest_mtimes(stores):
    src, dest = stores
    old = os.umask(0o027)
    try:
        copy_entries(src, dest, [("train", KEY)])
    finally:
        os.umask(old)
    entry = dest.path("train", KEY)
    assert stat.S_IMODE(entry.stat().st_mode) == 0o750 and stat.S_IMODE((entry / "model.pt").stat().st_mode) == 0o640
    files = src.manifest("train", KEY)["files"]
    assert all((entry / rel).stat().st_mtime_ns == info["mtime_ns"] for rel, info in files.items())


def test_a_bad_key_is_refused_with_what_is_allowed(stores):
    src, dest = stores
    out = copy_entries(src, dest, [("train", "../../x")])
    assert "is not a lowercase hex digest" in out.refused[0][2]


@pytest.mark.parametrize("kind, text, message", [
    ("train", "[" * 100_000, "is not valid JSON"), ("train", '{"key": "ab"}', "a JSON list of records"),
    ("train", '[{"key": 5}]', "a JSON list of records"), ("prune", '{"prune": [null]}', '{"prune": [key strings]}'),
    ("autoattack", "[]", '{"autoattack": [key strings]}'),
])
def test_a_malformed_unit_list_is_refused_naming_the_file(kind, text, message):
    from pipeline.store_cli import StoreCliError, keys_in

    with pytest.raises(StoreCliError, match=r"^units\.json .*" + re.escape(message)):
        keys_in(kind, text, "units.json")
    assert keys_in("train", json.dumps([{"key": KEY}, {"status": "failed"}])) == {("train", KEY)}
    assert keys_in("prune", json.dumps({"prune": [KEY]})) == {("prune", KEY)}
