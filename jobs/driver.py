"""The driver side of running units: skip what the store has, adopt jobs still in flight, submit the rest as job
arrays, retry what failed, respect the scheduler's limits, show progress, wait.

The store is the source of truth, not submitit's result pickles: a unit is finished when its entry is committed,
failed when its entry holds `error.txt` or its job ended without committing. That is what lets a new driver (after
the old one was killed, or a second `dvc repro`) pick up jobs it did not submit.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import logging
import math
import os
import signal
import sys
import threading
import time
import typing as tp
from pathlib import Path

from jobs.cluster_check import preflight
from jobs.executors import (
    ElsewhereError,
    ExecutorConfig,
    ExecutorConfigError,
    JobWatch,
    load_executor_config,
    make_executor,
    owner_only_files,
    partition_time_limit_min,
    submit_limit,
    unit_time_min,
)
from jobs.job import Unit, UnitBatch, execute_unit, heartbeat_every_s, resolve_fn
from jobs.placement import lines as placement_lines
from jobs.progress import Progress
from jobs.records import OWN, job_record, owned_record, unit_field
from jobs.records import cancel_early as cancel_early  # the stages import it from here
from jobs.sbatch_errors import FIX, WAIT, classify, fix_message
from jobs.snapshot import SnapshotError, write_snapshot
from jobs.store import CLAIM, ERROR, RunStore, StoreError, claim_alive, dump_json
from jobs.throughput import Estimator, kind_etas
from jobs.why import pending_reasons, summary

log = logging.getLogger(__name__)

SLURM_LOST_GRACE_S = 60.0  # a shared filesystem may show a finished job's files on the login node late
HEARTBEAT_STALE_AFTER = 4  # heartbeats missed before a job that the scheduler does not show counts as gone
_sleep = time.sleep  # the driver's only wait; tests replace it to interrupt the driver mid-wait


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


def _prepare(units: tp.Iterable[Unit], store: RunStore, check_deps: bool = True) -> list[Unit]:
    """Validates and de-duplicates; every error names the unit and is raised before anything is submitted."""
    seen: dict[tuple[str, str], Unit] = {}
    resolved: set[str] = set()
    for unit in units:
        if not isinstance(unit, Unit):
            raise TypeError(f"run_units: expected jobs.job.Unit, got {type(unit).__name__}: {unit!r}")
        store.path(unit.kind, unit.key)  # validates kind and key
        where = f"unit {unit.name} ({unit.kind}/{unit.key})"
        if not isinstance(unit.config, dict):
            raise TypeError(f"{where}: config must be a dict, got {type(unit.config).__name__}")
        dump_json(unit.config, f"{where}: config")
        if unit.fn not in resolved:
            try:
                resolve_fn(unit.fn)
            except (ImportError, AttributeError, ValueError) as e:
                raise ValueError(f"{where}: cannot use fn {unit.fn!r}: {e}") from e
            resolved.add(unit.fn)
        ident = (unit.kind, unit.key)
        if ident in seen:
            if seen[ident].config != unit.config or seen[ident].fn != unit.fn:
                raise ValueError(f"{where}: given twice with different fn/config under the same key; the key must "
                                 "cover everything the unit computes from")
            continue
        seen[ident] = unit
    if check_deps:  # about to compute them: damaged entries move aside (readers never move anything)
        store.quarantine_damaged((u.kind, u.key) for u in seen.values())
    for unit in seen.values() if check_deps else ():
        for dep in unit.deps:
            if not (isinstance(dep, (tuple, list)) and len(dep) == 2):
                raise ValueError(f"unit {unit.name}: deps must be (kind, key) pairs, got {dep!r}")
            if not store.is_done(*dep, verify="changed"):
                raise ValueError(f"unit {unit.name} ({unit.kind}/{unit.key}) depends on {dep[0]}/{dep[1]}, which "
                                 f"is not done in {store.root}; run the stage that produces it first")
    return list(seen.values())


def dry_run(units: tp.Iterable[Unit], store: RunStore) -> list[Unit]:
    """The de-duplicated units that are not done (what run_units would run or wait for); deps are not checked,
    since a later stage's units may depend on entries an earlier stage has yet to make."""
    store = store if isinstance(store, RunStore) else RunStore(store)
    return [u for u in _prepare(units, store, check_deps=False) if not store.is_done(u.kind, u.key)]


