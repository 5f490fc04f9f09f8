"""The driver side of running units: skip what the store has, adopt jobs still in flight, submit the rest as job
arrays, retry what failed, respect the scheduler's limits, show progress, wait (the loop: jobs/unit_driver.py).

The store is the source of truth, not submitit's result pickles: a unit is finished when its entry is committed,
failed when its entry holds `error.txt` or its job ended without committing. That is what lets a new driver (after
the old one was killed, or a second `dvc repro`) pick up jobs it did not submit.
"""

from __future__ import annotations

import sys
import typing as tp
from pathlib import Path

from jobs import backends
from jobs.executors import ExecutorConfig, load_executor_config
from jobs.job import Unit
from jobs.outcome import HEARTBEAT_STALE_AFTER as HEARTBEAT_STALE_AFTER
from jobs.outcome import Failure, Report, UnitsFailed
from jobs.outcome import Tracked as _Tracked  # noqa: F401 -- names callers and tests import from here
from jobs.outcome import failure_of as _failure  # noqa: F401
from jobs.placement import lines as placement_lines
from jobs.policies.priority import chain_nice as chain_nice
from jobs.prepare import dry_run as dry_run
from jobs.prepare import prepare as _prepare
from jobs.prepare import write_snapshots as _write_snapshots
from jobs.progress import Progress
from jobs.records import cancel_early as cancel_early  # the stages import it from here
from jobs.store import RunStore
from jobs.submission import SubmitRefused as SubmitRefused
from jobs.submission import SubmitRejected as SubmitRejected
from jobs.submission import submit_packs as _submit  # noqa: F401
from jobs.throughput import Estimator
from jobs.unit_driver import Follow, _Driver
from jobs.unit_driver import _packs as _packs
from jobs.why import pending_reasons, summary

__all__ = ["Failure", "Report", "UnitsFailed", "cancel_early", "chain_nice", "dry_run", "run_units",
           "run_units_report"]


def run_units(units: tp.Iterable[Unit], store: RunStore | str | Path,
              executor_cfg: ExecutorConfig | None = None, *, desc: str = "train",
              poll_s: float | None = None, stream: tp.TextIO | None = None) -> dict[str, dict]:
    """Makes every unit done and returns {key: result}; raises UnitsFailed (after the others finish) if any fail."""
    report = run_units_report(units, store, executor_cfg, desc=desc, poll_s=poll_s, stream=stream)
    if report.failures:
        raise UnitsFailed(report.failures, len(report.results) + len(report.failures), desc)
    return report.results


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
    if todo or follow is not None:  # what the cluster refuses is named before any sbatch
        backends.of(cfg).preflight(cfg, lambda line: stream.write(f"{desc}: {line}\n"))
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


