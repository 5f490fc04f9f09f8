"""Running units: skip what the store has, adopt jobs still in flight, submit the rest as job arrays, wait.

The store is the source of truth, not submitit's result pickles: a unit is finished when its entry is committed,
failed when its entry holds `error.txt` or its job ended without committing. That is what lets a new driver (after
the old one was killed, or a second `dvc repro`) pick up jobs it did not submit.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import importlib
import math
import os
import re
import signal
import sys
import threading
import time
import traceback
import typing as tp
from pathlib import Path

import submitit

from jobs.executors import ElsewhereError, ExecutorConfig, JobWatch, load_executor_config, make_executor
from jobs.environment import environment
from jobs.keys import config_digest
from jobs.progress import Progress
from jobs.snapshot import SnapshotError, use_snapshot, write_snapshot
from jobs.store import ERROR, RunStore, StoreError, dump_json
from jobs.why import pending_reasons, summary

FN_RE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
SLURM_LOST_GRACE_S = 60.0  # a shared filesystem may show a finished job's files on the login node late
_sleep = time.sleep  # the driver's only wait; tests replace it to interrupt the driver mid-wait


@dataclasses.dataclass
class Unit:
    """One computation. `fn` ("module:function") is called as fn(config, workdir, store) -> result dict.

    `deps`: (kind, key) entries that must be done before this unit may run (checked before submitting).
    `code`: the code digest in the unit's key (jobs.keys.code_digest of fn's module); when set, the job imports fn
    from the store's snapshot of that code (jobs.snapshot), not from the checkout.
    `group`: units with the same non-empty group run in one job (a scheduling choice, never part of the key).
    """

    kind: str
    key: str
    fn: str
    config: tp.Dict[str, tp.Any]
    label: str = ""
    deps: tp.Tuple[tp.Tuple[str, str], ...] = ()
    code: str = ""
    group: str = ""

    @property
    def name(self) -> str:
        return self.label or self.key[:12]


@dataclasses.dataclass
class Failure:
    unit: Unit
    error: str
    log: str
    traceback: tp.Optional[str] = None

    def line(self) -> str:
        extra = f" (traceback: {self.traceback})" if self.traceback and self.traceback != self.log else ""
        return f"unit {self.unit.name} ({self.unit.key}) failed: {self.error}; log: {self.log}{extra}"


class UnitsFailed(RuntimeError):
    def __init__(self, failures: tp.Sequence[Failure], total: int, desc: str):
        self.failures = list(failures)
        lines = [f"{desc}: {len(self.failures)} of {total} units failed (the others are committed; rerun to "
                 "retry only the failed ones):"] + [f"  {f.line()}" for f in self.failures]
        super().__init__("\n".join(lines))


class UnitError(RuntimeError):
    """Raised at the end of a job in which some packed units failed, so the job itself reports failure."""


# -- job side ----------------------------------------------------------------------------------------------------------
def resolve_fn(spec: str) -> tp.Callable[..., tp.Any]:
    if not isinstance(spec, str) or not FN_RE.match(spec):
        raise ValueError(f"unit fn {spec!r} must be 'module:function' (e.g. 'pipeline.units.train:train_unit')")
    module_name, func_name = spec.split(":")
    module = importlib.import_module(module_name)
    fn = getattr(module, func_name, None)
    if not callable(fn):
        raise AttributeError(f"unit fn {spec!r}: module {module_name!r} has no function {func_name!r}")
    return fn


def _job_id() -> str:
    for var in ("SLURM_ARRAY_JOB_ID", "SLURM_JOB_ID", "SUBMITIT_LOCAL_JOB_ID"):
        if os.environ.get(var):
            if var == "SLURM_ARRAY_JOB_ID":
                return f"{os.environ[var]}_{os.environ.get('SLURM_ARRAY_TASK_ID', '')}"
            return os.environ[var]
    return f"pid{os.getpid()}"


def execute_unit(store: RunStore, unit: Unit) -> str:
    """Runs one unit unless done; returns "skipped", "done" or "failed" (traceback in the entry's error.txt)."""
    if store.is_done(unit.kind, unit.key, verify="changed"):
        return "skipped"
    with store.run_lock(unit.kind, unit.key):  # a duplicate job waits here, then finds the unit done
        if store.is_done(unit.kind, unit.key):
            return "skipped"
        store.clear_error(unit.kind, unit.key)
        workdir = store.workdir(unit.kind, unit.key)
        start = time.time()
        try:
            result = resolve_fn(unit.fn)(copy.deepcopy(unit.config), workdir, store)
            if not isinstance(result, dict):
                raise TypeError(f"unit fn {unit.fn} returned {type(result).__name__}; it must return a dict")
            store.commit(unit.kind, unit.key, result,
                         meta={"seconds": time.time() - start, "fn": unit.fn, "label": unit.label,
                               "job_id": _job_id(), "code": unit.code, "config": config_digest(unit.config),
                               "env": environment()})
            return "done"
        except Exception:  # noqa: BLE001 -- one unit's failure must not stop the others packed in this job
            text = traceback.format_exc()
            store.record_error(unit.kind, unit.key, text)
            print(f"unit {unit.name} ({unit.key}) failed:\n{text}", file=sys.stderr, flush=True)
            return "failed"


def limit_threads() -> None:
    """Size the math libraries' thread pools to the CPUs this job was given, before any of them is imported.

    Without cgroups a job sees every core of the node; N jobs x all cores threads oversubscribe it badly.
    """
    if "OMP_NUM_THREADS" not in os.environ:
        cpus = os.environ.get("SLURM_CPUS_PER_TASK") or os.environ.get("AWD_JOB_CPUS")
        if cpus:
            os.environ["OMP_NUM_THREADS"] = cpus


def execute_units(store_root: tp.Union[str, Path], units: tp.Sequence[Unit]) -> tp.Dict[str, str]:
    """Job entry point: each unit in turn; raises UnitError at the end if any failed."""
    limit_threads()
    store = RunStore(store_root)
    outcome = {}
    for unit in units:
        print(f"unit {unit.name} ({unit.kind}/{unit.key}): start", file=sys.stderr, flush=True)
        try:
            if unit.code:
                use_snapshot(store.root, unit.code)  # on every start, requeues included
        except SnapshotError as e:
            store.record_error(unit.kind, unit.key, f"SnapshotError: {e}\n")
            print(f"unit {unit.name} ({unit.key}) refused: {e}", file=sys.stderr, flush=True)
            outcome[unit.key] = "failed"
            continue
        outcome[unit.key] = execute_unit(store, unit)
        print(f"unit {unit.name} ({unit.kind}/{unit.key}): {outcome[unit.key]}", file=sys.stderr, flush=True)
    failed = [k for k, v in outcome.items() if v == "failed"]
    if failed:
        raise UnitError(f"{len(failed)} of {len(units)} units failed: {', '.join(failed)} (see their error.txt)")
    return outcome


class UnitBatch(submitit.helpers.Checkpointable):
    """What a job runs. On preemption or time-out submitit calls checkpoint() and requeues the same call: done
    units are skipped and the unit that was interrupted resumes from the checkpoint files in its workdir."""

    def __init__(self, store_root: str, units: tp.Sequence[Unit]):
        self.store_root = str(store_root)
        self.units = list(units)

    def __call__(self) -> tp.Dict[str, str]:
        return execute_units(self.store_root, self.units)

    def checkpoint(self, *args: tp.Any, **kwargs: tp.Any) -> submitit.helpers.DelayedSubmission:
        return submitit.helpers.DelayedSubmission(UnitBatch(self.store_root, self.units))


# -- driver side -------------------------------------------------------------------------------------------------------
def _prepare(units: tp.Iterable[Unit], store: RunStore, check_deps: bool = True) -> tp.List[Unit]:
    """Validates and de-duplicates; every error names the unit and is raised before anything is submitted."""
    seen: tp.Dict[tp.Tuple[str, str], Unit] = {}
    resolved: tp.Set[str] = set()
    for unit in units:
        if not isinstance(unit, Unit):
            raise TypeError(f"run_units: expected jobs.submit.Unit, got {type(unit).__name__}: {unit!r}")
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
    for unit in seen.values() if check_deps else ():
        for dep in unit.deps:
            if not (isinstance(dep, (tuple, list)) and len(dep) == 2):
                raise ValueError(f"unit {unit.name}: deps must be (kind, key) pairs, got {dep!r}")
            if not store.is_done(*dep, verify="changed"):
                raise ValueError(f"unit {unit.name} ({unit.kind}/{unit.key}) depends on {dep[0]}/{dep[1]}, which "
                                 f"is not done in {store.root}; run the stage that produces it first")
    return list(seen.values())


def dry_run(units: tp.Iterable[Unit], store: RunStore) -> tp.List[Unit]:
    """The de-duplicated units that are not done (what run_units would run or wait for); deps are not checked,
    since a later stage's units may depend on entries an earlier stage has yet to make."""
    store = store if isinstance(store, RunStore) else RunStore(store)
    return [u for u in _prepare(units, store, check_deps=False) if not store.is_done(u.kind, u.key)]


def _packs(units: tp.Sequence[Unit], cfg: ExecutorConfig, busy: int = 0) -> tp.List[tp.List[Unit]]:
    per_job = cfg.units_per_job or 1
    atoms: tp.Dict[tp.Any, tp.List[Unit]] = {}  # a group stays together; an ungrouped unit is its own atom
    for i, unit in enumerate(units):
        atoms.setdefault(unit.group or i, []).append(unit)
    parts = list(atoms.values())
    if cfg.kind == "local":
        # LocalExecutor starts every job at once: at most max_parallel jobs (counting `busy` adopted ones),
        # atoms dealt round-robin
        n_jobs = min(math.ceil(len(parts) / per_job), max(1, cfg.parallel - busy))
        return [[u for part in parts[i::n_jobs] for u in part] for i in range(n_jobs)]
    singles = [part[0] for part in parts if not part[0].group]
    grouped = [part for part in parts if part[0].group]
    return grouped + [singles[i:i + per_job] for i in range(0, len(singles), per_job)]


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "(empty)"


def _log_tail(path: tp.Optional[str]) -> str:
    if not path:
        return ""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 4096))
            return _last_line(f.read().decode(errors="replace"))
    except OSError:
        return ""


