"""What every stage driver shares: params + executor loading, unit keys, the store, atomic artifact writes."""

from __future__ import annotations

import argparse
import json
import os
import sys
import typing as tp
from functools import cache
from pathlib import Path

from jobs.atomic import atomic_write_json
from jobs.console import configure_logging
from jobs.job import Unit
from jobs.keys import keyed_config, unit_code_digest, unit_key
from jobs.store import RunStore

ARTIFACTS = Path("artifacts")
PROJECT_ROOT = Path(__file__).resolve().parent.parent


def workspace() -> Path | None:
    """The user's workspace when DVC runs this stage in a temporary copy of it (`dvc exp run --temp`, `--queue`):
    DVC then sets $DVC_ROOT to the workspace while the stage runs elsewhere. None for a stage run in place."""
    root = os.environ.get("DVC_ROOT")
    if root and Path(root).resolve() != Path.cwd().resolve():
        return Path(root).resolve()
    return None


def store_root() -> Path:
    """The run store; on a cluster point $AWD_STORE at a shared filesystem. A temporary experiment copy uses the
    workspace's store, never one of its own (it would recompute everything, and vanish with the copy)."""
    if os.environ.get("AWD_STORE"):
        return Path(os.environ["AWD_STORE"]).resolve()
    return ((workspace() or Path.cwd()) / "runs").resolve()


def executor_config():
    """Where units run: executor.yaml / $AWD_EXECUTOR_CONFIG / $AWD_EXECUTOR, as for `dvc repro`. A temporary
    experiment copy has no executor.yaml of its own (it is not in git): it uses the workspace's, and refuses to
    run rather than fall back to training on this machine."""
    from jobs.executors import DEFAULT_FILE, ENV_FILE, ENV_KIND, ExecutorConfigError, load_executor_config

    ws = workspace()
    if ws is None or os.environ.get(ENV_FILE) or Path(DEFAULT_FILE).is_file():
        return load_executor_config()
    if (ws / DEFAULT_FILE).is_file():
        return load_executor_config(ws / DEFAULT_FILE)
    if os.environ.get(ENV_KIND):
        return load_executor_config()
    raise ExecutorConfigError(
        f"this stage runs in a temporary copy of the workspace ({Path.cwd()}; `dvc exp run --temp` or `--queue`) "
        f"and finds no executor settings: neither {ws / DEFAULT_FILE} nor ${ENV_FILE} / ${ENV_KIND}. Refusing to "
        f"run the units on this machine by default; create {ws / DEFAULT_FILE} (e.g. `kind: slurm`), or set "
        f"${ENV_FILE} to an absolute path. Units go to the store {store_root()} ($AWD_STORE)")


def open_store() -> RunStore:
    return RunStore(store_root())


def _expected_failure(exc: BaseException) -> bool:
    """Failures whose message says everything (bad params, bad executor.yaml, failed units, a busy or damaged
    store): a traceback would only bury it."""
    from jobs.driver import UnitsFailed
    from jobs.executors import ExecutorConfigError
    from jobs.store import StoreError
    from pipeline.params import ParamsError

    return isinstance(exc, (ParamsError, ExecutorConfigError, UnitsFailed, StoreError))


def run_entry_point(main: tp.Callable[[], int | None]) -> tp.NoReturn:
    """`if __name__ == "__main__": run_entry_point(main)`, the end of every stage module: see `exit_status`."""
    sys.exit(exit_status(main))


def exit_status(main: tp.Callable[[], int | None]) -> int:
    """Runs an entry point's `main` and returns its exit status: logging configured once (jobs/console.py), an
    expected failure (see `_expected_failure`) shown as `ERROR: <message>` alone (status 1) instead of under a
    traceback (bad params: status 2), Ctrl-C as `interrupted` (status 130: run_units already said how to cancel or re-attach). Nothing
    global (no sys.excepthook) is installed: a caller that imports a stage's `main` gets plain exceptions."""
    configure_logging()
    try:
        return int(main() or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr, flush=True)
        return 130
    except Exception as exc:
        if not _expected_failure(exc):
            raise
        print(f"ERROR: {exc}", file=sys.stderr, flush=True)
        from pipeline.params import ParamsError

        return 2 if isinstance(exc, ParamsError) else 1  # bad params: a usage error; nothing was submitted yet


def stage_args(description: str) -> argparse.Namespace:
    """The stage's command line (errors and logging: `run_entry_point`)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    return parser.parse_args()


@cache
def _digest(modules: tuple[str, ...]) -> str:
    return unit_code_digest(modules, root=PROJECT_ROOT)


def make_unit(kind: str, fn: str, config: dict, label: str = "", modules: tuple[str, ...] = ()) -> Unit:
    """A unit keyed by what it computes: its config without input locations, plus the code it runs (fn's module
    and the plugin `modules` its config names). Units are built by pipeline/plan.py, which applies a rehearsal's
    stand-ins before this."""
    code = _digest((fn.split(":")[0], *modules))
    return Unit(kind=kind, key=unit_key(kind, keyed_config(config), code), fn=fn, config=config, label=label,
                code=code, modules=tuple(modules))


def unit_env(store: RunStore, unit: Unit) -> dict | None:
    """The environment a committed unit was computed in (its manifest's meta.env; see jobs/environment.py)."""
    return ((store.manifest(unit.kind, unit.key) or {}).get("meta") or {}).get("env")


def read_json(path: Path):
    with open(path) as f:
        return json.load(f)


def write_json(path: Path, obj) -> None:
    """A stage artifact (or other file that DVC and the renderer parse), atomically: NaN and ±inf as null."""
    atomic_write_json(path, obj, finite=True)
