"""The loop that waits for units in jobs (`_Driver`): adopts what an earlier driver left in flight, submits the
rest, polls, retries, follows the dataflow to later units, shows progress.

It wires the pieces: the backend of the executor kind (jobs/backends/), the policies (jobs/policies/: throttle,
retry, packing, priority), what each job asks for (jobs/requests.py) and the clock they all read (`now`). Its only
wait is `_sleep`, and its waits between submissions come from SUBMIT_BACKOFF_S / SUBMIT_GIVE_UP_S, read when a
driver starts: tests replace these names here.
"""

from __future__ import annotations

import collections
import contextlib
import time
import typing as tp

from jobs import backends
from jobs.driver_faults import FaultSteps
from jobs.driver_view import ViewSteps
from jobs.executors import ExecutorConfig, JobWatch, owner_only_files
from jobs.job import Unit, execute_unit
from jobs.outages import Faults, StoreSpace
from jobs.outcome import Failure, Tracked, last_line, unit_alive
from jobs.outcome import failure_of as _failure
from jobs.policies import Clock
from jobs.policies.packing import packs, short_s
from jobs.policies.priority import longest_first
from jobs.policies.retry import RetryPolicy
from jobs.policies.throttle import BACKOFF_S as SUBMIT_BACKOFF_S
from jobs.policies.throttle import GIVE_UP_S as SUBMIT_GIVE_UP_S
from jobs.policies.throttle import SubmitThrottle
from jobs.prepare import prepare as _prepare
from jobs.prepare import write_snapshots as _write_snapshots
from jobs.progress import Progress
from jobs.records import job_record, unit_field
from jobs.requests import JobRequests
from jobs.store import CLAIM, ERROR, RunStore
from jobs.submission import SubmitRefused, SubmitRejected, cancel_hint, sigint_deferred
from jobs.submission import submit_packs as _submit
from jobs.throughput import Estimator

PROGRESS_EVERY_S = 300.0  # a running unit's checkpoint is read for its throughput at most this often
_sleep = time.sleep  # the driver's only wait; tests replace it to interrupt the driver mid-wait
Follow = tp.Callable[[Unit, "dict | None"], tp.Iterable[Unit]]


def _packs(units: tp.Sequence[Unit], cfg: ExecutorConfig, slots: int, crowded: bool = False) -> list[list[Unit]]:
    """At most `slots` jobs: jobs.policies.packing with the kind's units_per_job, dealt round-robin where every job
    starts at once; `crowded` (more units wait than the queue takes): short units share jobs."""
    return packs(units, cfg.units_per_job or 1, slots, deal=backends.of(cfg).starts_all,
                 short_s=short_s(cfg.timeout_min, cfg.time_safety_factor) if crowded else 0.0)