def _submit(units: tp.Sequence[Unit], store: RunStore, cfg: ExecutorConfig, desc: str,
            watch: JobWatch, busy: int = 0) -> tp.Dict[str, dict]:
    """Submits under the caller's store lock; job.json is written per array as soon as sbatch answers, so a crash
    between arrays leaves nothing submitted without a record."""
    log_dir = store.log_dir(desc)
    executor = make_executor(cfg, log_dir)
    for unit in units:
        store.clear_error(unit.kind, unit.key)
        store.clear_job(unit.kind, unit.key)
        store.write_config(unit.kind, unit.key, unit.config)
    packs = _packs(units, cfg, busy)
    chunk = cfg.max_array_size if cfg.kind == "slurm" else len(packs)
    records: tp.Dict[str, dict] = {}
    for start in range(0, len(packs), chunk):
        group = packs[start:start + chunk]
        try:
            jobs = executor.submit_array([UnitBatch(str(store.root), pack) for pack in group])
        except Exception as e:
            raise RuntimeError(f"{desc}: submitting {len(group)} {cfg.kind} jobs failed: {e}") from e
        for job, pack in zip(jobs, group):
            watch.track(job)
            logs = {"stdout": str(job.paths.stdout), "stderr": str(job.paths.stderr)}
            for index, unit in enumerate(pack):
                store.record_jobs(unit.kind, unit.key, job.job_id, cfg.kind, logs, folder=str(log_dir), desc=desc,
                                  pack_index=index, pack_size=len(pack))
                records[unit.key] = store.job_record(unit.kind, unit.key)
    return records


