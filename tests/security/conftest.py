"""Two real users in one group sharing a store the way the README recommends to a lab (setgid directory, group
writable, umask 002): the setting of the attack suite (docs/threat-model.md).

Every test under tests/security/ is marked `security`. Creating users needs root; without root the tests skip,
unless AWD_REQUIRE_ROOT=1 (CI sets it), in which case the absence is a failure.
"""

from __future__ import annotations

import fcntl
import grp
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import typing as tp
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LAB = ("awdlab", 4242)
USERS = {"victim": 5001, "attacker": 5002}


def pytest_collection_modifyitems(config, items):
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.security)


@dataclass(frozen=True)
class User:
    name: str
    uid: int
    gid: int
    home: Path


@dataclass(frozen=True)
class Lab:
    victim: User
    attacker: User
    gid: int

    def run(self, user: User, argv: tp.Sequence[str], *, umask: int = 0o002, env: dict[str, str] | None = None,
            timeout: float = 120, check: bool = False, cwd: str | Path | None = None) -> subprocess.CompletedProcess:
        """Runs argv as `user` (real and effective ids, the lab group only, a clean environment, this umask)."""
        extra = {"HOME": str(user.home), "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
                 "OMP_NUM_THREADS": "1", **(env or {})}
        cmd = ["setpriv", f"--reuid={user.uid}", f"--regid={self.gid}", "--init-groups", "--reset-env", "--",
               "env", *[f"{k}={v}" for k, v in extra.items()],
               "sh", "-c", f'umask {umask:03o} && cd "${{AWD_CWD:-$HOME}}" && exec "$@"', "sh", *argv]
        if cwd is not None:
            cmd.insert(cmd.index("env") + 1, f"AWD_CWD={cwd}")
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if check and r.returncode != 0:
            raise AssertionError(f"{user.name}: {' '.join(argv)} exited {r.returncode}\n{r.stdout}\n{r.stderr}")
        return r

    def python(self, user: User, code: str, **kw: tp.Any) -> subprocess.CompletedProcess:
        """Runs Python code as `user` with the project's interpreter (the venv both users can read)."""
        return self.run(user, [sys.executable, "-c", code], **kw)


def _ensure_users() -> Lab:
    # pytest-xdist workers run this at once on a fresh machine: one creates the group and users, the others wait
    with open("/tmp/awd-security-users.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _ensure_users_locked()


def _ensure_users_locked() -> Lab:
    name, gid = LAB
    try:
        grp.getgrgid(gid)
    except KeyError:
        subprocess.run(["groupadd", "-g", str(gid), name], check=True, capture_output=True)
    users = {}
    for user, uid in USERS.items():
        try:
            pw = pwd.getpwuid(uid)
        except KeyError:
            subprocess.run(["useradd", "-u", str(uid), "-g", str(gid), "-m", f"awd{user}"], check=True,
                           capture_output=True)
            pw = pwd.getpwuid(uid)
        users[user] = User(pw.pw_name, uid, gid, Path(pw.pw_dir))
    return Lab(users["victim"], users["attacker"], gid)


def _reachable_for_others(paths: tp.Iterable[Path]) -> list[tuple[Path, int]]:
    """Grants search (x, never read or list) to others on each ancestor of `paths` that lacks it (e.g. /root when
    the interpreter lives under pyenv there), so the two users can run the venv. It is left in place: concurrent
    test sessions share these directories, and restoring from one would break the others mid-test."""
    changed: list[tuple[Path, int]] = []
    for path in paths:
        for d in [*reversed(path.parents)]:
            mode = d.stat().st_mode
            if not mode & 0o001:
                os.chmod(d, (mode & 0o7777) | 0o001)
                changed.append((d, mode & 0o7777))
    return changed


@pytest.fixture(scope="session")
def lab() -> Lab:
    if os.geteuid() != 0:
        if os.environ.get("AWD_REQUIRE_ROOT") == "1":
            pytest.fail("the attack suite needs root (useradd, setpriv) and AWD_REQUIRE_ROOT=1 is set")
        pytest.skip("the attack suite needs root (useradd, setpriv)")
    if shutil.which("setpriv") is None or shutil.which("useradd") is None:
        pytest.fail("setpriv and useradd (util-linux, passwd) are needed for the attack suite")
    lab = _ensure_users()
    _reachable_for_others([Path(os.path.realpath(sys.executable)), Path(sys.executable), REPO / "x"])
    return lab


@pytest.fixture
def shared_store(lab: Lab) -> tp.Iterator[Path]:
    """A fresh group-shared store (setgid, group-writable) that both users can reach, removed afterwards."""
    outer = Path(tempfile.mkdtemp(prefix="awd-lab-", dir="/var/tmp"))
    os.chmod(outer, 0o755)
    store = outer / "store"
    store.mkdir()
    os.chown(store, 0, lab.gid)
    os.chmod(store, 0o2775)
    try:
        yield store
    finally:
        shutil.rmtree(outer, ignore_errors=True)


@pytest.fixture
def victim_home_canary(lab: Lab) -> tp.Iterator[Path]:
    """A file in the victim's home that no attack may remove or change; the test checks it afterwards. Named per test:
    tests in other xdist workers hold canaries of their own in the same home."""
    canary = lab.victim.home / f"canary-{uuid.uuid4().hex[:8]}.txt"
    canary.write_text("precious\n")
    os.chown(canary, lab.victim.uid, lab.gid)
    yield canary
    canary.unlink(missing_ok=True)
