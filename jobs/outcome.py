"""What became of units: a `Failure` (cause and log), `UnitsFailed` (raised by run_units), the `Report` of
run_units_report, and `failure_of`: the failure a tracked job's end means, if any."""

from __future__ import annotations

import dataclasses
import os
import time
import typing as tp

from jobs.job import Unit, heartbeat_every_s
from jobs.liveness import ElsewhereError, JobWatch
from jobs.policies import Clock
from jobs.records import OWN, owned_record
from jobs.store import CLAIM, ERROR, RunStore, StoreError, claim_alive

HEARTBEAT_STALE_AFTER = 4  # heartbeats missed before a job that the scheduler does not show counts as gone
SCHEDULER_ENDED = {"ENDED", "COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "PREEMPTED",
                   "BOOT_FAIL", "DEADLINE"}  # the scheduler says the job is over: its own last heartbeat is moot


@dataclasses.dataclass
class Failure:
    unit: Unit
    error: str
    log: str
    traceback: str | None = None
    retries: int = 0  # resubmissions made before giving up (causes: the entry's attempts.json)

    def line(self) -> str:
        extra = f" (traceback: {self.traceback})" if self.traceback and self.traceback != self.log else ""
        tries = f" after {self.retries} retries" if self.retries else ""
        return f"unit {self.unit.name} ({self.unit.key}) failed{tries}: {self.error}; log: {self.log}{extra}"


class UnitsFailed(RuntimeError):
    def __init__(self, failures: tp.Sequence[Failure], total: int, desc: str):
        self.failures = list(failures)
        lines = [f"{desc}: {len(self.failures)} of {total} units failed (the others are committed; rerun to "
                 "retry only the failed ones):"] + [f"  {f.line()}" for f in self.failures]
        super().__init__("\n".join(lines))


@dataclasses.dataclass
class Report:
    """What run_units_report made of the units: results of the done ones, and the units that still failed after
    their retries (each with its cause and log)."""

    results: dict[str, dict]
    failures: list[Failure]
    peak_queued: int = 0  # most jobs this driver had queued or running at once (<= max_queued)


@dataclasses.dataclass
class Tracked:
    """A unit in a job this driver watches."""

    unit: Unit
    record: dict
    dead_since: float | None = None
    state: str = ""  # the scheduler's word at the last poll (RUNNING, PENDING, ...)
    running_since: float | None = None  # first poll that saw it RUNNING (what the ETA subtracts)
    progress_at: float = 0.0  # when its checkpoint was last read for a throughput sample


def last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "(empty)"


def log_tail(path: str | None) -> str:
    if not path:
        return ""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 4096))
            return last_line(f.read().decode(errors="replace"))
    except OSError:
        return ""


def failure_of(store: RunStore, tracked: Tracked, alive: bool, state: str, grace: float,
               now: Clock = time.time) -> Failure | None:
    """The unit's failure, if its entry holds error.txt or its job has ended (for `grace` s) without a result."""
    unit, record = tracked.unit, tracked.record
    log = record.get("log_paths", {}).get("stderr", "")
    error = store.error(unit.kind, unit.key)
    if error is not None:
        return Failure(unit, last_line(error), log, str(store.path(unit.kind, unit.key) / ERROR))
    if alive:
        return None
    at = now()
    tracked.dead_since = tracked.dead_since or at
    if at - tracked.dead_since < grace:
        return None
    own = owned_record(store, unit.kind, unit.key)
    # a record someone else wrote may name any file we can read (the tail would land in attempts.json)
    tail = log_tail(log) if own is not None and own[OWN] and own["job_id"] == str(record["job_id"]) else ""
    return Failure(unit, f"job {record['job_id']} ended ({state}) without committing a result"
                   + (f"; last log line: {tail}" if tail else ""), log)


def unit_alive(store: RunStore, watch: JobWatch, unit: Unit, record: dict) -> tuple[bool, str]:
    """(whether the job `record` names still works on `unit`, its state in words)."""
    if record.get("executor") == CLAIM:
        if claim_alive(record):
            return True, "SUBMITTING"
        return False, f"not submitted: driver pid {record.get('driver_pid')} on {record.get('host')} is gone"
    try:
        alive, state = watch.state(record)
    except ElsewhereError as e:
        raise StoreError(f"unit {unit.name} ({unit.kind}/{unit.key}): {e}") from None
    if alive:
        return True, state
    beat = store.heartbeat(unit.kind, unit.key)
    fresh = beat is not None and beat["age_s"] < HEARTBEAT_STALE_AFTER * heartbeat_every_s()
    # a job the scheduler does not show us (PrivateData, another user's job) lives while its heartbeat is
    # fresh; so does another job that holds the unit's run lock (a duplicate submission left it to that one)
    if fresh and beat is not None and (str(beat.get("job_id")) != str(record["job_id"])
                                       or state.split(" ")[0] not in SCHEDULER_ENDED):
        return True, f"{state}, heartbeat {beat['age_s']:.0f}s ago from job {beat.get('job_id')}"
    return False, state
