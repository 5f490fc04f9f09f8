"""Faults of the cluster or the store that outlast a poll, and what the driver says about them: one line when a fault
starts and one when it ends, never a line per failed call.

- The controller does not answer (slurmctld restarted or down): sbatch fails meanwhile. The driver waits for it
  without a deadline, keeps every job it tracks, and submits again once `scontrol ping` says UP.
- The accounting database does not answer (slurmdbd down): sacct fails; jobs/liveness.py reads job states from
  squeue and the store's heartbeats meanwhile, so no job is taken for lost for want of an sacct row.
- The run store's filesystem is full (or the user's quota spent): jobs fail with ENOSPC/EDQUOT. Retrying can only
  fail the same way, so the driver stops submitting, lets the running jobs end, and stops with `StoreFull`, which
  says how much space the units that are left need; a plain rerun after space is freed finishes them.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import time
import typing as tp
from pathlib import Path

from jobs.store import StoreError

# what a job's error, its log or an OSError says when the filesystem (or the quota) is full
DISK_FULL_RE = re.compile(r"No space left on device|\[Errno 28\]|\bENOSPC\b|Disk quota exceeded|\[Errno 122\]|"
                          r"\bEDQUOT\b", re.I)
FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
FULL_BELOW_BYTES = 1 << 20  # less free space than this on the store's filesystem: a failed job is taken as full


class StoreFull(StoreError):
    """The run store's filesystem is full: nothing more is submitted; free space and rerun."""


def is_full_error(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in FULL_ERRNOS


def says_full(*texts: str | None) -> bool:
    return any(t and DISK_FULL_RE.search(t) for t in texts)


def free_bytes(root: str | Path) -> int | None:
    try:
        return shutil.disk_usage(root).free
    except OSError:
        return None


def tree_bytes(path: str | Path) -> int:
    """Bytes of the regular files under `path` (0 if it is gone)."""
    total = 0
    for folder, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(folder, name)).st_size
            except OSError:
                continue
    return total


class StoreSpace:
    """Whether the store is full, and how much the units left need: per unit kind, the bytes a committed entry held
    (its files and the resume files it dropped: a run needs both at its peak), measured on the entries this driver
    saw committed; a kind none of whose units committed yet counts what its failed units had written (a floor)."""

    def __init__(self, root: str | Path, free: tp.Callable[[str | Path], int | None] = free_bytes) -> None:
        self.root, self.free = Path(root), free
        self.sizes: dict[str, list[int]] = {}
        self.partial: dict[str, int] = {}  # kind -> most bytes a failed unit of it had written
        self.blocked: dict[str, str] = {}  # unit key -> kind: units stopped because the store is full

    @property
    def full(self) -> bool:
        return bool(self.blocked)

    def committed(self, unit: tp.Any, store: tp.Any) -> None:
        """Notes the size of a unit this driver saw committed (`store.manifest(kind, key)`)."""
        manifest = store.manifest(unit.kind, unit.key)
        if manifest:
            files = [*(manifest.get("files") or {}).values(), *(manifest.get("dropped") or {}).values()]
            self.sizes.setdefault(unit.kind, []).append(
                sum(int(f.get("size", 0)) for f in files if isinstance(f, dict)))

    def explains(self, *texts: str | None) -> bool:
        """Whether a failure with these texts (its error, error.txt, log tail) comes from a full store."""
        if says_full(*texts):
            return True
        free = self.free(self.root)
        return free is not None and free < FULL_BELOW_BYTES

    def block(self, kind: str, key: str, workdir: str | Path | None = None) -> bool:
        """Counts the unit among those the full store stopped; True the first time (the caller says so once)."""
        first = not self.blocked
        self.blocked[key] = kind
        if workdir is not None:
            self.partial[kind] = max(self.partial.get(kind, 0), tree_bytes(workdir))
        return first

    def message(self, kinds: tp.Iterable[str]) -> str:
        """`the run store <path> is full: N units need about X MB more; free space and rerun` for units of `kinds`
        (one entry per unit left)."""
        kinds = list(kinds)
        need, floor = 0, False
        for kind in kinds:
            sizes = self.sizes.get(kind)
            if sizes:
                need += sum(sizes) // len(sizes)
            else:
                need, floor = need + self.partial.get(kind, 0), True
        amount = f"{'at least' if floor else 'about'} {max(1, -(-need // (1 << 20)))} MB"
        free = self.free(self.root)
        have = f" ({free / (1 << 20):.1f} MB free now)" if free is not None else ""
        return (f"the run store {self.root} is full{have}: {len(kinds)} units need {amount} more; free space and "
                "rerun (the jobs still running were left to finish; nothing more is submitted)")


class Outage:
    """One fault that lasts (`what`: 'slurmctld unreachable'): `start` says it once, `end` says it is over."""

    def __init__(self, what: str, now: tp.Callable[[], float] = time.time) -> None:
        self.what, self.now = what, now
        self.since: float | None = None

    def start(self, detail: str = "") -> str | None:
        if self.since is not None:
            return None
        self.since = self.now()
        return f"{self.what} since {time.strftime('%H:%M:%S', time.localtime(self.since))}" + (
            f" ({detail})" if detail else "")

    def end(self, back: str) -> str | None:
        if self.since is None:
            return None
        lasted, self.since = self.now() - self.since, None
        return f"{back} after {lasted:.0f}s"


class Faults:
    """What a driver says about the lasting faults of the scheduler, once each: the controller (asked through the
    backend's `controller_up`, i.e. `scontrol ping`) and the accounting database (what the job watch saw of sacct)."""

    def __init__(self, controller_up: tp.Callable[[], bool], say: tp.Callable[[str], object],
                 now: tp.Callable[[], float] = time.time) -> None:
        self.controller_up, self.say = controller_up, say
        self.ctld = Outage("slurmctld unreachable", now)
        self.dbd = Outage("slurmdbd (accounting) unreachable: sacct fails", now)

    def controller_down(self, error: object, running: str) -> bool:
        """A submission failed: True when the controller does not answer (said once, with what keeps running); the
        driver then waits for it without a deadline instead of backing off toward giving up."""
        if self.ctld.since is None and self.controller_up():
            return False
        if line := self.ctld.start(str(error).rsplit(": ", 1)[-1]):
            self.say(f"{line}; waiting ({running} keep running); submitting again when it answers")
        return True

    def controller_back(self) -> bool:
        """Before submitting: False while the controller is still down, True (said once) when it answers again."""
        if self.ctld.since is None:
            return True
        if not self.controller_up():
            return False
        self.say(f"{self.ctld.end('slurmctld answers again')}; submitting again")
        return True

    def accounting(self, down_since: float | None) -> None:
        if down_since is not None:
            if line := self.dbd.start():
                self.say(f"{line}; job states come from squeue and the jobs' heartbeats meanwhile (no job is taken "
                         "for lost for want of an sacct row)")
        elif line := self.dbd.end("sacct answers again"):
            self.say(line)