@contextlib.contextmanager
def _sigint_deferred() -> tp.Iterator[tp.List[int]]:
    """Holds Ctrl-C back while jobs are submitted and recorded: a job submitted but not yet in job.json would be
    submitted again by the next driver. The caller re-raises once the records are written."""
    caught: tp.List[int] = []
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


def run_units(units: tp.Iterable[Unit], store: tp.Union[RunStore, str, Path],
              executor_cfg: tp.Optional[ExecutorConfig] = None, *, desc: str = "train",
              poll_s: tp.Optional[float] = None, stream: tp.Optional[tp.TextIO] = None) -> tp.Dict[str, dict]:
    """Makes every unit done and returns {key: result}; raises UnitsFailed (after the others finish) if any fail."""
    store = store if isinstance(store, RunStore) else RunStore(store)
    cfg = executor_cfg if executor_cfg is not None else load_executor_config()
    if not isinstance(desc, str):
        raise TypeError(f"run_units: desc must be a string, got {desc!r}")
    store.log_dir(desc)  # validates desc before anything runs
    units = _prepare(units, store)
    stream = stream if stream is not None else sys.stderr
    # checksums of what changed since commit, once per call: a damaged entry is quarantined and recomputed, never used
    todo = [u for u in units if not store.is_done(u.kind, u.key, verify="changed")]
    _write_snapshots(todo, store)
    if todo:
        for line in summary(todo, pending_reasons(todo, store.root), "units"):
            stream.write(f"{desc}: {line}\n")
        progress = Progress(total=len(units), done=len(units) - len(todo), desc=desc, stream=stream)
        try:
            if cfg.kind == "debug":
                failures = _run_in_process(todo, store, progress)
            else:
                failures = _run_jobs(todo, store, cfg, desc, progress, poll_s)
        finally:
            progress.close()
        if failures:
            raise UnitsFailed(failures, len(units), desc)
    return {u.key: store.result(u.kind, u.key) for u in units}


