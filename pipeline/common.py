"""What every stage driver shares: params + executor loading, unit keys, the store, atomic artifact writes."""

from __future__ import annotations

import argparse
import json
import os
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


def stage_args(description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    return parser.parse_args()


@lru_cache(maxsize=None)
def _digest(module: str) -> str:
    return code_digest([module], root=PROJECT_ROOT)


def make_unit(kind: str, fn: str, config: dict, label: str = "") -> Unit:
    """A unit keyed by what it computes: its config without input locations, plus the code it runs."""
    keyed = {k: v for k, v in config.items() if k not in LOCATION_KEYS}
    key = unit_key(kind, keyed, _digest(fn.split(":")[0]))
    return Unit(kind=kind, key=key, fn=fn, config=config, label=label)


def read_json(path: Path):
    with open(path) as f:
        return json.load(f)