def _packs(units: tp.Sequence[Unit], cfg: ExecutorConfig, slots: int) -> list[list[Unit]]:
    """At most `slots` jobs. Local jobs all start at once, so units are dealt round-robin over the free slots."""
    per_job = cfg.units_per_job or 1
    atoms: dict[tp.Any, list[Unit]] = {}  # a group stays together; an ungrouped unit is its own atom
    for i, unit in enumerate(units):
        atoms.setdefault(unit.group or i, []).append(unit)
    parts = list(atoms.values())
    if cfg.kind == "local":
        n_jobs = min(math.ceil(len(parts) / per_job), max(0, slots))
        return [[u for part in parts[i::n_jobs] for u in part] for i in range(n_jobs)]
    singles = [part[0] for part in parts if not part[0].group]
    grouped = [part for part in parts if part[0].group]
    return (grouped + [singles[i:i + per_job] for i in range(0, len(singles), per_job)])[:max(0, slots)]


NICE_STEP_MIN = 15  # chains within a step share a priority (and so an array)


def chain_nice(chain_s: float, longest_s: float) -> int:
    """sbatch --nice for a unit whose chain (estimate + tail) is `chain_s` when the campaign's longest is `longest_s`:
    the minutes it is shorter, in steps of NICE_STEP_MIN. A user may only lower priorities (nice >= 0), so the heads
    of the longest chains keep theirs and shorter work yields to them among our own pending jobs: an extra seed
    submitted late starts before evaluations queued earlier (FIFO would start it after them). Jobs of other users
    see ours at most this much less urgent."""
    short_min = max(0.0, longest_s - chain_s) / 60
    return int(short_min // NICE_STEP_MIN) * NICE_STEP_MIN


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "(empty)"


def _log_tail(path: str | None) -> str:
    if not path:
        return ""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 4096))
            return _last_line(f.read().decode(errors="replace"))
    except OSError:
        return ""


class SubmitRejected(ExecutorConfigError):
    """sbatch refused the request itself (invalid partition, account, QOS, GRES, time, ...): sending it again can
    only fail again, so the stage stops at once, naming the executor.yaml keys to change."""


class SubmitRefused(RuntimeError):
    """sbatch said the user's (or account's) submit limit is reached: wait for jobs to end, then submit again."""

    def __init__(self, message: str, size: int = 1):
        super().__init__(message)
        self.size = size  # jobs in the refused submission


def _submit(packs: tp.Sequence[list[Unit]], store: RunStore, cfg: ExecutorConfig, desc: str,
            watch: JobWatch, mark: tp.Callable[[Unit], dict] = lambda unit: {}
            ) -> tuple[dict[str, dict], Exception | None]:
    """Submits `packs` (one job each) as arrays; job.json is written per array as soon as sbatch answers, so a crash
    between arrays leaves nothing submitted without a record. Returns the records and the error that stopped the
    submission early (the packs after it are not submitted), if any."""
    log_dir = store.log_dir(desc)
    executor = make_executor(cfg, log_dir)
    for unit in (u for pack in packs for u in pack):
        store.clear_error(unit.kind, unit.key)  # job.json stays: the caller's claim until the real record lands
        store.write_config(unit.kind, unit.key, unit.config)
    chunk = cfg.max_array_size if cfg.kind == "slurm" else max(1, len(packs))
    records: dict[str, dict] = {}
    for start in range(0, len(packs), chunk):
        group = packs[start:start + chunk]
        try:
            gpus = cfg.gpus_per_job() if cfg.kind == "slurm" and cfg.check_gpus else 0
            jobs = executor.submit_array([UnitBatch(str(store.root), pack, gpus) for pack in group])
        except Exception as e:  # noqa: BLE001 -- the caller decides: wait (submit limit), stop, or back off
            text = str(e) or repr(e.__cause__ or e)  # sbatch killed by its timeout has nothing on stderr
            verdict = classify(text) if cfg.kind == "slurm" else None
            if verdict is not None and verdict.action == WAIT:
                return records, SubmitRefused(f"{desc}: the scheduler refused {len(group)} more jobs (submit "
                                              f"limit): {_last_line(text)}", size=len(group))
            if verdict is not None and verdict.action == FIX:
                profile = cfg.profiles.get(group[0][0].kind, {})
                keys = tuple(f"profiles.{group[0][0].kind}.{k}" if k in profile else k for k in verdict.keys)
                return records, SubmitRejected(f"{desc}: {fix_message(verdict, cfg.source, keys)}")
            return records, RuntimeError(f"{desc}: submitting {len(group)} {cfg.kind} jobs failed: "
                                         f"{_last_line(text)}")
        for job, pack in zip(jobs, group):
            watch.track(job)
            logs = {"stdout": str(job.paths.stdout), "stderr": str(job.paths.stderr)}
            for index, unit in enumerate(pack):
                with owner_only_files():  # a record group members could rewrite would not be acted on (records.py)
                    store.record_jobs(unit.kind, unit.key, job.job_id, cfg.kind, logs, folder=str(log_dir),
                                      desc=desc, pack_index=index, pack_size=len(pack), mem_gb=cfg.mem_gb,
                                      **mark(unit), **unit_field(unit.kind, unit.key))
                record = job_record(store, unit.kind, unit.key)
                assert record is not None, "record_jobs has just written it (atomically)"
                records[unit.key] = record
    return records, None


