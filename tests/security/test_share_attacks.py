"""`awd-bench store push|pull` between a member's store and a group-shared one (findings 2, 10, 11).

Each attack is performed as the attacker uid on the shared directory, then the victim's copy runs as the victim uid
(jobs.share.copy_entries with the liveness check `store push|pull` passes); the test asserts the attack failed and
the victim's files are intact. The last tests check that what a lab shares keeps working.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import threading
import time
import typing as tp
import uuid
from pathlib import Path

import pytest

from tests.security.conftest import REPO, Lab, User

ENV = {"PYTHONPATH": str(REPO)}
KEY = "ab" + "12" * 31
OTHER_KEY = "cd" + "34" * 31


def commit_entry(lab: Lab, user: User, store: Path, key: str, files: dict[str, str], kind: str = "train",
                 umask: int = 0o002) -> None:
    """A done entry committed by `user` through the run store, as their job would."""
    lab.python(user, f"""
from jobs.store import RunStore
store = RunStore({str(store)!r})
work = store.workdir({kind!r}, {key!r})
for rel, text in {files!r}.items():
    (work / rel).parent.mkdir(parents=True, exist_ok=True)
    (work / rel).write_text(text)
store.commit({kind!r}, {key!r}, {{"acc": 0.5}})
""", env=ENV, umask=umask, check=True)


def copy(lab: Lab, user: User, src: Path, dest: Path, keys: list[tuple[str, str]], umask: int = 0o002,
         live_check: bool = True) -> dict:
    """`store push|pull` as `user`: the Transfer, as a dict."""
    r = lab.python(user, f"""
import dataclasses, json
from jobs.gc import live_reason
from jobs.share import copy_entries
from jobs.store import RunStore
live = (lambda s, kind, key: live_reason(s, kind, key)) if {live_check!r} else (lambda s, kind, key: "")
out = copy_entries(RunStore({str(src)!r}), RunStore({str(dest)!r}), {keys!r}, is_live=live)
print(json.dumps(dataclasses.asdict(out)))
""", env=ENV, umask=umask, check=True)
    return json.loads(r.stdout.strip().splitlines()[-1])


def own_dir(lab: Lab, user: User, path: Path, mode: int = 0o755) -> Path:
    lab.python(user, f"import os; os.makedirs({str(path)!r}, {mode!r})", check=True)
    return path


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def entry_dir(store: Path, key: str, kind: str = "train") -> Path:
    return store / kind / key[:2] / key


def traversal(reader_entry: Path, writer_parent: Path, target: Path, shared: Path) -> tuple[str, Path]:
    """A manifest name that, joined to the writer's temporary copy directory in `writer_parent`, lands on `target`,
    and where the same name joined to `reader_entry` lands (in `shared`, where the attacker can put the bytes, so
    that a copier that checks sha256 but not names copies them)."""
    depth = len((writer_parent / ".tmp").parts) - 1
    rel = "../" * depth + str(target).lstrip("/")
    source = Path(os.path.normpath(reader_entry / rel))
    assert shared in source.parents, (source, shared)
    return rel, source


def plant_entry(lab: Lab, attacker: User, store: Path, key: str, extra: dict[str, bytes],
                source_files: dict[Path, bytes], kind: str = "train", manifest_kind: str | None = None,
                manifest_key: str | None = None) -> None:
    """As the attacker: a committed-looking entry in a store they can write, whose manifest lists `extra` names
    (with the right sha256 of their bytes), the bytes put wherever `source_files` says."""
    result = b'{"acc": 0.99}\n'
    files = {"result.json": {"size": len(result), "sha256": sha(result), "mtime_ns": 1}}
    files.update({rel: {"size": len(data), "sha256": sha(data), "mtime_ns": 1} for rel, data in extra.items()})
    manifest = {"kind": manifest_kind or kind, "key": manifest_key or key, "meta": {}, "files": files,
                "dropped": {}}
    entry = entry_dir(store, key, kind)
    writes = {entry / "result.json": result, entry / "manifest.json": json.dumps(manifest).encode(),
              **source_files}
    lab.python(attacker, f"""
