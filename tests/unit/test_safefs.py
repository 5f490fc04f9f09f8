"""jobs.safefs: file operations under a root other people can write into never follow a link, never leave the root,
never block on a FIFO, and turn any content of a small JSON record into one CorruptRecord."""

from __future__ import annotations

import json
import os

import pytest

from jobs import safefs
from jobs.safefs import CorruptRecord, UnsafePath


@pytest.fixture()
def root(tmp_path):
    (tmp_path / "root").mkdir()
    return tmp_path / "root"


@pytest.fixture()
def outside(tmp_path):
    """What a planted link points at: nothing here may be read through the link, changed or deleted."""
    (tmp_path / "outside" / "sub").mkdir(parents=True)
    (tmp_path / "outside" / "secret.txt").write_text("secret")
    (tmp_path / "outside" / "sub" / "data").write_bytes(b"d" * 100)
    return tmp_path / "outside"


def snapshot(path):
    return sorted((p.relative_to(path).as_posix(), p.read_bytes() if p.is_file() else None) for p in path.rglob("*"))


@pytest.mark.parametrize("rel", ["a", "a/b.txt", "train/ab/" + "c" * 64, "..a", "a..b/c"])
def test_normalised_relative_names_are_accepted(rel):
    assert safefs.check_relpath(rel) == tuple(rel.split("/"))


@pytest.mark.parametrize("rel", ["", "/etc/passwd", "../x", "a/../../x", "a/./b", "a//b", "a/", ".", "a\0b", 3, None])
def test_anything_else_is_refused(rel):
    with pytest.raises(UnsafePath, match="relative"):
        safefs.check_relpath(rel)


def test_a_link_on_the_way_is_never_followed(root, outside):
    (root / "kind").symlink_to(outside)
    before = snapshot(outside)
    for call in (lambda: safefs.open_dir(root, "kind/sub"), lambda: safefs.open_dir(root, "kind/new", create=True),
                 lambda: safefs.read_bytes(root, "kind/secret.txt", 100), lambda: safefs.scan(root, "kind"),
                 lambda: safefs.write_atomic(root, "kind/secret.txt", b"x"), lambda: safefs.remove(root, "kind/sub"),
                 lambda: safefs.write_new(root, "kind/new.txt", b"x"), lambda: safefs.lstat(root, "kind/secret.txt")):
        with pytest.raises(UnsafePath, match="kind: a symbolic link or not a directory; not followed"):
            call()
    assert snapshot(outside) == before


def test_open_dir_creates_what_is_missing_and_takes_an_fd_as_root(root):
    with safefs.dir_fd(root, "a/b/c", create=True) as fd:
        safefs.write_atomic(fd, "x.json", b"{}")
        assert json.loads(safefs.read_bytes(fd, "x.json", 10)) == {}
    assert (root / "a" / "b" / "c" / "x.json").read_bytes() == b"{}"
    with pytest.raises(FileNotFoundError):
        safefs.open_dir(root, "a/missing")


def test_lstat_and_scan_see_links_as_links(root, outside):
    (root / "link").symlink_to(outside / "secret.txt")
    (root / "dir").mkdir()
    assert safefs.lstat(root, "link").st_size == len(str(outside / "secret.txt"))
    assert safefs.lstat(root, "nothing") is None and safefs.lstat(root, "nothing/deeper") is None
    assert [name for name, _ in safefs.scan(root)] == ["dir", "link"]
    assert [os.path.islink(root / n) for n, st in safefs.scan(root) if st.st_mode & 0o170000 == 0o120000] == [True]


def test_open_file_refuses_links_fifos_and_directories_without_blocking(root, outside):
    (root / "link").symlink_to(outside / "secret.txt")
    os.mkfifo(root / "fifo")  # nobody writes it: an open that waited would hang here
    (root / "dir").mkdir()
    for name in ("link", "fifo", "dir"):
        with pytest.raises(UnsafePath, match="not a regular file"):
            safefs.open_file(root, name)


@pytest.mark.parametrize("content, why", [
    (b"[" * 200_000, "nested too deeply to parse"),
    (b"[" * 100 + b"]" * 100, "nested deeper than 64 levels"),
    (b"1" * 300_001, "larger than 300000 bytes"),
    (b'{"a": "\xff"}', "not UTF-8"),
    (b'{"a": ', "not JSON"),
    (b"[1, 2]", "a JSON list, not a dict"),
])
def test_any_bad_record_content_is_one_corrupt_record(root, content, why):
    (root / "r.json").write_bytes(content)
    with pytest.raises(CorruptRecord, match=why):
        safefs.read_json(root, "r.json", limit=300_000, expect=dict)