@contextlib.contextmanager
def _sigint_deferred() -> tp.Iterator[list[int]]:
    """Holds Ctrl-C back while jobs are submitted and recorded: a job submitted but not yet in job.json would be
    submitted again by the next driver. The caller re-raises once the records are written."""
    caught: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield caught
        return
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield caught
    finally:
        signal.signal(signal.SIGINT, previous if previous is not None else signal.default_int_handler)


def _cancel_hint(store: RunStore, records: tp.Iterable[dict]) -> str:
    records = list(records)
    slurm = sorted({r["job_id"] for r in records if r.get("executor") == "slurm"})
    lines = [f"Interrupted: {len({r['job_id'] for r in records})} jobs keep running; rerun the same command to "
             "re-attach to them and wait."]
    if slurm:
        lines.append(f"  cancel them: scancel {' '.join(slurm)}")
    kinds = sorted({r["kind"] for r in records})
    lines.append(f"  or: {sys.executable} -m jobs cancel --store {store.root}"
                 + "".join(f" --kind {k}" for k in kinds))
    return "\n".join(lines)


@dataclasses.dataclass
class Report:
    """What run_units_report made of the units: results of the done ones, and the units that still failed after
    their retries (each with its cause and log)."""

    results: dict[str, dict]
    failures: list[Failure]
    peak_queued: int = 0  # most jobs this driver had queued or running at once (<= max_queued)


def run_units(units: tp.Iterable[Unit], store: RunStore | str | Path,
              executor_cfg: ExecutorConfig | None = None, *, desc: str = "train",
              poll_s: float | None = None, stream: tp.TextIO | None = None) -> dict[str, dict]:
    """Makes every unit done and returns {key: result}; raises UnitsFailed (after the others finish) if any fail."""
    report = run_units_report(units, store, executor_cfg, desc=desc, poll_s=poll_s, stream=stream)
    if report.failures:
        raise UnitsFailed(report.failures, len(report.results) + len(report.failures), desc)
    return report.results


Follow = tp.Callable[[Unit, "dict | None"], tp.Iterable[Unit]]


def run_units_report(units: tp.Iterable[Unit], store: RunStore | str | Path,
                     executor_cfg: ExecutorConfig | None = None, *, desc: str = "train",
                     poll_s: float | None = None, stream: tp.TextIO | None = None,
                     follow: Follow | None = None, awaited: tp.Collection[str] | None = None,
                     desc_of: tp.Callable[[Unit], str] | None = None) -> Report:
    """Like run_units, but a unit that fails after `max_retries` resubmissions is reported, never raised: the
    other units (and the stage that asked for them) carry on.

    Dataflow: `follow(unit, result)` is called once per unit as soon as it is final (its result dict; None when it
    failed for good), units done before the call included, and returns the units that this one made ready. Those of
    an `awaited` kind (default: every kind) are waited for like the given ones and their results are in the report;
    the others are *early* units of later stages: submitted as soon as the queue allows (longest first, like every
    unit), marked `early` in their job.json, and not waited for. The call returns when every awaited unit is final,
    leaving early jobs queued or running for the stage that needs them to adopt; early units not yet submitted are
    left to that stage. The debug executor runs no early units (nothing would overlap in-process). `desc_of(unit)`
    names each unit's jobs and log folder (default: `desc`), e.g. after the stage that would otherwise run it."""
    store = store if isinstance(store, RunStore) else RunStore(store)
    cfg = executor_cfg if executor_cfg is not None else load_executor_config()
    if not isinstance(desc, str):
        raise TypeError(f"run_units: desc must be a string, got {desc!r}")
    store.log_dir(desc)  # validates desc before anything runs
    units = _prepare(units, store)
    stream = stream if stream is not None else sys.stderr
    # checksums of what changed since commit, once per call: a damaged entry is quarantined and recomputed, never used
    todo = [u for u in units if not store.is_done(u.kind, u.key, verify="changed")]
    if cfg.kind == "slurm" and (todo or follow is not None):  # what the cluster refuses is named before any sbatch
        preflight(cfg, say=lambda line: stream.write(f"{desc}: {line}\n"))
    _write_snapshots(todo, store)
    failures: list[Failure] = []
    peak = 0
    if todo or follow is not None:
        rates = Estimator(store.root, cfg)  # measured throughput where the store has it, the cost model otherwise
        rates.apply(todo)
        if todo:
            for line in summary(todo, pending_reasons(todo, store.root), "units"):
                stream.write(f"{desc}: {line}\n")
            for line in placement_lines(todo, cfg, rates):  # where they go, before anything is submitted
                stream.write(f"{desc}: {line}\n")
        progress = Progress(total=len(units), done=0, desc=desc, stream=stream)
        try:
            driver = _Driver(store, cfg, desc, progress, poll_s, follow=follow, awaited=awaited, desc_of=desc_of,
                             rates=rates)
            failures, peak = driver.run(units, pending={u.key for u in todo}), driver.peak_jobs
            units = units + driver.followed
        finally:
            progress.close()
    failed = {f.unit.key for f in failures}
    return Report({u.key: store.result(u.kind, u.key) for u in units if u.key not in failed}, failures, peak)


