"""What every stage driver shares: params + executor loading, unit keys, the store, atomic artifact writes."""

from __future__ import annotations

import argparse
import json
import os
import sys
from functools import lru_cache
from pathlib import Path

from jobs.keys import code_digest, unit_key
from jobs.store import RunStore
from jobs.submit import Unit
from pipeline.atomic_io import write_json  # noqa: F401  (re-exported for the stage drivers)
from pipeline.units.train import LOCATION_KEYS

ARTIFACTS = Path("artifacts")
PROJECT_ROOT = Path(__file__).resolve().parent.parent


def store_root() -> Path:
    """The run store; on a cluster point $AWD_STORE at a shared filesystem."""
    return Path(os.environ.get("AWD_STORE", "runs")).resolve()


def open_store() -> RunStore:
    return RunStore(store_root())


def _expected_failure(exc: BaseException) -> bool:
    """Failures whose message says everything (bad params, bad executor.yaml, failed units, a busy or damaged
    store): a traceback would only bury it."""
    from jobs.executors import ExecutorConfigError
    from jobs.store import StoreError
    from jobs.submit import UnitsFailed
    from pipeline.schema import ParamsError

    return isinstance(exc, (ParamsError, ExecutorConfigError, UnitsFailed, StoreError))


def _stage_excepthook(exc_type, exc, tb) -> None:
    if isinstance(exc, KeyboardInterrupt):  # run_units already said how to cancel or re-attach
        print("interrupted", file=sys.stderr, flush=True)
    elif _expected_failure(exc):
        print(f"ERROR: {exc}", file=sys.stderr, flush=True)
    else:
        sys.__excepthook__(exc_type, exc, tb)


def stage_args(description: str) -> argparse.Namespace:
    """The stage's command line. Also makes an expected failure (see `_expected_failure`) end the stage with its
    message alone (exit status 1)."""
    sys.excepthook = _stage_excepthook
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    return parser.parse_args()


@lru_cache(maxsize=None)
def _digest(module: str) -> str:
    return code_digest([module], root=PROJECT_ROOT)


def make_unit(kind: str, fn: str, config: dict, label: str = "") -> Unit:
    """A unit keyed by what it computes: its config without input locations, plus the code it runs."""
    if os.environ.get("AWD_REHEARSAL"):  # a dress rehearsal runs timed stand-ins instead (pipeline/rehearsal)
        from pipeline.rehearsal.swap import stand_in

        fn, config = stand_in(kind, fn, config)
    keyed = {k: v for k, v in config.items() if k not in LOCATION_KEYS}
    key = unit_key(kind, keyed, _digest(fn.split(":")[0]))
    return Unit(kind=kind, key=key, fn=fn, config=config, label=label)


def read_json(path: Path):
    with open(path) as f:
        return json.load(f)
