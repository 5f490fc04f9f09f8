"""Liveness and cancellation of recorded jobs, for any driver process at any time: is the job a `job.json` names still
queued or running (sacct, squeue, /proc), and cancelling it (scancel, SIGINT to a local job's process group).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import time
import typing as tp
from pathlib import Path

import submitit

from jobs.slurm_info import SCHEDULER_TIMEOUT_S


def timed(command: tp.Sequence[str], seconds: float = SCHEDULER_TIMEOUT_S) -> list[str]:
    """`command` killed after `seconds` (exit status 124): for calls made by submitit, which sets no timeout."""
    return ["timeout", "-k", "5", str(int(seconds)), *command]


SLURM_ACTIVE = {"PENDING", "RUNNING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "COMPLETING", "CONFIGURING",
                "RESIZING", "SUSPENDED", "STAGE_OUT", "SIGNALING", "READY", "UNKNOWN"}
SQUEUE_FALLBACK_AFTER_S = 300.0  # sacct may not list a job for a while (or at all without accounting)


class ElsewhereError(RuntimeError):
    """A local job recorded by a driver on another host: this host cannot see whether it still runs."""


def _proc_alive(pid: int) -> bool:
    stat = Path(f"/proc/{pid}/stat")
    if Path("/proc/self/stat").exists():
        try:
            state = stat.read_text().rsplit(")", 1)[1].split()[0]
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, IndexError):
            return False  # gone, or another user's process reusing the pid: not our job either way
        # a zombie has exited; a live pid without "submitit" in its command line is a reused pid
        return state not in ("Z", "X") and b"submitit" in cmdline
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _proc_owner(pid: int) -> int | None:
    try:
        return os.stat(f"/proc/{pid}").st_uid
    except OSError:
        return None if Path("/proc/self").exists() else os.geteuid()  # no /proc: os.killpg's EPERM decides


class JobWatch:
    """Answers "is this recorded job still queued or running?" for jobs submitted by this or an earlier driver."""

    def __init__(self, sacct_every_s: float = 30.0):
        _time_sacct()
        self._children: dict[str, tp.Any] = {}  # job id -> Popen of local jobs this process started
        self._sacct_every_s = sacct_every_s
        self._last_sacct = float("-inf")
        self._squeue: dict[str, str] = {}
        self.accounting_down_since: float | None = None  # sacct has failed since then (slurmdbd unreachable)
        self.controller_answered = True  # the last squeue asked answered (False: slurmctld unreachable too)

    def track(self, job: tp.Any) -> None:
        process = getattr(job, "_process", None)
        if process is not None:
            self._children[str(job.job_id)] = process

    def refresh(self, records: tp.Iterable[tp.Mapping[str, tp.Any]], force: bool = False) -> None:
        """One sacct call for every recorded slurm job, at most every `sacct_every_s` unless forced."""
        slurm = sorted({str(r["job_id"]) for r in records if r.get("executor") == "slurm"})
        if not slurm:
            return
        now = time.time()
        if not force and now - self._last_sacct < self._sacct_every_s:
            return
        watcher = submitit.SlurmJob.watcher
        for job_id in slurm:
            watcher.register_job(job_id)  # idempotent; we poll with update() ourselves
        answered = _sacct_update(watcher)
        self._last_sacct = now
        if answered:
            self.accounting_down_since = None
            stale = [j for j, r in ((str(r["job_id"]), r) for r in records if r.get("executor") == "slurm")
                     if watcher.get_state(j, mode="cache") == "UNKNOWN"
                     and now - float(r.get("submitted_at", now)) > SQUEUE_FALLBACK_AFTER_S]
        else:  # sacct's cache is frozen at its last answer: a job that ended since would look RUNNING forever
            self.accounting_down_since = self.accounting_down_since or now
            stale = slurm
        squeue = _squeue_states(stale) if stale else {}
        self.controller_answered = squeue is not None
        self._squeue = squeue or {}

    def state(self, record: tp.Mapping[str, tp.Any]) -> tuple[bool, str]:
        """(alive, state in words)."""
        job_id = str(record["job_id"])
        kind = record.get("executor")
        if kind == "local":
            if job_id in self._children:
                alive = self._children[job_id].poll() is None  # also reaps our own finished children
                return alive, "RUNNING" if alive else "ENDED"
            host = record.get("host")
            if host and host != _hostname():
                raise ElsewhereError(
                    f"local job {job_id} was started on host {host!r} and this is {_hostname()!r}; run the "
                    "pipeline there, cancel the job there (python -m jobs cancel), or delete the entry's job.json "
                    "to resubmit")
            alive = _proc_alive(int(job_id))
            return alive, "RUNNING" if alive else "ENDED"
        if kind == "slurm":
            folder = record.get("folder")
            if folder and submitit.core.utils.JobPaths(folder, job_id=job_id).result_pickle.exists():
                return False, "ENDED"
            state = submitit.SlurmJob.watcher.get_state(job_id, mode="cache").split(" ")[0].upper()
            if job_id in self._squeue and (state == "UNKNOWN" or self.accounting_down_since is not None):
                state = self._squeue[job_id] or "GONE (not in squeue)"
            return state in SLURM_ACTIVE, state
        # debug units run inside the driver: a record left behind means that driver is gone
        return False, "ENDED"


def _time_sacct() -> None:
    """submitit's shared sacct watcher calls sacct without a timeout (and survives a failed call): add one."""
    watcher = submitit.SlurmJob.watcher
    if getattr(watcher, "_awd_timed", False):
        return
    make = watcher._make_command
    watcher._make_command = lambda: None if (cmd := make()) is None else timed(cmd)  # type: ignore[method-assign]
    setattr(watcher, "_awd_timed", True)  # noqa: B010 -- a marker on submitit's object, not one of its attributes
    # a failed sacct is said once by the driver (jobs/outages.py), not as a warning every poll
    logging.getLogger("submitit").addFilter(lambda record: "Bypassing sacct error" not in record.getMessage())