def _write_snapshots(units: tp.Sequence[Unit], store: RunStore) -> None:
    """Before anything is submitted: the code each unit's key names, in the store, for its job to import."""
    for fn, code, modules in sorted({(u.fn, u.code, u.modules) for u in units if u.code}):
        try:
            write_snapshot(store.root, [fn.split(":")[0], *modules], code)
        except SnapshotError as e:
            raise StoreError(f"{e} (nothing was submitted)") from e


@dataclasses.dataclass
class _Tracked:
    unit: Unit
    record: dict
    dead_since: float | None = None
    state: str = ""  # the scheduler's word at the last poll (RUNNING, PENDING, ...)
    running_since: float | None = None  # first poll that saw it RUNNING (what the ETA subtracts)
    progress_at: float = 0.0  # when its checkpoint was last read for a throughput sample


SUBMIT_BACKOFF_S = (5.0, 600.0)  # first and longest wait after a failed or refused sbatch
PROGRESS_EVERY_S = 300.0  # a running unit's checkpoint is read for its throughput at most this often
SUBMIT_GIVE_UP_S = 3600.0  # sbatch failing (not refusing: that is a limit, waited out) this long fails the units
OOM_MARKERS = ("OUT_OF_MEMORY", "OutOfMemoryError", "CUDA out of memory", "MemoryError", "oom-kill")
SCHEDULER_ENDED = {"ENDED", "COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "PREEMPTED",
                   "BOOT_FAIL", "DEADLINE"}  # the scheduler says the job is over: its own last heartbeat is moot