def test_a_record_that_is_a_link_or_fifo_is_corrupt_and_a_missing_one_is_missing(root):
    (root / "link.json").symlink_to("/dev/zero")
    os.mkfifo(root / "fifo.json")
    for name in ("link.json", "fifo.json"):
        with pytest.raises(CorruptRecord, match="not a regular file"):
            safefs.read_json(root, name, limit=1000)
    with pytest.raises(FileNotFoundError):
        safefs.read_json(root, "missing.json", limit=1000)
    (root / "ok.json").write_text('{"a": [1, {"b": NaN}]}')
    assert safefs.read_json(root, "ok.json", limit=1000, expect=dict)["a"][0] == 1


def test_tree_and_walk_count_links_without_following_them(root, outside):
    (root / "e" / "sub").mkdir(parents=True)
    (root / "e" / "f").write_bytes(b"x" * 10)
    (root / "e" / "sub" / "g").write_bytes(b"y" * 5)
    (root / "e" / "to-outside").symlink_to(outside)
    info = safefs.tree(root, "e")
    assert (info.bytes, info.links, info.uids, info.unvisited) == (15, 1, {os.geteuid()}, [])
    assert [rel for rel, _ in safefs.walk(root, "e")] == ["f", "sub", "sub/g", "to-outside"]
    assert safefs.tree(root, "missing").bytes == 0


def test_walk_stops_at_max_depth_instead_of_exhausting_fds(root):
    deep = root.joinpath(*["d"] * (safefs.MAX_DEPTH + 5))
    deep.mkdir(parents=True)
    refused: list[str] = []
    found = list(safefs.walk(root, refused=refused))
    assert len(found) == safefs.MAX_DEPTH + 1 and refused and "deeper than" in refused[0]


def test_remove_deletes_a_link_as_the_link_and_a_tree_through_fds(root, outside):
    before = snapshot(outside)
    (root / "e" / "sub").mkdir(parents=True)
    (root / "e" / "sub" / "f").write_bytes(b"z" * 7)
    (root / "e" / "to-outside").symlink_to(outside)
    (root / "e" / "sub" / "to-file").symlink_to(outside / "secret.txt")
    (root / "top-link").symlink_to(outside)
    assert safefs.remove(root, "top-link").kept == [] and not (root / "top-link").is_symlink()
    removed = safefs.remove(root, "e")
    assert (removed.bytes, removed.kept) == (7, []) and not (root / "e").exists()
    assert snapshot(outside) == before
    assert safefs.remove(root, "e").bytes == 0  # already gone: nothing to do


@pytest.mark.skipif(os.geteuid() != 0, reason="handing a file to another uid needs root")
def test_remove_with_an_owner_leaves_what_others_own(root):
    (root / "e" / "theirs").mkdir(parents=True)
    (root / "e" / "mine.txt").write_text("m")
    (root / "e" / "theirs" / "f").write_text("t")
    os.chown(root / "e" / "theirs" / "f", 4321, 4321)
    removed = safefs.remove(root, "e", owner=os.geteuid())
    assert removed.kept == ["e/theirs/f: owned by uid 4321"]
    assert not (root / "e" / "mine.txt").exists() and (root / "e" / "theirs" / "f").read_text() == "t"


def test_writes_replace_a_planted_link_and_never_write_through_it(root, outside):
    (root / "rec.json").symlink_to(outside / "secret.txt")
    safefs.write_atomic(root, "rec.json", b"{}")
    assert (root / "rec.json").read_bytes() == b"{}" and not (root / "rec.json").is_symlink()
    assert (outside / "secret.txt").read_text() == "secret"
    (root / "new.txt").symlink_to(outside / "new.txt")
    with pytest.raises(FileExistsError):
        safefs.write_new(root, "new.txt", b"x")
    assert not (outside / "new.txt").exists()
    assert not [p for p in root.iterdir() if p.name.endswith(".tmp")]


def test_rename_moves_a_link_itself(root, outside):
    (root / "a").mkdir()
    (root / "b").mkdir()
    (root / "a" / "link").symlink_to(outside)
    safefs.rename(root, "a/link", "b/moved")
    assert (root / "b" / "moved").is_symlink() and (outside / "secret.txt").exists()
