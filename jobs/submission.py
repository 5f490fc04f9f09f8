"""Submitting packs of units as job arrays through a backend, and what a refused or failed submission means."""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
import typing as tp

from jobs import backends
from jobs.executor_config import ExecutorConfig, ExecutorConfigError
from jobs.job import Unit, UnitBatch
from jobs.liveness import JobWatch
from jobs.outcome import last_line
from jobs.private_files import owner_only_files
from jobs.records import job_record, unit_field
from jobs.sbatch_errors import FIX, WAIT, fix_message
from jobs.store import RunStore


class SubmitRejected(ExecutorConfigError):
    """sbatch refused the request itself (invalid partition, account, QOS, GRES, time, ...): sending it again can
    only fail again, so the stage stops at once, naming the executor.yaml keys to change."""


class SubmitRefused(RuntimeError):
    """sbatch said the user's (or account's) submit limit is reached: wait for jobs to end, then submit again."""

    def __init__(self, message: str, size: int = 1):
        super().__init__(message)
        self.size = size  # jobs in the refused submission


def submit_packs(packs: tp.Sequence[list[Unit]], store: RunStore, cfg: ExecutorConfig, desc: str,
                 watch: JobWatch, mark: tp.Callable[[Unit], dict] = lambda unit: {}
                 ) -> tuple[dict[str, dict], Exception | None]:
    """Submits `packs` (one job each) as arrays; job.json is written per array as soon as sbatch answers, so a crash
    between arrays leaves nothing submitted without a record. Returns the records and the error that stopped the
    submission early (the packs after it are not submitted), if any."""
    place = backends.of(cfg)
    log_dir = store.log_dir(desc)
    executor = place.executor(cfg, str(log_dir))
    for unit in (u for pack in packs for u in pack):
        store.clear_error(unit.kind, unit.key)  # job.json stays: the caller's claim until the real record lands
        store.write_config(unit.kind, unit.key, unit.config)
    chunk = place.array_size(cfg, len(packs))
    records: dict[str, dict] = {}
    for start in range(0, len(packs), chunk):
        group = packs[start:start + chunk]
        try:
            jobs = executor.submit_array([UnitBatch(str(store.root), pack, place.job_gpus(cfg)) for pack in group])
        except Exception as e:  # noqa: BLE001 -- the caller decides: wait (submit limit), stop, or back off
            text = str(e) or repr(e.__cause__ or e)  # sbatch killed by its timeout has nothing on stderr
            verdict = place.submit_error(text)
            if verdict is not None and verdict.action == WAIT:
                return records, SubmitRefused(f"{desc}: the scheduler refused {len(group)} more jobs (submit "
                                              f"limit): {last_line(text)}", size=len(group))
            if verdict is not None and verdict.action == FIX:
                profile = cfg.profiles.get(group[0][0].kind, {})
                keys = tuple(f"profiles.{group[0][0].kind}.{k}" if k in profile else k for k in verdict.keys)
                return records, SubmitRejected(f"{desc}: {fix_message(verdict, cfg.source, keys)}")
            return records, RuntimeError(f"{desc}: submitting {len(group)} {cfg.kind} jobs failed: "
                                         f"{last_line(text)}")
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
def sigint_deferred() -> tp.Iterator[list[int]]:
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


def cancel_hint(store: RunStore, records: tp.Iterable[dict]) -> str:
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