def _hostname() -> str:
    return socket.gethostname()


def _sacct_update(watcher: tp.Any) -> bool:
    """submitit's `watcher.update()` (one sacct call for its registered jobs); False when sacct failed, which
    submitit only logs, keeping the states it had (the liveness then asks squeue; the driver says it once)."""
    if watcher._make_command() is None:
        return True  # nothing left to ask about
    watcher._output = None  # set again only by an sacct call that answered
    watcher.update()
    return watcher._output is not None


def _squeue_states(job_ids: tp.Sequence[str]) -> dict[str, str] | None:
    """job id -> squeue's state ("" when squeue does not list it: the job ended); None when squeue did not answer
    (the controller is unreachable: then nothing can be said to have ended)."""
    try:
        proc = subprocess.run(["squeue", "-h", "-o", "%i|%T", "-j", ",".join(job_ids)], capture_output=True,
                              text=True, timeout=SCHEDULER_TIMEOUT_S)
    except (OSError, subprocess.SubprocessError):
        return None
    if proc.returncode != 0 and "Invalid job id" not in proc.stderr:  # every job gone from the controller
        return None
    out = proc.stdout
    states = {j: "" for j in job_ids}
    for line in out.splitlines():
        if "|" in line:
            jid, state = line.strip().split("|", 1)
            states[jid] = state.upper()
    return states


def cancel_jobs(records: tp.Sequence[tp.Mapping[str, tp.Any]], say: tp.Callable[[str], None] = print) -> int:
    """Cancels recorded jobs: scancel for slurm, SIGINT to the process group for local. Returns how many."""
    slurm = sorted({str(r["job_id"]) for r in records if r.get("executor") == "slurm"})
    n = 0
    if slurm:
        subprocess.run(["scancel", *slurm], check=True, timeout=SCHEDULER_TIMEOUT_S)
        say(f"scancel {' '.join(slurm)}")
        n += len(slurm)
    for job_id in sorted({str(r["job_id"]) for r in records if r.get("executor") == "local"}):
        rec = next(r for r in records if str(r["job_id"]) == job_id)
        if rec.get("host") and rec["host"] != _hostname():
            say(f"local job {job_id} runs on host {rec['host']}; cancel it there")
            continue
        if not _proc_alive(int(job_id)):
            continue
        owner = _proc_owner(int(job_id))
        if owner != os.geteuid():  # a record only names a pid: the process itself says whose it is
            say(f"local job {job_id} is a process of uid {owner}, not yours: not cancelled")
            continue
        try:
            os.killpg(int(job_id), signal.SIGINT)  # the controller and its task: they share the job's session
        except ProcessLookupError:
            continue
        except PermissionError as e:
            say(f"local job {job_id}: not cancelled ({e.strerror})")
            continue
        say(f"interrupted local job {job_id}")
        n += 1
    return n
