"""Execution and the run store: content-keyed units run through submitit (debug / local / slurm).

This package knows nothing of the `awd` library; it is the only one that imports submitit.
"""

from jobs.driver import Report, UnitsFailed, dry_run, run_units, run_units_report
from jobs.executors import ExecutorConfig, ExecutorConfigError, load_executor_config, make_executor
from jobs.job import Unit, execute_units
from jobs.keys import canonical_json, code_digest, unit_key
from jobs.store import RunStore, StoreError

__all__ = [
    "ExecutorConfig", "ExecutorConfigError", "RunStore", "StoreError", "Unit", "UnitsFailed", "canonical_json",
    "code_digest", "dry_run", "execute_units", "load_executor_config", "make_executor", "run_units", "unit_key",
    "Report", "run_units_report",
]
