"""Code snapshots in a group-shared store (finding 3): what a job imports is what was verified, and only a snapshot
the job's own user (or root) owns and no one else may write is verified at all.

The victim's job is a real process of the victim uid: it verifies its snapshot (`use_snapshot`, what every job
does first), then waits while the attacker acts, then imports the unit's code lazily, as a unit does minutes later.
"""

from __future__ import annotations

import os
import shutil
import stat
import uuid
from pathlib import Path

import pytest

from jobs.keys import code_digest, unit_key
from tests.integration.test_snapshot import make_project
from tests.security.conftest import Lab, User
from tests.security.test_share_attacks import Background, wait_for

MODULE = "pipeline.units.probe"


@pytest.fixture
def checkout(shared_store: Path) -> Path:
    """A checkout both users read (the lab's code) with the probe unit, whose value says which code ran."""
    project = make_project(shared_store.parent / "checkout")
    for p in [project, *project.rglob("*")]:
        os.chmod(p, 0o755 if p.is_dir() else 0o644)
    return project


@pytest.fixture
def signals(lab: Lab, shared_store: Path) -> Path:
    path = shared_store.parent / f"signals-{uuid.uuid4().hex[:6]}"
    path.mkdir()
    os.chmod(path, 0o777)
    return path


def job(lab: Lab, user: User, checkout: Path, store: Path, digest: str, signals: Path, write: bool = True) -> Background:
    """The victim's driver writes the snapshot (`write`), its job verifies it, says so, waits for `go`, then imports
    the unit's code and prints which value and file it ran."""
    return Background(lab, user, f"""
import pathlib, sys, time
from jobs.snapshot import use_snapshot, write_snapshot
if {write!r}:
    print("SNAPSHOT", write_snapshot({str(store)!r}, {MODULE!r}, {digest!r}, root={str(checkout)!r}))
print("USING", use_snapshot({str(store)!r}, {digest!r}))
sys.stdout.flush()
pathlib.Path({str(signals / "verified")!r}).touch()
while not pathlib.Path({str(signals / "go")!r}).exists():
    time.sleep(0.05)
import awd.probe_value
print("VALUE", awd.probe_value.VALUE, awd.probe_value.__file__)
""", env={"PYTHONPATH": str(checkout)}, cwd=checkout)


def lines(out: str, tag: str) -> list[str]:
    return [line.split(" ", 1)[1] for line in out.splitlines() if line.startswith(tag + " ")]


def snapshot_dirs(store: Path, digest: str) -> list[Path]:
    return sorted(p for p in (store / "_code").rglob(digest) if p.is_dir())


EVIL = """
import os, pathlib, shutil, stat
tried = []
def attempt(what, fn):
    try:
        fn()
        tried.append(what + ": done")
    except OSError as e:
        tried.append(what + ": " + type(e).__name__)
"""


def test_attack_snapshot_swapped_after_verification(lab, shared_store, checkout, signals):
    digest = code_digest(MODULE, root=checkout)
    victim = job(lab, lab.victim, checkout, shared_store, digest, signals)
    try:
        wait_for(signals / "verified", victim)
        [snap] = snapshot_dirs(shared_store, digest)
        # the attacker swaps the verified snapshot for one of their own under its name
        r = lab.python(lab.attacker, EVIL + f"""
snap = pathlib.Path({str(snap)!r})
evil = pathlib.Path({str(shared_store / ".evil")!r})
shutil.copytree(snap, evil)
for p in [evil, *evil.rglob("*")]:
    os.chmod(p, 0o755 if p.is_dir() else 0o644)
(evil / "awd" / "probe_value.py").write_text("VALUE = 'evil'\\n")
attempt("rename the snapshot away", lambda: os.rename(snap, snap.with_name(".old")))
attempt("put ours in its place", lambda: os.rename(evil, snap))
attempt("rewrite the file", lambda: (snap / "awd" / "probe_value.py").write_text("VALUE = 'evil'\\n"))
print("\\n".join(tried))
""")
        # and a swap that does succeed (as root here, the one who may): the job still runs the bytes it verified
        target = snap / "awd" / "probe_value.py"
        os.chmod(target, 0o644)
        target.write_text("VALUE = 'swapped'\n")
    finally:
        (signals / "go").touch()
    out = victim.join()
    assert out.returncode == 0, out.stderr
    value, file = lines(out.stdout, "VALUE")[0].split()
    assert value == "before", out.stdout
    assert file == str(snap / "awd" / "probe_value.py")
    assert r.returncode == 0 and len(r.stdout.splitlines()) == 3 and "done" not in r.stdout, r.stdout + r.stderr