class _Driver:
    """Waits for units in jobs: adopts the live jobs an earlier driver recorded, submits the rest as the queue cap
    allows, resubmits a unit whose job failed up to `max_retries` times (more memory after an out-of-memory end),
    and reports what still failed. The store's submit lock is held only to decide and claim units, never across a
    scheduler call."""

    def __init__(self, store: RunStore, cfg: ExecutorConfig, desc: str, progress: Progress,
                 poll_s: float | None, *, follow: Follow | None = None, awaited: tp.Collection[str] | None = None,
                 desc_of: tp.Callable[[Unit], str] | None = None, rates: Estimator | None = None):
        self.store, self.cfg, self.desc, self.progress = store, cfg, desc, progress
        self.rates = rates or Estimator(store.root, cfg)  # sets estimate_s: --time, submission order, ETA
        self.computed: set[str] = set()  # units that were not done when this driver got them: each one that
        # ends done adds its measured throughput to the store's samples
        self.groups: dict[str, list[Unit]] = collections.defaultdict(list)  # units that run in one job together
        self.poll = poll_s if poll_s is not None else cfg.poll_interval()
        self.watch = JobWatch()
        self.active: dict[str, _Tracked] = {}
        self.waiting: list[Unit] = []
        self.retries: dict[str, int] = {}
        self.mem: dict[str, float] = {}
        self.failures: list[Failure] = []
        self.done = progress.bar.n  # awaited units done (those done before the call included, as they come)
        self.cap: int | None = cfg.parallel if cfg.kind == "local" else cfg.max_queued
        if cfg.kind == "slurm" and (limit := submit_limit(cfg.qos)) is not None and (self.cap or limit + 1) > limit:
            # known up front: no array is refused (and waited on) to find it
            self.cap = limit
            progress.write(f"{desc}: the scheduler accepts at most {limit} jobs of this user at once (sacctmgr): "
                           "queuing no more")
        self.base_cap = self.cap  # a refusal lowers `cap`; each accepted submission raises it by what it queued
        self.longest_chain_s = 0.0  # of the units given or followed: the reference of chain_nice
        self.cfgs: dict[tuple, ExecutorConfig] = {}  # unit_cfg's memo
        self.ceiling: int | None = None  # just below the level of our jobs at which the scheduler last refused
        self.next_submit = 0.0
        self.backoff = SUBMIT_BACKOFF_S[0]
        self.failing_since: float | None = None
        self.peak_jobs = 0
        self.known: dict[str, dict | None] = {}  # the job.json we last saw (or wrote) per unit
        self.follow = follow
        self.desc_of = desc_of or (lambda unit: desc)  # names the jobs (and their log folders) of each unit
        self.awaited_kinds = None if awaited is None else set(awaited)
        self.seen: set[str] = set()  # every unit this driver was given or followed
        self.final: set[str] = set()  # units whose outcome was handed to `follow`
        self.early: set[str] = set()  # followed units of later stages: submitted, never waited for
        self.followed: list[Unit] = []  # awaited units that `follow` added (the report holds their results)
        self.inbox: list[Unit] = []  # units `follow` handed on, not added yet (see drain)
        self.snapshots: set[tuple[str, str]] = set()  # (fn, code) whose snapshot a followed unit already wrote
        self.totals: collections.Counter[str] = collections.Counter()
        self.outcomes: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
        self.durations: dict[str, list[float]] = collections.defaultdict(list)

    def jobs(self) -> int:
        return len({t.record["job_id"] for t in self.active.values()})

    def awaiting(self) -> bool:
        return any(k not in self.early for k in self.active) or any(u.key not in self.early for u in self.waiting)

    def run(self, todo: tp.Sequence[Unit], pending: set[str] | None = None) -> list[Failure]:
        """`todo`: prepared units; `pending`: the keys among them that are not done (default: all)."""
        try:  # from the start: a Ctrl-C just after the held-back one is released must still print the hint
            self.add(todo, pending=pending)
            self.drain()
            while self.awaiting():
                if self.cfg.kind == "debug":
                    self.run_one_in_process()
                else:
                    self.submit_some()
                    self.poll_active()
                self.drain()
                self.show()
                if self.awaiting() and self.cfg.kind != "debug":
                    _sleep(self.poll)
            self.leave_early()
        except KeyboardInterrupt:
            self.progress.close()
            records = [dict(t.record, kind=t.unit.kind) for t in self.active.values()] or [
                dict(r, kind=u.kind) for u in todo  # interrupted before anything was tracked: what the store says
                if not self.store.is_done(u.kind, u.key) and (r := job_record(self.store, u.kind, u.key)) is not None]
            if records:
                self.progress.write(_cancel_hint(self.store, records))
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
            if early and self.cfg.kind == "debug":
                continue
            self.seen.add(unit.key)
            self.totals[unit.kind] += 1
            self.longest_chain_s = max(self.longest_chain_s, unit.chain_s)
            if early:
                self.early.add(unit.key)
            elif not given:
                self.followed.append(unit)
                self.progress.bar.total += 1
            new.append(unit)
        if not new:
            return
        self.rates.apply(new)
        for unit in new:
            if unit.group:
                self.groups[unit.group].append(unit)
        done = [u for u in new if (u.key not in pending if pending is not None
                                   else self.store.is_done(u.kind, u.key, verify="changed"))]
        finished = {u.key for u in done}
        todo = [u for u in new if u.key not in finished]
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
        if failure is None and unit.key in self.computed and self.rates.observe(unit, self.store):
            # a new measurement of this shape: the next units' --time and the ETA follow it
            self.rates.apply([*self.waiting, *(t.unit for t in self.active.values())])
        if failure is None and unit.key not in self.early:
            self.done += 1
        if failure is not None:
            if unit.key in self.early:  # the stage that needs it retries it (its error.txt stays)
                self.progress.write(f"early {failure.line()} (left to the stage that needs it)")
            else:
                self.failures.append(failure)
                self.progress.write(failure.line())
        if self.follow is not None:
            self.inbox += self.follow(unit, None if failure else self.store.result(unit.kind, unit.key)) or ()

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
        if self.waiting and self.cfg.kind != "debug":
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
        start = time.time()
        if execute_unit(self.store, unit) == "failed":
            err = self.store.path(unit.kind, unit.key) / ERROR
            self.finish(unit, Failure(unit, _last_line(err.read_text(errors="replace")), str(err), str(err)))
        else:
            self.progress.durations.append(time.time() - start)
            self.durations[unit.kind].append(time.time() - start)
            self.finish(unit)
        self.drain()

    def show(self) -> None:
        rows: dict[str, dict[str, int]] = {}
        for kind in self.totals:
            running = sum(1 for t in self.active.values() if t.unit.kind == kind and t.state.startswith("RUNNING"))
            in_jobs = sum(1 for t in self.active.values() if t.unit.kind == kind)
            rows[kind] = {"total": self.totals[kind], "done": self.outcomes[kind]["done"], "running": running,
                          "queued": in_jobs - running + sum(1 for u in self.waiting if u.kind == kind),
                          "failed": self.outcomes[kind]["failed"]}
        self.progress.update_kinds(self.done, rows, self.durations, max(1, self.jobs()), sum(self.retries.values()),
                                   etas=self.etas())

    def etas(self) -> dict[str, tuple[float, str]]:
        """Per kind, (seconds, measured/assumed) until its awaited units are done, from their estimates, spread over
        the jobs running (all queued ones while none runs): jobs.throughput.kind_etas."""
        tracked = [(t.unit, t.running_since) for k, t in self.active.items() if k not in self.early]
        running = len({t.record["job_id"] for t in self.active.values() if t.running_since is not None})
        if self.cfg.kind == "local" and self.cap:
            # every task of a local array looks alive while only `parallel` of them compute: count those alone
            first = sorted(range(len(tracked)), key=lambda i: tracked[i][1] or math.inf)[: self.cap]
            tracked = [(u, since if i in first else None) for i, (u, since) in enumerate(tracked)]
            running = min(running, self.cap)
        pending = [(u, None) for u in self.waiting if u.key not in self.early] + tracked
        return kind_etas(pending, self.rates.sources, running or self.jobs() or (self.cap or 1), self.durations)

    def adopt(self, todo: tp.Sequence[Unit]) -> None:
        store = self.store
        seen = {u.key: job_record(store, u.kind, u.key) for u in todo}
        self.watch.refresh([r for r in seen.values() if r], force=True)  # outside the lock: sacct may be slow
        adopted = len(self.active)
        done: list[Unit] = []
        with store.submit_lock(say=self.progress.write):
            for unit in todo:
                if store.is_done(unit.kind, unit.key):  # a concurrent driver finished it while we waited
                    done.append(unit)
                    continue
                record = self.known[unit.key] = job_record(store, unit.kind, unit.key)
                failed_there = store.error(unit.kind, unit.key) is not None  # its job may still run other units
                if record is not None and not failed_there and (record != seen[unit.key]
                                                                or self._alive(unit, record)[0]):
                    self.active[unit.key] = _Tracked(unit, record)  # live, or just submitted by another driver
                else:
                    self.waiting.append(unit)
        if len(self.active) > adopted:
            fresh = [self.active[u.key] for u in todo if u.key in self.active]
            self.progress.write(f"{self.desc}: re-attached to {len(fresh)} units in "
                                f"{len({t.record['job_id'] for t in fresh})} running jobs")
        for unit in done:
            self.finish(unit)

    def _alive(self, unit: Unit, record: dict) -> tuple[bool, str]:
        if record.get("executor") == CLAIM:
            if claim_alive(record):
                return True, "SUBMITTING"
            return False, f"not submitted: driver pid {record.get('driver_pid')} on {record.get('host')} is gone"
        try:
            alive, state = self.watch.state(record)
        except ElsewhereError as e:
            raise StoreError(f"unit {unit.name} ({unit.kind}/{unit.key}): {e}") from None
        if alive:
            return True, state
        beat = self.store.heartbeat(unit.kind, unit.key)
        fresh = beat is not None and beat["age_s"] < HEARTBEAT_STALE_AFTER * heartbeat_every_s()
        # a job the scheduler does not show us (PrivateData, another user's job) lives while its heartbeat is
        # fresh; so does another job that holds the unit's run lock (a duplicate submission left it to that one)
        if fresh and beat is not None and (str(beat.get("job_id")) != str(record["job_id"])
                                           or state.split(" ")[0] not in SCHEDULER_ENDED):
            return True, f"{state}, heartbeat {beat['age_s']:.0f}s ago from job {beat.get('job_id')}"
        return False, state

    def submit_some(self) -> None:
        if not self.waiting or time.time() < self.next_submit:
            return
        slots = len(self.waiting) if self.cap is None else self.cap - self.jobs()
        if slots <= 0:
            return
        tried, queued_before = slots, self.jobs()
        # longest chain first (the unit's estimate plus the work that waits on it): those chains bound the makespan;
        # short ones fill the gaps they leave (a stable sort keeps a group's units, and equal chains, in their order)
        self.waiting.sort(key=lambda u: -u.chain_s)
        groups: dict[tuple[tp.Any, ...], tuple[ExecutorConfig, list[Unit]]] = {}
        for unit in self.waiting:  # one array per distinct resource request, priority and job name
            cfg = self.unit_cfg(unit)
            groups.setdefault((self.desc_of(unit), unit.kind, cfg.mem_gb, cfg.timeout_min, cfg.extra.get("nice")),
                              (cfg, []))[1].append(unit)
        error: Exception | None = None
        for (desc, *_), (cfg, units) in groups.items():
            packs = _packs(units, cfg, slots)
            if not packs:
                break
            with self.store.submit_lock(say=self.progress.write):  # decide and claim; sbatch runs after release
                packs = [[u for u in pack if self._still_ours(u)] for pack in packs]
                packs = [p for p in packs if p]
                for unit in (u for pack in packs for u in pack):
                    with owner_only_files():
                        self.known[unit.key] = self.store.claim(unit.kind, unit.key, desc=desc, **self.mark(unit),
                                                                **unit_field(unit.kind, unit.key))
            with _sigint_deferred() as interrupted:
                records, error = _submit(packs, self.store, cfg, desc, self.watch, self.mark)
            self.known.update(records)
            submitted = {u.key for pack in packs for u in pack if u.key in records}
            for unit in (u for pack in packs for u in pack if u.key not in submitted):
                self.store.clear_job(unit.kind, unit.key)  # release the claim: free for any driver again
                self.known[unit.key] = None
            for unit in (u for pack in packs for u in pack if u.key in submitted):
                self.active[unit.key] = _Tracked(unit, records[unit.key])
            self.waiting = [u for u in self.waiting if u.key not in submitted and u.key not in self.active]
            slots -= len({records[k]["job_id"] for k in submitted})
            self.peak_jobs = max(self.peak_jobs, self.jobs())
            if interrupted:
                raise KeyboardInterrupt
            if error is not None or slots <= 0:
                break
        if error is None:
            self.backoff, self.failing_since = SUBMIT_BACKOFF_S[0], None
            if self.cap != self.base_cap and self.cap is not None:
                # probe higher: as far again as just accepted, but one job at a time near the level last refused
                grown = self.cap + max(1, self.jobs() - queued_before)
                if self.ceiling is not None:
                    grown = min(grown, max(self.ceiling, self.cap) + 1)
                    self.ceiling = max(self.ceiling, self.cap)
                self.cap = grown if self.base_cap is None else min(self.base_cap, grown)
            return
        if isinstance(error, SubmitRejected):
            running = self.jobs()
            raise SubmitRejected(f"{error}; nothing more was submitted" + (
                f" ({running} jobs submitted before keep running: the next run re-attaches to them)" if running
                else ""))
        now = time.time()
        if isinstance(error, SubmitRefused):
            # the limit counts every job of ours on the cluster, not only this driver's: queue no more than what
            # the scheduler accepted, until jobs end
            # (an array crossing the limit is refused whole: with nothing of ours queued, try a smaller one)
            # the limit lies between what is queued now and that plus the refused array: try half of it next (one
            # job at a time from the queued count made a long ramp after a driver restart)
            self.cap = max(1, self.jobs() + max(1, error.size) // 2) if self.jobs() else max(
                1, min(tried, self.cap or tried) // 2)
            self.ceiling = self.jobs() + max(1, error.size) - 1
            self.progress.write(f"{error}; waiting for running jobs to end (queued now: {self.jobs()})")
            # the controller answered at once: it is not overloaded, and a refusal is answered by waiting for jobs
            # to end, not by backing off further (a doubled wait idled the cluster once jobs had ended)
            self.next_submit = now + SUBMIT_BACKOFF_S[0]
            return
        else:
            self.failing_since = self.failing_since or now
            if now - self.failing_since > SUBMIT_GIVE_UP_S:
                given_up, self.waiting = self.waiting, []
                for unit in given_up:
                    self.finish(unit, Failure(unit, f"not submitted: {error}", ""))
                return
            self.progress.write(f"{error}; retrying in {self.backoff:.0f}s")
        self.next_submit = now + self.backoff
        self.backoff = min(SUBMIT_BACKOFF_S[1], self.backoff * 2)

    def mark(self, unit: Unit) -> dict[str, str]:
        """job.json's proof that this stage submitted the unit early for a later one (see cancel_early)."""
        return {"early": self.desc} if unit.key in self.early else {}

    def unit_cfg(self, unit: Unit) -> ExecutorConfig:
        """The unit's kind profile, with the memory an out-of-memory retry raised, the --time its estimate asks and
        the --nice its chain asks. Memoized: a validated config per distinct request (thousands of waiting units
        share a handful, and the driver asks at every submission)."""
        nice = chain_nice(unit.chain_s, self.longest_chain_s) if self.cfg.chain_priority else None
        job_s = self.job_estimate_s(unit)
        ident = (unit.kind, self.mem.get(unit.key), job_s, nice)
        if ident not in self.cfgs:
            cfg = self.cfg.for_kind(unit.kind)
            changes: dict[str, tp.Any] = {}
            if unit.key in self.mem:
                changes["mem_gb"] = self.mem[unit.key]
            if cfg.kind == "slurm" and cfg.time_safety_factor is not None and job_s is not None:
                changes["timeout_min"] = unit_time_min(cfg, job_s, partition_time_limit_min(cfg.partition))
            if cfg.kind == "slurm" and nice is not None and "nice" not in cfg.extra:
                changes["extra"] = {**cfg.extra, "nice": nice}
            self.cfgs[ident] = cfg.replace(**changes) if changes else cfg
        return self.cfgs[ident]

    def job_estimate_s(self, unit: Unit) -> float | None:
        """Seconds of the job the unit runs in, what its --time must cover: its group's unfinished units one after
        another (an AutoAttack shard's blocks), else units_per_job units like it."""
        if unit.estimate_s is None:
            return None
        if unit.group:
            return sum(u.estimate_s or 0.0 for u in self.groups.get(unit.group, [unit]) if u.key not in self.final)
        return unit.estimate_s * (self.cfg.for_kind(unit.kind).units_per_job or 1)

    def _still_ours(self, unit: Unit) -> bool:
        """Under the submit lock: false if the unit got done, or another driver submitted it, since we decided."""
        if self.store.is_done(unit.kind, unit.key):
            self.waiting.remove(unit)
            self.finish(unit)
            return False
        record = job_record(self.store, unit.kind, unit.key)
        if record is not None and record != self.known.get(unit.key):  # another driver submitted it meanwhile
            self.known[unit.key] = record
            self.active[unit.key] = _Tracked(unit, record)
            self.waiting.remove(unit)
            return False
        return True

    def poll_active(self) -> None:
        self.watch.refresh([t.record for t in self.active.values()])
        grace = SLURM_LOST_GRACE_S if self.cfg.kind == "slurm" else 0.0
        for key, tracked in list(self.active.items()):
            if tracked.record.get("executor") == CLAIM:  # another driver's submission: its record may have landed
                tracked.record = job_record(self.store, tracked.unit.kind, tracked.unit.key) or tracked.record
            unit, record = tracked.unit, tracked.record
            alive, state = self._alive(unit, record)  # sampled before is_done: a job that ended after committing
            tracked.state = state
            if state.startswith("RUNNING"):
                now = time.time()
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
            failure = _failure(self.store, tracked, alive, state, grace)
            if failure is None:
                continue
            del self.active[key]
            self.retry_or_fail(failure, record, state)

    def retry_or_fail(self, failure: Failure, record: dict, state: str) -> None:
        unit, cfg = failure.unit, self.cfg.for_kind(failure.unit.kind)
        oom = any(m in failure.error or m in state for m in OOM_MARKERS) or any(
            m in (self.store.error(unit.kind, unit.key) or "") for m in OOM_MARKERS)
        attempt = self.retries.get(unit.key, 0) + 1
        cause = ("out of memory: " if oom else "") + failure.error
        self.store.record_attempt(unit.kind, unit.key, cause, job_id=str(record.get("job_id")), log=failure.log,
                                  retry=attempt <= cfg.max_retries)
        if attempt > cfg.max_retries:
            failure.retries = attempt - 1
            self.finish(unit, failure)
            return
        self.retries[unit.key] = attempt
        mem = self.mem.get(unit.key, cfg.mem_gb)
        if oom and mem is not None:
            raised = mem * cfg.oom_mem_factor
            self.mem[unit.key] = min(raised, cfg.max_mem_gb) if cfg.max_mem_gb else raised
        more = f", mem {self.mem[unit.key]:g} GB" if unit.key in self.mem else ""
        self.progress.write(f"retrying unit {unit.name} ({unit.key}), attempt {attempt + 1} of "
                            f"{cfg.max_retries + 1}{more}: {cause}; log: {failure.log}")
        self.store.clear_error(unit.kind, unit.key)
        self.waiting.append(unit)


def _failure(store: RunStore, tracked: _Tracked, alive: bool, state: str, grace: float) -> Failure | None:
    """The unit's failure, if its entry holds error.txt or its job has ended (for `grace` s) without a result."""
    unit, record = tracked.unit, tracked.record
    log = record.get("log_paths", {}).get("stderr", "")
    error = store.error(unit.kind, unit.key)
    if error is not None:
        return Failure(unit, _last_line(error), log, str(store.path(unit.kind, unit.key) / ERROR))
    if alive:
        return None
    now = time.time()
    tracked.dead_since = tracked.dead_since or now
    if now - tracked.dead_since < grace:
        return None
    own = owned_record(store, unit.kind, unit.key)
    # a record someone else wrote may name any file we can read (the tail would land in attempts.json)
    tail = _log_tail(log) if own is not None and own[OWN] and own["job_id"] == str(record["job_id"]) else ""
    return Failure(unit, f"job {record['job_id']} ended ({state}) without committing a result"
                   + (f"; last log line: {tail}" if tail else ""), log)
