"""Execution and the run store: content-keyed units run through submitit (debug / local / slurm).

This package knows nothing of the `awd` library; it is the only one that imports submitit.

The names below are imported on first use (PEP 562), not with the package: a job process imports `jobs.job` and
the store, and must not pay for the driver, the executors and pydantic (~0.4 CPU-s per job, a rehearsal's jobs
by the hundred).
"""

from __future__ import annotations

import importlib
import typing as tp

if tp.TYPE_CHECKING:
    from jobs.driver import Report, UnitsFailed, dry_run, run_units, run_units_report
    from jobs.executors import ExecutorConfig, ExecutorConfigError, load_executor_config, make_executor
    from jobs.job import Unit, execute_units
    from jobs.keys import canonical_json, code_digest, unit_key
    from jobs.store import RunStore, StoreError

_FROM = {
    "jobs.driver": ("Report", "UnitsFailed", "dry_run", "run_units", "run_units_report"),
    "jobs.executors": ("ExecutorConfig", "ExecutorConfigError", "load_executor_config", "make_executor"),
    "jobs.job": ("Unit", "execute_units"),
    "jobs.keys": ("canonical_json", "code_digest", "unit_key"),
    "jobs.store": ("RunStore", "StoreError"),
}
_WHERE = {name: module for module, names in _FROM.items() for name in names}

__all__ = [
    "ExecutorConfig", "ExecutorConfigError", "RunStore", "StoreError", "Unit", "UnitsFailed", "canonical_json",
    "code_digest", "dry_run", "execute_units", "load_executor_config", "make_executor", "run_units", "unit_key",
    "Report", "run_units_report",
]
assert sorted(__all__) == sorted(_WHERE)


def __getattr__(name: str) -> tp.Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'jobs' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