def test_attack_snapshot_planted_by_other_member(lab, shared_store, checkout, signals):
    """The attacker writes the snapshot of the victim's digest first (the same code: it verifies), wherever a
    snapshot of that digest may be looked for, then edits it after the victim's job has verified it."""
    digest = code_digest(MODULE, root=checkout)
    planted = lab.python(lab.attacker, f"""
import os, shutil
from pathlib import Path
from jobs.snapshot import write_snapshot
mine = write_snapshot({str(shared_store)!r}, {MODULE!r}, {digest!r}, root={str(checkout)!r})
shared = Path({str(shared_store)!r}) / "_code" / {digest[:2]!r} / {digest!r}  # the layout before per-user dirs
if not shared.exists():
    shared.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(mine, shared)
print(mine)
""", env={"PYTHONPATH": str(checkout)}, cwd=checkout, check=True)
    victim = job(lab, lab.victim, checkout, shared_store, digest, signals)
    try:
        wait_for(signals / "verified", victim)
        lab.python(lab.attacker, f"""
import os
from pathlib import Path
for snap in Path({str(shared_store)!r}).joinpath("_code").rglob({digest!r}):
    if snap.owner() == "{lab.attacker.name}":
        for p in [snap, *snap.rglob("*")]:
            os.chmod(p, 0o755 if p.is_dir() else 0o644)
        (snap / "awd" / "probe_value.py").write_text("VALUE = 'evil'\\n")
""", check=True)
    finally:
        (signals / "go").touch()
    out = victim.join()
    assert out.returncode == 0, out.stderr
    assert lines(out.stdout, "VALUE")[0].split()[0] == "before", out.stdout
    used = Path(lines(out.stdout, "USING")[0])
    assert used.stat().st_uid == lab.victim.uid and used != Path(planted.stdout.strip())


def test_attack_snapshot_dir_group_writable(lab, shared_store, checkout):
    """Under the lab's umask 002 the victim's snapshot and the directories holding it are writable by the victim
    alone: the attacker can neither add a file (a .pyc Python would prefer), nor rename the snapshot away."""
    digest = code_digest(MODULE, root=checkout)
    r = lab.python(lab.victim, f"""
from jobs.snapshot import write_snapshot
print(write_snapshot({str(shared_store)!r}, {MODULE!r}, {digest!r}, root={str(checkout)!r}))
""", env={"PYTHONPATH": str(checkout)}, cwd=checkout, umask=0o002, check=True)
    snap = Path(r.stdout.strip())
    for p in [snap.parent, snap.parent.parent, snap, *snap.rglob("*")]:
        st = p.lstat()
        assert st.st_uid == lab.victim.uid and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH), (p, oct(st.st_mode))
    code_dir = shared_store / "_code"
    assert code_dir.stat().st_mode & stat.S_ISVTX  # members share it: only a directory's owner may rename it
    a = lab.python(lab.attacker, EVIL + f"""
snap = pathlib.Path({str(snap)!r})
attempt("add a pyc", lambda: (snap / "awd" / "__pycache__").mkdir())
attempt("rename the snapshot", lambda: os.rename(snap, snap.with_name(".old")))
attempt("add a sibling", lambda: (snap.parent / "x").mkdir())
attempt("rename the user's directory", lambda: os.rename(snap.parent.parent, snap.parent.parent.with_name("x")))
print("\\n".join(tried))
""")
    assert a.stdout.count("PermissionError") == 4, a.stdout + a.stderr
    key = unit_key("probe", {}, digest)
    run = lab.python(lab.victim, f"""
import json
from jobs.job import Unit, execute_units
from jobs.store import RunStore
execute_units({str(shared_store)!r}, [Unit("probe", {key!r}, "pipeline.units.probe:probe_unit", {{}}, code={digest!r})])
print(json.dumps(RunStore({str(shared_store)!r}).result("probe", {key!r})))
""", env={"PYTHONPATH": str(checkout)}, cwd=checkout, check=True)
    assert '"value": "before"' in run.stdout, run.stdout


