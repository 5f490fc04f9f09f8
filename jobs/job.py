"""What runs inside a job: the unit record, running one unit into the store (run lock, heartbeat, commit or
error.txt), and `UnitBatch`, the checkpointable callable submitit pickles for each job.

Nothing here submits or waits; the driver side is jobs/driver.py.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import importlib
import logging
import os
import re
import stat
import sys
import threading
import time
import traceback
import typing as tp
from pathlib import Path

import filelock
import submitit

from jobs.console import configure_logging
from jobs.environment import environment
from jobs.keys import config_digest
from jobs.runlock import RUN_LOCK, RunLock
from jobs.snapshot import SnapshotError, use_snapshot
from jobs.store import ERROR, RunStore

log = logging.getLogger(__name__)

FN_RE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
HEARTBEAT_EVERY_S = 30.0  # $AWD_HEARTBEAT_S overrides (tests)
HANDOFF_POLL_S = 0.5  # how often a job holding its GPU for a hand-off looks for the driver's word

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
    config: dict[str, tp.Any]
    label: str = ""
    deps: tuple[tuple[str, str], ...] = ()
    code: str = ""
    group: str = ""
    estimate_s: float | None = None  # expected run time on one GPU (sizes --time; see ExecutorConfig)
    # estimated seconds of the longest chain of work that can start only once this unit is done (its evaluations, a
    # run chosen by its result): the driver starts the longest chains first
    tail_s: float = 0.0
    modules: tuple[str, ...] = ()  # plugin modules the config names: in `code` and the snapshot (jobs.keys.unit_closure)
    # seconds the job keeps its GPU once this unit is done, until the driver has submitted what it made ready (set by
    # the driver: jobs.policies.priority.handoff_s; a scheduling choice, never part of the key)
    handoff_s: float = 0.0

    @property
    def name(self) -> str:
        return self.label or self.key[:12]

    @property
    def chain_s(self) -> float:
        """This unit's estimate plus its tail: how long the campaign takes at least once this unit starts."""
        return (self.estimate_s or 0.0) + self.tail_s




class UnitError(RuntimeError):
    """Raised at the end of a job in which some packed units failed, so the job itself reports failure."""


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


def heartbeat_every_s() -> float:
    return float(os.environ.get("AWD_HEARTBEAT_S", HEARTBEAT_EVERY_S))


