"""The driver's steps around its claims and the faults that outlast a poll (jobs/outages.py says what each fault
is): whether a claimed unit is still ours, a job the scheduler requeued, a unit stopped by a full store, a claim or
record the full store refused. A mixin of `_Driver` (jobs/unit_driver.py), which holds the state these steps read."""

from __future__ import annotations

import contextlib
import typing as tp

from jobs.job import Unit
from jobs.outages import StoreFull, StoreSpace, is_full_error
from jobs.outcome import Failure, Tracked, log_tail
from jobs.progress import Progress
from jobs.records import job_record
from jobs.requests import JobRequests
from jobs.store import CLAIM, RunStore

REQUEUED = {"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED"}  # a running job put back in the queue


class FaultSteps:
    store: RunStore
    progress: Progress
    space: StoreSpace
    active: dict[str, Tracked]
    waiting: list[Unit]
    known: dict[str, dict | None]
    early: set[str]
    computed: set[str]
    requests: JobRequests

    def jobs(self) -> int:
        raise NotImplementedError

    def finish(self, unit: Unit, failure: Failure | None = None) -> None:
        raise NotImplementedError

    def held_before(self, unit: Unit) -> bool:
        """A unit found done, not computed by this driver, whose job an earlier driver submitted (one killed, then
        restarted) may still hold its GPU for a hand-off that driver never gave: told now, when the entry is ours and
        has not been told (else its job waits for its bound)."""
        return (unit.key not in self.computed and self.requests.handoff_s(unit) > 0
                and self.store.owns_entry(unit.kind, unit.key) and not self.store.handed_off(unit.kind, unit.key))

    def _still_ours(self, unit: Unit) -> bool:
        """Under the submit lock: false if the unit got done, or another driver submitted it, since we decided."""
        if self.store.is_done(unit.kind, unit.key):
            self.waiting.remove(unit)
            self.finish(unit)
            return False
        record = job_record(self.store, unit.kind, unit.key)
        if record is not None and record != self.known.get(unit.key):  # another driver submitted it meanwhile
            self.known[unit.key] = record
            self.active[unit.key] = Tracked(unit, record)
            self.waiting.remove(unit)
            return False
        return True

    def running_words(self) -> str:
        return f"{len(self.active)} units in {self.jobs()} jobs"

    def requeued(self, tracked: Tracked, state: str) -> None:
        """If the scheduler put a running job back in the queue (its node failed or was set down, or it was
        preempted): the unit resumes from its checkpoint in the same job, so it is no retry of ours; said once per
        requeue and kept among the unit's attempts."""
        if not (tracked.state.startswith("RUNNING") and state.split(" ")[0] in REQUEUED):
            return
        job, unit = tracked.record.get("job_id"), tracked.unit
        tracked.running_since = None
        self.progress.write(f"job {job} of unit {unit.name} ({unit.key}) was requeued by the scheduler ({state}; "
                            "node failure or preemption): it resumes from its checkpoint when the job starts again")
        with contextlib.suppress(OSError):  # a full store must not end the driver here
            self.store.record_attempt(unit.kind, unit.key, f"requeued by the scheduler ({state})", job_id=str(job),
                                      log=tracked.record.get("log_paths", {}).get("stderr", ""), retry=True)

    def blocked(self, unit: Unit, cause: str, job_id: str, log: str) -> None:
        """The unit failed because the store is full: no retry is spent (one would fail the same way), nothing more
        is submitted; said once, and the run stops with StoreFull once the running jobs have ended."""
        with contextlib.suppress(OSError):
            self.store.record_attempt(unit.kind, unit.key, cause, job_id=job_id, log=log, retry=False)
        if self.space.block(unit.kind, unit.key, self.store.workdir(unit.kind, unit.key)):
            self.progress.write(f"{self.space.message([unit.kind])}: {cause}; {self.running_words()} still running")

    def store_was_full(self, failure: Failure, record: dict) -> bool:
        """Whether the unit's job failed for want of space (its error, error.txt, log tail; or no space left):
        then it is blocked, not retried."""
        unit = failure.unit
        if not self.space.explains(failure.error, self.store.error(unit.kind, unit.key), log_tail(failure.log)):
            return False
        self.blocked(unit, f"the run store is full: {failure.error}", str(record.get("job_id")), failure.log)
        return True

    def stop_if_full(self) -> None:
        """Once the running jobs have ended: StoreFull, naming what the units left need, if the store filled."""
        if self.space.full:
            raise StoreFull(self.space.message([*self.space.blocked.values(),
                                                *(u.kind for u in self.waiting if u.key not in self.early)]))

    def adopt_full(self, error: OSError, adopt: tp.Callable[[], None]) -> None:
        """Taking the submit lock to adopt units failed for want of space (any other OSError is raised): they are
        adopted without it (no driver can claim in a full store), and those left to submit blocked."""
        if not is_full_error(error):
            raise error
        before = len(self.waiting)
        adopt()
        for unit in self.waiting[before:]:
            self.blocked(unit, f"the run store is full: {error}", "", "")
        del self.waiting[before:]

    def submit_full(self, packs: tp.Sequence[list[Unit]], error: OSError) -> None:
        """Writing a claim or a record failed for want of space (any other OSError is raised): units whose job was
        submitted are tracked, the others released and blocked."""
        if not is_full_error(error):
            raise error
        for unit in (u for pack in packs for u in pack):
            record = job_record(self.store, unit.kind, unit.key)
            if record is not None and record.get("executor") != CLAIM:
                self.active[unit.key] = Tracked(unit, record)
            else:
                with contextlib.suppress(OSError):
                    self.store.clear_job(unit.kind, unit.key)
                self.known[unit.key] = None
                self.blocked(unit, f"the run store is full: {error}", "", "")
        self.waiting = [u for u in self.waiting if u.key not in self.active and u.key not in self.space.blocked]