from pathlib import Path
for path, data in {[(str(p), d) for p, d in writes.items()]!r}:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_bytes(data)
""", check=True)


@pytest.fixture
def victim_site(lab: Lab) -> tp.Iterator[Path]:
    """A site-packages directory the victim owns (a venv's): a .pth file in it runs at every Python start."""
    venv = lab.victim.home / f"venv-{uuid.uuid4().hex[:6]}"
    site = own_dir(lab, lab.victim, venv / "lib" / "python3.11" / "site-packages")
    yield site
    lab.run(lab.victim, ["rm", "-rf", str(venv)])


@pytest.fixture
def victim_store(lab: Lab) -> tp.Iterator[Path]:
    store = own_dir(lab, lab.victim, lab.victim.home / f"runs-{uuid.uuid4().hex[:6]}")
    yield store
    lab.run(lab.victim, ["rm", "-rf", str(store)])


def payload(marker: Path) -> bytes:
    return f"import pathlib; pathlib.Path({str(marker)!r}).write_text('ran')\n".encode()


def assert_nothing_ran(lab: Lab, site: Path, marker: Path) -> None:
    assert not (site / "evil.pth").exists() and not list(site.iterdir()), list(site.iterdir())
    r = lab.python(lab.victim, f"import site; site.addsitedir({str(site)!r}); print('started')", check=True)
    assert "started" in r.stdout
    assert not marker.exists(), "the planted .pth ran as the victim"


def test_attack_pull_manifest_path_traversal(lab, shared_store, victim_store, victim_site, victim_home_canary):
    # the shared remote, as deep below the group-writable directory as the victim's store is below /
    remote = own_dir(lab, lab.attacker, shared_store.joinpath(*["r"] * (len(victim_store.parts) - 1)), 0o2775)
    marker = shared_store / "pwned"
    rel, source = traversal(entry_dir(remote, KEY), entry_dir(victim_store, KEY).parent,
                            victim_site / "evil.pth", shared_store)
    plant_entry(lab, lab.attacker, remote, KEY, {rel: payload(marker)}, {source: payload(marker)})

    out = copy(lab, lab.victim, remote, victim_store, [("train", KEY)])

    assert_nothing_ran(lab, victim_site, marker)
    assert out["copied"] == [] and len(out["refused"]) == 1, out
    assert "is refused; allowed: a normalised relative POSIX name" in out["refused"][0][2], out
    assert not entry_dir(victim_store, KEY).exists()
    parent = entry_dir(victim_store, KEY).parent
    assert not parent.exists() or list(parent.iterdir()) == []  # no temporary left behind
    assert victim_home_canary.read_text() == "precious\n"


def test_attack_push_manifest_path_traversal(lab, shared_store, victim_site, victim_home_canary):
    # the victim's remote (where only the victim writes), and the lab's store where the victim's entry lies: as
    # deep below the group-writable directory as the remote is below /
    remote = own_dir(lab, lab.victim, lab.victim.home / f"remote-{uuid.uuid4().hex[:6]}")
    local = own_dir(lab, lab.attacker, shared_store.joinpath(*["l"] * (len(remote.parts) - 1)), 0o2775)
    commit_entry(lab, lab.victim, local, KEY, {"model.pt": "weights"})
    marker = shared_store / "pwned"
    rel, source = traversal(entry_dir(local, KEY), entry_dir(remote, KEY).parent, victim_site / "evil.pth",
                            shared_store)
    # the attacker rewrites the victim's manifest (group-writable in a shared store) to list one more name
    manifest = json.loads((entry_dir(local, KEY) / "manifest.json").read_text())
    manifest["files"][rel] = {"size": len(payload(marker)), "sha256": sha(payload(marker)), "mtime_ns": 1}
    plant = {entry_dir(local, KEY) / "manifest.json": json.dumps(manifest).encode(), source: payload(marker)}
    lab.python(lab.attacker, f"""
import os
from pathlib import Path
for path, data in {[(str(p), d) for p, d in plant.items()]!r}:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(path).with_name(".x")
    tmp.write_bytes(data)
    os.replace(tmp, path)
""", check=True)

    out = copy(lab, lab.victim, local, remote, [("train", KEY)])

    assert_nothing_ran(lab, victim_site, marker)
    assert out["copied"] == [] and len(out["refused"]) == 1, out
    assert "is refused; allowed: a normalised relative POSIX name" in out["refused"][0][2], out
    assert not entry_dir(remote, KEY).exists()
    assert victim_home_canary.read_text() == "precious\n"
    lab.run(lab.victim, ["rm", "-rf", str(remote)])


def test_attack_push_follows_symlink_in_remote(lab, shared_store, victim_site, victim_home_canary):
    """The shared remote's `train/ab` replaced by a link to a directory of the victim's: the push writes nothing
    there."""
    local = own_dir(lab, lab.victim, lab.victim.home / f"runs-{uuid.uuid4().hex[:6]}")
    commit_entry(lab, lab.victim, local, KEY, {"model.pt": "weights"}, umask=0o022)
    remote = own_dir(lab, lab.attacker, shared_store / "remote", 0o2775)
    lab.python(lab.attacker, f"""
import os
os.makedirs({str(remote / "train")!r})
os.symlink({str(victim_site)!r}, {str(remote / "train" / KEY[:2])!r})
""", check=True)

    out = copy(lab, lab.victim, local, remote, [("train", KEY)])

    assert out["copied"] == [] and "a symbolic link or not a directory; not followed" in out["refused"][0][2], out
    assert list(victim_site.iterdir()) == []
    assert victim_home_canary.read_text() == "precious\n"
    lab.run(lab.victim, ["rm", "-rf", str(local)])


@pytest.mark.parametrize("forged", ["key", "kind"])
def test_attack_pull_wrong_kind_or_key(lab, shared_store, victim_store, forged):
    """Another entry (the attacker's, or one of another kind) put under the key the victim pulls: its manifest
    verifies, but it is not the entry that key names."""
    remote = own_dir(lab, lab.attacker, shared_store / "remote", 0o2775)
    if forged == "key":  # a whole committed entry of another key, moved under the victim's key
        commit_entry(lab, lab.attacker, remote, OTHER_KEY, {"model.pt": "the attacker's model"})
        lab.run(lab.attacker, ["mkdir", "-p", str(entry_dir(remote, KEY).parent)], check=True)
        lab.run(lab.attacker, ["mv", str(entry_dir(remote, OTHER_KEY)), str(entry_dir(remote, KEY))], check=True)
    else:  # a prune entry placed where a training run belongs
        commit_entry(lab, lab.attacker, remote, KEY, {"model.pt": "the attacker's model"}, kind="prune")
        lab.run(lab.attacker, ["mkdir", "-p", str(remote / "train" / KEY[:2])], check=True)
        lab.run(lab.attacker, ["mv", str(entry_dir(remote, KEY, "prune")), str(entry_dir(remote, KEY))], check=True)

    out = copy(lab, lab.victim, remote, victim_store, [("train", KEY)])

    want = f"train/{OTHER_KEY}" if forged == "key" else f"prune/{KEY}"
    assert out["copied"] == [] and len(out["refused"]) == 1, out
    assert f"is the manifest of {want}, not of the requested train/{KEY}" in out["refused"][0][2], out
    assert not entry_dir(victim_store, KEY).exists()


class Background:
    """A process of `user` that runs `code` in a thread; the test waits on files it touches."""

    def __init__(self, lab: Lab, user: User, code: str, **kw: tp.Any):
        self.result: tp.Any = None
        self.thread = threading.Thread(target=lambda: setattr(self, "result", lab.python(user, code, **kw)))
        self.thread.start()

    def join(self) -> tp.Any:
        self.thread.join(timeout=180)
        return self.result


def wait_for(path: Path, bg: Background) -> None:
    deadline = time.monotonic() + 120  # a generous bound on a hung process, not a measurement
    while not path.exists():
        assert bg.thread.is_alive() or path.exists(), bg.result
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def test_pull_replaces_under_run_lock(lab, shared_store, victim_store):
    """The victim's own unfinished entry, whose run lock the victim's job holds: a pull (the liveness check left
    out, as if the job started after it) does not replace it; once the job lets go, it does, leaving nothing
    behind but the copy."""
    remote = own_dir(lab, lab.attacker, shared_store / "remote", 0o2775)
    commit_entry(lab, lab.attacker, remote, KEY, {"model.pt": "a lab member's model", "sub/history.json": "[]"})
    signals = own_dir(lab, lab.victim, lab.victim.home / f"signals-{uuid.uuid4().hex[:6]}")
    job = Background(lab, lab.victim, f"""
import pathlib, time
from jobs.store import RunStore
store = RunStore({str(victim_store)!r})
(store.workdir("train", {KEY!r}) / "partial.pt").write_text("half-trained")
lock = store.run_lock("train", {KEY!r})
lock.acquire(timeout=0)
pathlib.Path({str(signals / "locked")!r}).touch()
while not pathlib.Path({str(signals / "release")!r}).exists():
    time.sleep(0.05)
lock.release()
""", env=ENV, umask=0o022)
    try:
        wait_for(signals / "locked", job)
        held = copy(lab, lab.victim, remote, victim_store, [("train", KEY)], live_check=False)
        assert held["copied"] == [] and "is held by a job (its run lock): not replaced" in held["refused"][0][2]
        assert (entry_dir(victim_store, KEY) / "partial.pt").read_text() == "half-trained"
        assert not (entry_dir(victim_store, KEY) / "manifest.json").exists()
    finally:
        (signals / "release").touch()
        assert job.join().returncode == 0, job.result.stderr
    out = copy(lab, lab.victim, remote, victim_store, [("train", KEY)])
    assert out["copied"] == [["train", KEY]], out
    entry = entry_dir(victim_store, KEY)
    assert sorted(p.relative_to(entry).as_posix() for p in entry.rglob("*")) == \
        ["manifest.json", "model.pt", "result.json", "sub", "sub/history.json"]
    assert [p.name for p in entry.parent.iterdir()] == [KEY]  # no .incoming or .replaced left
    lab.run(lab.victim, ["rm", "-rf", str(signals)])


def test_lab_member_pulls_and_pushes_another_members_entries(lab, shared_store, victim_store):
    """What sharing is for: a member pushes to the lab's remote, another pulls into their own store (umask 022),
    both see each other's entries as present afterwards, and an entry in the lab's shared store is reused."""
    other = lab.attacker  # here simply another member of the lab
    remote = own_dir(lab, other, shared_store / "remote", 0o2775)
    theirs = own_dir(lab, other, other.home / f"runs-{uuid.uuid4().hex[:6]}")
    commit_entry(lab, other, theirs, KEY, {"model.pt": "their model", "sub/history.json": "[1]"})
    pushed = copy(lab, other, theirs, remote, [("train", KEY)])
    assert pushed["copied"] == [["train", KEY]], pushed

    pulled = copy(lab, lab.victim, remote, victim_store, [("train", KEY)], umask=0o022)
    assert pulled["copied"] == [["train", KEY]] and pulled["refused"] == [], pulled
    entry = entry_dir(victim_store, KEY)
    assert (entry / "model.pt").read_text() == "their model"
    for p in [entry, *entry.rglob("*")]:
        st = p.stat()
        assert st.st_uid == lab.victim.uid and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH), p
    done = lab.python(lab.victim, f"from jobs.store import RunStore; print(RunStore({str(victim_store)!r})"
                      f".is_done('train', {KEY!r}, verify=True))", env=ENV, check=True)
    assert done.stdout.strip() == "True"
    assert copy(lab, lab.victim, remote, victim_store, [("train", KEY)])["present"] == [["train", KEY]]
    # the victim's push of the same entry finds it there; so does the other member's next pull
    assert copy(lab, lab.victim, victim_store, remote, [("train", KEY)])["present"] == [["train", KEY]]
    assert copy(lab, other, remote, theirs, [("train", KEY)])["present"] == [["train", KEY]]
    # one store for the lab: the other member's entry is there already for the victim's pull into it
    commit_entry(lab, other, shared_store, OTHER_KEY, {"model.pt": "theirs"})
    assert copy(lab, other, shared_store, remote, [("train", OTHER_KEY)])["copied"] == [["train", OTHER_KEY]]
    assert copy(lab, lab.victim, remote, shared_store, [("train", OTHER_KEY)])["present"] == [["train", OTHER_KEY]]
    lab.run(other, ["rm", "-rf", str(theirs)])


def test_pull_never_replaces_another_members_unfinished_entry(lab, shared_store):
    """In the lab's store, an unfinished entry another member is working on (no job visible to us) stays theirs."""
    remote = own_dir(lab, lab.victim, lab.victim.home / f"remote-{uuid.uuid4().hex[:6]}")
    commit_entry(lab, lab.victim, remote, KEY, {"model.pt": "the victim's model"})
    lab.python(lab.attacker, f"""
from jobs.store import RunStore
(RunStore({str(shared_store)!r}).workdir("train", {KEY!r}) / "partial.pt").write_text("theirs")
""", env=ENV, check=True)

    out = copy(lab, lab.victim, remote, shared_store, [("train", KEY)])

    assert out["copied"] == [] and f"is an entry of uid {lab.attacker.uid}, not yours" in out["refused"][0][2], out
    assert (entry_dir(shared_store, KEY) / "partial.pt").read_text() == "theirs"
    assert [p.name for p in entry_dir(shared_store, KEY).parent.iterdir()] == [KEY]
    lab.run(lab.victim, ["rm", "-rf", str(remote)])