@contextlib.contextmanager
def _heartbeat(store: RunStore, unit: Unit) -> tp.Iterator[None]:
    """Refreshes the entry's heartbeat while the unit runs, so a driver that cannot see this job in sacct (another
    user's job, PrivateData=jobs) still knows it is alive."""
    stop = threading.Event()
    job_id = _job_id()

    def beat() -> None:
        while True:
            with contextlib.suppress(OSError):
                store.beat(unit.kind, unit.key, job_id)
            if stop.wait(heartbeat_every_s()):
                return

    thread = threading.Thread(target=beat, name="awd-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        store.clear_heartbeat(unit.kind, unit.key)


def _unwritable(store: RunStore, unit: Unit, e: OSError | None = None) -> str:
    entry = store.path(unit.kind, unit.key)
    try:
        st = os.stat(entry)
        whose = f" (uid {st.st_uid}, {stat.filemode(st.st_mode)})"
    except OSError:
        whose = ""
    return (f"cannot write {ERROR} into {entry}{whose}{f': {e}' if e else ''}; an entry of a shared store must be "
            "writable by the group (its creator's umask was not 002: chmod g+w it, or its owner removes it)")


def _report(store: RunStore, unit: Unit, text: str) -> None:
    """Puts `text` in the entry's error.txt (what the driver reads) and in the job's log; if the entry cannot be
    written, the log says why, and so does the job's last line (execute_units), which the driver quotes."""
    log.error("unit %s (%s) failed:\n%s", unit.name, unit.key, text)
    try:
        store.record_error(unit.kind, unit.key, text)
    except PermissionError as e:  # a member's umask: the log says why; a full disk instead fails the job loudly
        log.error("unit %s (%s): %s", unit.name, unit.key, _unwritable(store, unit, e))


def execute_unit(store: RunStore, unit: Unit) -> str:
    """Runs one unit unless done; returns "skipped", "done", "busy" (a live job holds its run lock: this duplicate
    leaves at once instead of holding a GPU until the other finishes) or "failed" (traceback in error.txt, or in
    the job's log when the entry cannot be written)."""
    if store.is_done(unit.kind, unit.key, verify="changed"):
        return "skipped"
    lock = RunLock(store.path(unit.kind, unit.key) / RUN_LOCK, root=store.root)
    try:
        store.quarantine_damaged([(unit.kind, unit.key)])  # damaged since the driver looked: start afresh
        store.workdir(unit.kind, unit.key)
        lock.acquire(timeout=0)
    except filelock.Timeout:
        beat = store.heartbeat(unit.kind, unit.key) or {}
        log.warning("unit %s (%s) is being computed by job %s (its run lock is held); this job leaves it to that one",
                    unit.name, unit.key, beat.get("job_id", "?"))
        return "busy"
    except OSError as e:  # a shared entry another member's umask or hand left unusable: say so, never die mute
        _report(store, unit, f"{type(e).__name__}: cannot start unit {unit.name} ({unit.kind}/{unit.key}): {e}\n")
        return "failed"
    try:
        if store.is_done(unit.kind, unit.key):
            return "skipped"
        start = time.time()
        try:
            store.clear_error(unit.kind, unit.key)
            workdir = store.workdir(unit.kind, unit.key)
            with _heartbeat(store, unit):
                result = resolve_fn(unit.fn)(copy.deepcopy(unit.config), workdir, store)
            if not isinstance(result, dict):
                raise TypeError(f"unit fn {unit.fn} returned {type(result).__name__}; it must return a dict")
            meta = {"seconds": time.time() - start, "fn": unit.fn, "label": unit.label, "job_id": _job_id(),
                    "code": unit.code, "config": config_digest(unit.config), "env": environment()}
            attempts = store.attempts(unit.kind, unit.key)
            if attempts:
                meta["failed_attempts"] = attempts
            store.commit(unit.kind, unit.key, result, meta=meta)
            return "done"
        except Exception:  # noqa: BLE001 -- one unit's failure must not stop the others packed in this job
            _report(store, unit, traceback.format_exc())
            return "failed"
    finally:
        lock.release()


def limit_threads() -> None:
    """Size the math libraries' thread pools to the CPUs this job was given, before any of them is imported.

    Without cgroups a job sees every core of the node; N jobs x all cores threads oversubscribe it badly.
    """
    if "OMP_NUM_THREADS" not in os.environ:
        cpus = os.environ.get("SLURM_CPUS_PER_TASK") or os.environ.get("AWD_JOB_CPUS")
        if cpus:
            os.environ["OMP_NUM_THREADS"] = cpus


def execute_units(store_root: str | Path, units: tp.Sequence[Unit]) -> dict[str, str]:
    """Job entry point: each unit in turn; raises UnitError at the end if any failed."""
    # the one logging setup: our packages' lines (unit start/end, training progress, AutoAttack) to the job's stderr
    # log, once each (tests and users grep "unit <name> (<kind>/<key>): start")
    configure_logging()
    limit_threads()
    store = RunStore(store_root)
    outcome = {}
    for unit in units:
        log.info("unit %s (%s/%s): start", unit.name, unit.kind, unit.key)
        try:
            if unit.code:
                use_snapshot(store.root, unit.code)  # on every start, requeues included
        except SnapshotError as e:
            store.record_error(unit.kind, unit.key, f"SnapshotError: {e}\n")
            log.error("unit %s (%s) refused: %s", unit.name, unit.key, e)
            outcome[unit.key] = "failed"
            continue
        outcome[unit.key] = execute_unit(store, unit)
        log.info("unit %s (%s/%s): %s", unit.name, unit.kind, unit.key, outcome[unit.key])
    hand_over(store, [u for u in units if outcome[u.key] == "done" and getattr(u, "handoff_s", 0.0) > 0])
    failed = [k for k, v in outcome.items() if v == "failed"]
    if failed:
        mute = [u for u in units if outcome[u.key] == "failed" and store.error(u.kind, u.key) is None]
        why = f"; {mute[0].name}: {_unwritable(store, mute[0])}, see this log" if mute else ""
        raise UnitError(f"{len(failed)} of {len(units)} units failed: {', '.join(failed)} (see their error.txt)"
                        + why)
    return outcome


def hand_over(store: RunStore, units: tp.Sequence[Unit], sleep: tp.Callable[[float], None] = time.sleep,
              now: tp.Callable[[], float] = time.monotonic) -> bool:
    """Keeps this job (and its GPU) until the driver has said, for each of `units`, that what it made ready is
    submitted, or their longest `handoff_s` has passed: the scheduler then gives the GPU to the highest-priority job
    pending, the follow-up, instead of a job that was queued before it. True when the driver said so in time."""
    if not units:
        return True
    start, bound = now(), max(u.handoff_s for u in units)
    waiting = list(units)
    while True:
        waiting = [u for u in waiting if not store.handed_off(u.kind, u.key)]
        if not waiting:
            log.info("hand-off: the driver submitted what %d done units made ready after %.1f s", len(units),
                     now() - start)
            return True
        if now() - start >= bound:
            log.info("hand-off: no word from the driver within %.0f s; giving the GPU back", bound)
            return False
        sleep(HANDOFF_POLL_S)


def check_gpus_visible(requested: int) -> None:
    """A job that asked for GPUs must see them: without this, a node whose driver does not match the CUDA build
    (or a wrong CUDA_VISIBLE_DEVICES) makes every unit run on CPUs, silently and many times slower."""
    if not requested:
        return
    try:
        import torch
    except ImportError:
        return  # the unit functions need no torch: nothing could run on a GPU either way
    seen = torch.cuda.device_count()
    if seen < 1:
        raise RuntimeError(
            f"this job asked for {requested} GPU(s) but torch sees none (CUDA_VISIBLE_DEVICES="
            f"{os.environ.get('CUDA_VISIBLE_DEVICES', '<unset>')!r}, torch {torch.__version__}, CUDA build "
            f"{torch.version.cuda}); check the node's driver and the CUDA build of torch in the venv (README, "
            "cluster guide), or set check_gpus: false in executor.yaml for fake GPUs")


class UnitBatch(submitit.helpers.Checkpointable):
    """What a job runs. On preemption or time-out submitit calls checkpoint() and requeues the same call: done
    units are skipped and the unit that was interrupted resumes from the checkpoint files in its workdir."""

    def __init__(self, store_root: str, units: tp.Sequence[Unit], gpus: int = 0):
        self.store_root = str(store_root)
        self.units = list(units)
        self.gpus = gpus

    def __call__(self) -> dict[str, str]:
        check_gpus_visible(getattr(self, "gpus", 0))
        return execute_units(self.store_root, self.units)

    def checkpoint(self, *args: tp.Any, **kwargs: tp.Any) -> submitit.helpers.DelayedSubmission:
        # before submitit requeues and exits: a unit module may save the unit in progress (its on_requeue())
        for module in sorted({u.fn.partition(":")[0] for u in self.units} & set(sys.modules)):
            hook = getattr(sys.modules[module], "on_requeue", None)
            if callable(hook):
                hook()
        return submitit.helpers.DelayedSubmission(UnitBatch(self.store_root, self.units, getattr(self, "gpus", 0)))

