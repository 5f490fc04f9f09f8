"""`dvc repro` that resumes unattended after its previous run was killed: the entry point of `make repro` and of the
driver job script (scripts/driver.sbatch).

    python -m pipeline.repro [dvc repro arguments]

DVC records the processes holding its stage lock in `.dvc/tmp/rwlock` as (pid, command) only. It drops entries whose
pid no longer exists, but a pid that was reused (a reboot, a new batch job, a container) keeps blocking every later
repro ("is busy, it is being blocked by: (PID ...)") until someone deletes the file. This launcher records which
host and process it started (`.dvc/tmp/awd-driver.json`), and before the next run clears the lock when every process
it lists is one this launcher started on this host and that is gone (pid absent, or reused by a process with another
start time). A lock held by a live process, written by another host, or by a dvc this launcher did not start is
never touched.

Before DVC runs, the run store is checked against the unit lists of the last repro (`pipeline.pending.check`,
0.07 ms an entry): DVC hashes no file of the store, so an entry deleted, quarantined or never pulled since is
noted on its stage's `pending/<stage>.txt`, which DVC then sees as a changed dependency and runs again.
"""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import subprocess
import sys
import typing as tp
from pathlib import Path

import psutil

RWLOCK = Path(".dvc") / "tmp" / "rwlock"
OWNER = Path(".dvc") / "tmp" / "awd-driver.json"


def _lock_pids(lock: dict) -> set[int]:
    pids = {int(info["pid"]) for info in (lock.get("write") or {}).values()}
    pids |= {int(info["pid"]) for infos in (lock.get("read") or {}).values() for info in infos}
    return pids


def _gone(pid: int, started: float) -> bool:
    try:
        return abs(psutil.Process(pid).create_time() - started) > 1.0  # alive, but a different process
    except psutil.NoSuchProcess:
        return True


def stale_lock(root: Path = Path(".")) -> str | None:
    """Why `.dvc/tmp/rwlock` under `root` may be removed, or None when it is absent, empty or possibly live."""
    try:
        lock = json.loads((root / RWLOCK).read_text())
    except (FileNotFoundError, ValueError):
        return None
    pids = _lock_pids(lock)
    if not pids:
        return None
    try:
        owner = json.loads((root / OWNER).read_text())
    except (FileNotFoundError, ValueError):
        return None  # not written by a dvc we started: we cannot tell its host
    if owner.get("host") != socket.gethostname():
        return None
    started = {int(p["pid"]): float(p["started"]) for p in owner.get("processes", [])}
    if not pids <= set(started):
        return None
    if not all(_gone(pid, started[pid]) for pid in pids):
        return None
    return (f"PID {', '.join(map(str, sorted(pids)))} ({owner.get('cmd', 'dvc')}) started on this host "
            f"({owner['host']}) at {owner.get('at', '?')} is no longer running")


def clear_stale_lock(root: Path = Path("."), say: tp.Callable[[str], None] = print) -> bool:
    reason = stale_lock(root)
    if reason is None:
        return False
    with contextlib.suppress(FileNotFoundError):
        (root / RWLOCK).unlink()
    say(f"cleared DVC's stale lock {root / RWLOCK}: {reason}")
    return True


def _record(root: Path, process: psutil.Process, cmd: tp.Sequence[str]) -> None:
    from jobs.atomic import atomic_write_json

    atomic_write_json(root / OWNER, {
        "host": socket.gethostname(), "cmd": " ".join(cmd), "at": process.create_time(),
        "processes": [{"pid": process.pid, "started": process.create_time()}],
    })


def check_store(root: Path, say: tp.Callable[[str], None]) -> None:
    """Notes the stages whose promised entries the run store lacks (a project checkout only: pending/ exists)."""
    from pipeline import pending

    if (root / pending.MARKS).is_dir():
        pending.check(root, say=say)


def main(argv: tp.Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    root = Path(".")
    say = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    clear_stale_lock(root, say=say)
    check_store(root, say)
    cmd = ["dvc", "repro", *args]
    child = subprocess.Popen(cmd)
    with contextlib.suppress(psutil.NoSuchProcess):
        _record(root, psutil.Process(child.pid), cmd)
    # Ctrl-C reaches dvc through the terminal's process group; a SIGTERM (scancel, time limit) is passed on
    signal.signal(signal.SIGTERM, lambda signum, frame: child.send_signal(signum))
    while True:
        try:
            return child.wait()
        except KeyboardInterrupt:
            continue  # dvc got it too: wait for it to stop


if __name__ == "__main__":
    sys.exit(main())