def _write_snapshots(units: tp.Sequence[Unit], store: RunStore) -> None:
    """Before anything is submitted: the code each unit's key names, in the store, for its job to import."""
    for fn, code in sorted({(u.fn, u.code) for u in units if u.code}):
        try:
            write_snapshot(store.root, fn.split(":")[0], code)
        except SnapshotError as e:
            raise StoreError(f"{e} (nothing was submitted)") from e


def _run_in_process(todo: tp.Sequence[Unit], store: RunStore, progress: Progress) -> tp.List[Failure]:
    failures: tp.List[Failure] = []
    done = progress.bar.n
    for i, unit in enumerate(todo):
        start = time.time()
        status = execute_unit(store, unit)
        if status == "failed":
            err = store.path(unit.kind, unit.key) / ERROR
            failures.append(Failure(unit, _last_line(err.read_text(errors="replace")), str(err), str(err)))
            progress.write(failures[-1].line())
        else:
            done += 1
            progress.durations.append(time.time() - start)
        progress.update(done, len(todo) - i - 1, len(failures), 1)
    return failures


@dataclasses.dataclass
class _Tracked:
    unit: Unit
    record: dict
    dead_since: tp.Optional[float] = None


def _adopt_or_submit(todo: tp.Sequence[Unit], store: RunStore, cfg: ExecutorConfig, desc: str,
                     progress: Progress, watch: JobWatch) -> tp.Tuple[tp.Dict[str, _Tracked], int, bool]:
    """Under the store lock: adopt units whose recorded job still runs, submit the others.

    Returns (units to wait for, units found done meanwhile, whether Ctrl-C arrived during submission)."""
    with store.submit_lock(say=progress.write):
        pending = [u for u in todo if not store.is_done(u.kind, u.key)]  # a concurrent driver may have finished
        records = {u.key: store.job_record(u.kind, u.key) for u in pending}  # some while we waited for the lock
        watch.refresh([r for r in records.values() if r], force=True)
        adopted: tp.Dict[str, _Tracked] = {}
        to_submit: tp.List[Unit] = []
        for unit in pending:
            record = records[unit.key]
            try:
                alive = record is not None and watch.state(record)[0]
            except ElsewhereError as e:
                raise StoreError(f"unit {unit.name} ({unit.kind}/{unit.key}): {e}") from None
            if alive:
                adopted[unit.key] = _Tracked(unit, record)
            else:
                to_submit.append(unit)
        busy = len({t.record["job_id"] for t in adopted.values()})
        if adopted:
            progress.write(f"{desc}: re-attached to {len(adopted)} units in {busy} running jobs")
        interrupted: tp.List[int] = []
        if to_submit:
            with _sigint_deferred() as interrupted:
                submitted = _submit(to_submit, store, cfg, desc, watch, busy)
            adopted.update({u.key: _Tracked(u, submitted[u.key]) for u in to_submit})
    return adopted, len(todo) - len(pending), bool(interrupted)