class _Driver(FaultSteps, ViewSteps):
    """Waits for units in jobs: adopts the live jobs an earlier driver recorded, submits the rest as the throttle
    allows, resubmits a unit whose job failed as the retry policy says, and reports what still failed. The store's
    submit lock is held only to decide and claim units, never across a scheduler call."""

    def __init__(self, store: RunStore, cfg: ExecutorConfig, desc: str, progress: Progress,
                 poll_s: float | None, *, follow: Follow | None = None, awaited: tp.Collection[str] | None = None,
                 desc_of: tp.Callable[[Unit], str] | None = None, rates: Estimator | None = None,
                 now: Clock = time.time):
        self.store, self.cfg, self.desc, self.progress, self.now = store, cfg, desc, progress, now
        self.backend = backends.of(cfg)
        self.rates = rates or Estimator(store.root, cfg)  # sets estimate_s: --time, submission order, ETA
        self.computed: set[str] = set()  # units that were not done when this driver got them: each one that
        # ends done adds its measured throughput to the store's samples
        self.poll = poll_s if poll_s is not None else cfg.poll_interval()
        self.watch = JobWatch()
        self.active: dict[str, Tracked] = {}
        self.waiting: list[Unit] = []
        self.retry = RetryPolicy()
        self.failures: list[Failure] = []
        self.done = progress.bar.n  # awaited units done (those done before the call included, as they come)
        # read at construction, not import: tests shorten the waits through this module's names
        self.throttle = SubmitThrottle(self.backend.queue_cap(cfg), self.backend.limits(cfg),
                                       backoff_s=SUBMIT_BACKOFF_S, give_up_s=SUBMIT_GIVE_UP_S, now=now)
        if self.throttle.capped_by_site:  # known up front: no array is refused (and waited on) to find it
            progress.write(f"{desc}: the scheduler accepts at most {self.throttle.cap} jobs of this user at once "
                           "(sacctmgr): queuing no more")
        self.peak_jobs = 0
        self.known: dict[str, dict | None] = {}  # the job.json we last saw (or wrote) per unit
        self.follow = follow
        self.desc_of = desc_of or (lambda unit: desc)  # names the jobs (and their log folders) of each unit
        self.awaited_kinds = None if awaited is None else set(awaited)
        self.seen: set[str] = set()  # every unit this driver was given or followed
        self.final: set[str] = set()  # units whose outcome was handed to `follow`
        self.requests = JobRequests(cfg, self.backend, self.retry, self.final)  # what each unit's job asks for
        self.early: set[str] = set()  # followed units of later stages: submitted, never waited for
        self.followed: list[Unit] = []  # awaited units that `follow` added (the report holds their results)
        self.inbox: list[Unit] = []  # units `follow` handed on, not added yet (see drain)
        self.snapshots: set[tuple[str, str]] = set()  # (fn, code) whose snapshot a followed unit already wrote
        self.totals: collections.Counter[str] = collections.Counter()
        self.outcomes: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
        self.durations: dict[str, list[float]] = collections.defaultdict(list)
        self.space = StoreSpace(store.root)  # a full store stops submission (jobs/outages.py)
        self.faults = Faults(self.backend.controller_up, progress.write, now)  # the scheduler's outages, said once
        self.unhanded: list[Unit] = []  # done units whose jobs may hold their GPU until their follow-ups are submitted
        self.holding: set[str] = set()  # their jobs: still queued for the scheduler's limits until the next poll

    @property
    def cap(self) -> int | None:
        return self.throttle.cap

    def jobs(self) -> int:
        return len({t.record["job_id"] for t in self.active.values()} | self.holding)

    def awaiting(self) -> bool:
        return any(k not in self.early for k in self.active) or any(u.key not in self.early for u in self.waiting)

    def run(self, todo: tp.Sequence[Unit], pending: set[str] | None = None) -> list[Failure]:
        """`todo`: prepared units; `pending`: the keys among them that are not done (default: all)."""
        try:  # from the start: a Ctrl-C just after the held-back one is released must still print the hint
            self.add(todo, pending=pending)
            self.drain()
            while self.awaiting() and not (self.space.full and not self.active):
                if self.backend.in_process:
                    self.run_one_in_process()
                else:
                    self.submit_some()
                    self.poll_active()
                self.drain()
                self.hand_off()
                self.show()
                if self.awaiting() and not self.backend.in_process:
                    _sleep(self.poll)
            self.hand_off()
            self.stop_if_full()
            self.leave_early()
        except KeyboardInterrupt:
            self.progress.close()
            records = [dict(t.record, kind=t.unit.kind) for t in self.active.values()] or [
                dict(r, kind=u.kind) for u in todo  # interrupted before anything was tracked: what the store says
                if not self.store.is_done(u.kind, u.key) and (r := job_record(self.store, u.kind, u.key)) is not None]
            if records:
                self.progress.write(cancel_hint(self.store, records))
            raise
        return self.failures
    def add(self, units: tp.Iterable[Unit], pending: set[str] | None = None, given: bool = True) -> None:
        """Units to run or adopt: done ones go straight to `follow`, live recorded jobs are adopted, the rest wait.
        Given units are prepared already; followed ones (`given` false) are prepared and snapshotted here."""
        new = []
        for unit in units if given else _prepare(units, self.store, check_deps=False):
            if unit.key in self.seen:
                continue
            early = self.awaited_kinds is not None and unit.kind not in self.awaited_kinds
            if early and self.backend.in_process:
                continue
            self.seen.add(unit.key)
            self.totals[unit.kind] += 1
            self.requests.saw(unit)
            if early:
                self.early.add(unit.key)
            elif not given:
                self.followed.append(unit)
                self.progress.bar.total += 1
            new.append(unit)
        if not new:
            return
        for unit in new:
            self.requests.add(unit)
        done = [u for u in new if (u.key not in pending if pending is not None
                                   else self.store.is_done(u.kind, u.key, verify="changed"))]
        finished = {u.key for u in done}
        todo = [u for u in new if u.key not in finished]
        self.rates.apply(todo)  # a done unit's estimate is never read (and a cost model may import torch for it)
        self.computed.update(u.key for u in todo)
        if not given:
            fresh = [u for u in todo if (u.fn, u.code) not in self.snapshots]
            _write_snapshots(fresh, self.store)
            self.snapshots.update((u.fn, u.code) for u in fresh)
        for unit in done:
            self.finish(unit)
        if todo:
            self.adopt(todo)

    def finish(self, unit: Unit, failure: Failure | None = None) -> None:
        """The unit is final (done, or failed for good): count it and hand it to `follow`."""
        if unit.key in self.final:
            return
        self.final.add(unit.key)
        self.outcomes[unit.kind]["failed" if failure else "done"] += 1
        if failure is None and unit.key in self.computed:
            self.space.committed(unit, self.store)
        if failure is None and unit.key in self.computed and self.rates.observe(unit, self.store):
            # a new measurement of this shape: the next units' --time and the ETA follow it
            self.rates.apply([*self.waiting, *(t.unit for t in self.active.values())])
        if failure is None and unit.key not in self.early:
            self.done += 1
        if failure is None and (unit.handoff_s > 0 or self.held_before(unit)):
            self.unhanded.append(unit)
            self.holding.add(str((self.known.get(unit.key) or {}).get("job_id", unit.key)))
        if failure is not None:
            if unit.key in self.early:  # the stage that needs it retries it (its error.txt stays)
                self.progress.write(f"early {failure.line()} (left to the stage that needs it)")
            else:
                self.failures.append(failure)
                self.progress.write(failure.line())
        if self.follow is not None:
            self.inbox += self.follow(unit, None if failure else self.store.result(unit.kind, unit.key)) or ()

    def hand_off(self) -> None:
        """Submits what the units just done made ready, then tells their jobs, which hold their GPUs for it
        (jobs.job.hand_over), that they may end: the scheduler gives those GPUs to the highest-priority job pending."""
        if not self.unhanded:
            return
        if self.waiting and not self.backend.in_process:
            self.submit_some()
        for unit in self.unhanded:
            with contextlib.suppress(OSError):  # a full store: the job gives its GPU back at its bound
                self.store.hand_off(unit.kind, unit.key)
        self.unhanded = []

    def drain(self) -> None:
        """Adds what `follow` handed on, in batches (one scheduler query and one submit lock per batch, not per
        finished unit: a restarted driver finds hundreds done at once)."""
        while self.inbox:
            batch, self.inbox = self.inbox, []
            self.add(batch, given=False)

    def leave_early(self) -> None:
        """Every awaited unit is final: early units in jobs keep running for their stage to adopt. Those still
        waiting are submitted now as far as the queue cap allows (the last runs' evaluations would otherwise wait for
        their stage to start); the rest are left to their stage."""
        if self.waiting and not self.backend.in_process:
            self.submit_some()
        running = [t for k, t in self.active.items() if k in self.early]
        if running or self.waiting:
            self.progress.write(
                f"{self.desc}: leaving {len(running)} early units of later stages in "
                f"{len({t.record['job_id'] for t in running})} jobs for their stages to adopt"
                + (f"; {len(self.waiting)} not yet submitted (their stages submit them)" if self.waiting else ""))
        self.waiting = []

    def run_one_in_process(self) -> None:
        unit = next(u for u in self.waiting if u.key not in self.early)
        self.waiting.remove(unit)
        start = self.now()
        if execute_unit(self.store, unit) == "failed":
            err = self.store.path(unit.kind, unit.key) / ERROR
            self.finish(unit, Failure(unit, last_line(err.read_text(errors="replace")), str(err), str(err)))
        else:
            self.progress.durations.append(self.now() - start)
            self.durations[unit.kind].append(self.now() - start)
            self.finish(unit)
        self.drain()

    def adopt(self, todo: tp.Sequence[Unit]) -> None:
        store = self.store
        seen = {u.key: job_record(store, u.kind, u.key) for u in todo}
        self.watch.refresh([r for r in seen.values() if r], force=True)  # outside the lock: sacct may be slow
        adopted = len(self.active)
        done: list[Unit] = []
        try:
            with store.submit_lock(say=self.progress.write):
                self._adopt_each(todo, seen, done)
        except OSError as e:  # the full store refused the lock's owner file (adopt_full; any other is raised)
            self.adopt_full(e, lambda: self._adopt_each(todo, seen, done))
        if len(self.active) > adopted:
            fresh = [self.active[u.key] for u in todo if u.key in self.active]
            self.progress.write(f"{self.desc}: re-attached to {len(fresh)} units in "
                                f"{len({t.record['job_id'] for t in fresh})} running jobs")
        for unit in done:
            self.finish(unit)

    def _adopt_each(self, todo: tp.Sequence[Unit], seen: dict, done: list[Unit]) -> None:
        for unit in todo:
            if self.store.is_done(unit.kind, unit.key):  # a concurrent driver finished it while we waited
                done.append(unit)
                continue
            record = self.known[unit.key] = job_record(self.store, unit.kind, unit.key)
            failed_there = self.store.error(unit.kind, unit.key) is not None  # its job may still run other units
            if record is not None and not failed_there and (record != seen[unit.key] or self._alive(unit, record)[0]):
                self.active[unit.key] = Tracked(unit, record)  # live, or just submitted by another driver
            else:
                self.waiting.append(unit)

    def _alive(self, unit: Unit, record: dict) -> tuple[bool, str]:
        return unit_alive(self.store, self.watch, unit, record)

    def submit_some(self) -> None:
        if self.space.full or not self.faults.controller_back():
            return
        slots = self.throttle.slots(len(self.waiting), self.jobs())
        if slots <= 0:
            return
        tried, queued_before, crowded = slots, self.jobs(), len(self.waiting) > slots
        longest_first(self.waiting)
        groups: dict[tuple[tp.Any, ...], tuple[ExecutorConfig, list[Unit]]] = {}
        for unit in self.waiting:  # one array per distinct resource request, priority and job name
            groups.setdefault((self.desc_of(unit), *self.requests.key(unit)), (self.unit_cfg(unit), []))[1].append(unit)
        error: Exception | None = None
        for (desc, *_), (cfg, units) in groups.items():
            packs = _packs(units, cfg, slots, crowded)
            if not packs:
                break
            try:  # a claim or a record the full store refuses stops submission (submit_full)
                with sigint_deferred() as interrupted:  # from the first claim: claimed units get submitted
                    with self.store.submit_lock(say=self.progress.write):  # decide and claim; sbatch after release
                        packs = [p for p in ([u for u in pack if self._still_ours(u)] for pack in packs) if p]
                        for unit in (u for pack in packs for u in pack):
                            unit.handoff_s = self.requests.handoff_s(unit)
                            with owner_only_files():
                                self.known[unit.key] = self.store.claim(unit.kind, unit.key, desc=desc, **self.mark(
                                    unit), **unit_field(unit.kind, unit.key))
                    records, error = _submit(packs, self.store, cfg, desc, self.watch, self.mark)
            except OSError as e:
                self.submit_full(packs, e)
                if interrupted:  # held back meanwhile: still the user's Ctrl-C
                    raise KeyboardInterrupt from None
                return
            self.known.update(records)
            submitted = {u.key for pack in packs for u in pack if u.key in records}
            for unit in (u for pack in packs for u in pack if u.key not in submitted):
                self.store.clear_job(unit.kind, unit.key)  # release the claim: free for any driver again
                self.known[unit.key] = None
            for unit in (u for pack in packs for u in pack if u.key in submitted):
                self.active[unit.key] = Tracked(unit, records[unit.key])
            self.waiting = [u for u in self.waiting if u.key not in submitted and u.key not in self.active]
            slots -= len({records[k]["job_id"] for k in submitted})
            self.peak_jobs = max(self.peak_jobs, self.jobs())
            if interrupted:
                raise KeyboardInterrupt
            if error is not None or slots <= 0:
                break
        if error is None:
            self.throttle.accepted(self.jobs(), queued_before)
        elif isinstance(error, SubmitRejected):
            running = self.jobs()
            raise SubmitRejected(f"{error}; nothing more was submitted" + (
                f" ({running} jobs submitted before keep running: the next run re-attaches to them)" if running
                else ""))
        elif isinstance(error, SubmitRefused):
            self.throttle.refused(self.jobs(), error.size, tried)
            self.progress.write(f"{error}; waiting for running jobs to end (queued now: {self.jobs()})")
        elif self.faults.controller_down(error, self.running_words()):
            self.throttle.next_submit = self.now() + self.poll  # asked again each poll, never given up on
        elif (wait := self.throttle.failed()) is not None:
            self.progress.write(f"{error}; retrying in {wait:.0f}s")
        else:
            given_up, self.waiting = self.waiting, []
            for unit in given_up:
                self.finish(unit, Failure(unit, f"not submitted: {error}", ""))

    def mark(self, unit: Unit) -> dict[str, str]:
        """job.json's proof that this stage submitted the unit early for a later one (see cancel_early)."""
        return {"early": self.desc} if unit.key in self.early else {}

    def unit_cfg(self, unit: Unit) -> ExecutorConfig:
        return self.requests.cfg_of(unit)

    def poll_active(self) -> None:
        self.holding = set()  # told a poll ago: those jobs have ended
        self.watch.refresh([t.record for t in self.active.values()])
        self.faults.accounting(self.watch.accounting_down_since)
        for key, tracked in list(self.active.items()):
            if tracked.record.get("executor") == CLAIM:  # another driver's submission: its record may have landed
                tracked.record = job_record(self.store, tracked.unit.kind, tracked.unit.key) or tracked.record
            unit, record = tracked.unit, tracked.record
            alive, state = self._alive(unit, record)  # sampled before is_done: a job that ended after committing
            self.requeued(tracked, state)  # a RUNNING job back in the queue: said, never retried by us
            tracked.state = state
            if state.startswith("RUNNING"):
                now = self.now()
                tracked.running_since = tracked.running_since or now
                if now - tracked.progress_at >= PROGRESS_EVERY_S:
                    tracked.progress_at = now
                    if self.rates.observe_running(unit, self.store):  # its checkpoint: the first measurement
                        self.rates.apply([*self.waiting, *(t.unit for t in self.active.values())])
            if self.store.is_done(unit.kind, unit.key):  # is seen as done, never as lost
                seconds = ((self.store.manifest(unit.kind, unit.key) or {}).get("meta") or {}).get("seconds")
                if isinstance(seconds, (int, float)):
                    self.progress.durations.append(float(seconds))
                    self.durations[unit.kind].append(float(seconds))
                del self.active[key]
                self.finish(unit)
                continue
            failure = _failure(self.store, tracked, alive, state, self.backend.lost_grace_s, self.now)
            if failure is None:
                continue
            del self.active[key]
            self.retry_or_fail(failure, record, state)

    def retry_or_fail(self, failure: Failure, record: dict, state: str) -> None:
        unit, cfg = failure.unit, self.cfg.for_kind(failure.unit.kind)
        if self.store_was_full(failure, record):  # retrying would fail the same way: no retry spent
            return
        decision = self.retry.decide(unit.key, cfg, failure.error, state, self.store.error(unit.kind, unit.key))
        self.store.record_attempt(unit.kind, unit.key, decision.cause, job_id=str(record.get("job_id")),
                                  log=failure.log, retry=decision.retry)
        if not decision.retry:
            failure.retries = decision.attempt - 1
            self.finish(unit, failure)
            return
        mem = self.retry.mem_gb(unit.key)
        more = f", mem {mem:g} GB" if mem is not None else ""
        self.progress.write(f"retrying unit {unit.name} ({unit.key}), attempt {decision.attempt + 1} of "
                            f"{cfg.max_retries + 1}{more}: {decision.cause}; log: {failure.log}")
        self.store.clear_error(unit.kind, unit.key)
        self.waiting.append(unit)