def test_attack_snapshot_dir_squatted_by_other_member(lab, shared_store, checkout):
    """The attacker makes the victim's per-user directory before the victim does: the victim refuses to write or
    run code from it, with the owner named, and nothing of it runs."""
    digest = code_digest(MODULE, root=checkout)
    lab.python(lab.attacker, f"""
import os
os.makedirs({str(shared_store / "_code")!r}, exist_ok=True)
os.mkdir({str(shared_store / "_code" / f"u{lab.victim.uid}")!r}, 0o777)
""", umask=0o000, check=True)
    r = lab.python(lab.victim, f"""
from jobs.snapshot import SnapshotError, write_snapshot
try:
    write_snapshot({str(shared_store)!r}, {MODULE!r}, {digest!r}, root={str(checkout)!r})
except SnapshotError as e:
    print("refused:", e)
""", env={"PYTHONPATH": str(checkout)}, cwd=checkout, check=True)
    assert f"is owned by uid {lab.attacker.uid}, not by you (uid {lab.victim.uid})" in r.stdout, r.stdout + r.stderr
    assert not any((shared_store / "_code" / f"u{lab.victim.uid}").iterdir())


def test_lab_members_each_run_their_own_snapshot_of_the_same_code(lab, shared_store, checkout):
    """Sharing keeps working: two members run units of the same code in the lab's store, each from their own
    snapshot (the cost: one copy of the code per member), and each reuses the other's results."""
    digest = code_digest(MODULE, root=checkout)
    snaps = {}
    for user, config in ((lab.victim, {"seed": 1}), (lab.attacker, {"seed": 2})):
        key = unit_key("probe", config, digest)
        r = lab.python(user, f"""
import json
from jobs.job import Unit, execute_units
from jobs.snapshot import write_snapshot
from jobs.store import RunStore
print(write_snapshot({str(shared_store)!r}, {MODULE!r}, {digest!r}, root={str(checkout)!r}))
execute_units({str(shared_store)!r}, [Unit("probe", {key!r}, "pipeline.units.probe:probe_unit", {config!r},
                                            code={digest!r})])
print(json.dumps(RunStore({str(shared_store)!r}).result("probe", {key!r})))
""", env={"PYTHONPATH": str(checkout)}, cwd=checkout, check=True)
        snaps[user.uid] = Path(r.stdout.splitlines()[0])
        assert '"value": "before"' in r.stdout
    assert snaps[lab.victim.uid] != snaps[lab.attacker.uid]
    assert {uid: p.stat().st_uid for uid, p in snaps.items()} == {uid: uid for uid in snaps}
    for user, other in ((lab.victim, {"seed": 2}), (lab.attacker, {"seed": 1})):
        r = lab.python(user, f"""
from jobs.store import RunStore
print(RunStore({str(shared_store)!r}).result("probe", {unit_key("probe", other, digest)!r}))
""", env={"PYTHONPATH": str(checkout)}, cwd=checkout, check=True)
        assert "'value': 'before'" in r.stdout
    shutil.rmtree(shared_store / "_code", ignore_errors=True)