def _run_jobs(todo: tp.Sequence[Unit], store: RunStore, cfg: ExecutorConfig, desc: str, progress: Progress,
              poll_s: tp.Optional[float]) -> tp.List[Failure]:
    watch = JobWatch()
    active: tp.Dict[str, _Tracked] = {}
    failures: tp.List[Failure] = []
    try:  # from the start: a Ctrl-C just after the held-back one is released must still print the hint
        active, done_meanwhile, interrupted = _adopt_or_submit(todo, store, cfg, desc, progress, watch)
        done = progress.bar.n + done_meanwhile
        poll = poll_s if poll_s is not None else cfg.poll_interval()
        grace = SLURM_LOST_GRACE_S if any(t.record.get("executor") == "slurm" for t in active.values()) else 0.0
        if interrupted:
            raise KeyboardInterrupt
        while active:
            watch.refresh([t.record for t in active.values()])
            alive_jobs = set()
            for key, tracked in list(active.items()):
                unit, record = tracked.unit, tracked.record
                alive, state = watch.state(record)  # sampled before is_done: a job that ended after committing
                if store.is_done(unit.kind, unit.key):  # is seen as done, never as lost
                    seconds = ((store.manifest(unit.kind, unit.key) or {}).get("meta") or {}).get("seconds")
                    if isinstance(seconds, (int, float)):
                        progress.durations.append(float(seconds))
                    done += 1
                    del active[key]
                    continue
                failure = _failure(store, tracked, alive, state, grace)
                if failure is None:
                    if alive:
                        alive_jobs.add(record["job_id"])
                    continue
                failures.append(failure)
                progress.write(failure.line())
                del active[key]
            progress.update(done, len(active), len(failures), max(1, len(alive_jobs)))
            if active:
                _sleep(poll)
    except KeyboardInterrupt:
        progress.close()
        records = [dict(t.record, kind=t.unit.kind) for t in active.values()] or [
            dict(r, kind=u.kind) for u in todo  # interrupted before `active` was returned: what the store records
            if not store.is_done(u.kind, u.key) and (r := store.job_record(u.kind, u.key)) is not None]
        if records:
            print(_cancel_hint(store, records), file=progress.stream, flush=True)
        raise
    return failures


def _failure(store: RunStore, tracked: _Tracked, alive: bool, state: str, grace: float) -> tp.Optional[Failure]:
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
    tail = _log_tail(log)
    return Failure(unit, f"job {record['job_id']} ended ({state}) without committing a result"
                   + (f"; last log line: {tail}" if tail else ""), log)
