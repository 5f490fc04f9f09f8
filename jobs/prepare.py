"""Units checked before anything runs: each error names the unit and is raised before anything is submitted;
duplicates are merged; the code each unit's key names is snapshotted into the store for its job to import."""

from __future__ import annotations

import typing as tp

from jobs.job import Unit, resolve_fn
from jobs.snapshot import SnapshotError, write_snapshot
from jobs.store import RunStore, StoreError, dump_json


def prepare(units: tp.Iterable[Unit], store: RunStore, check_deps: bool = True) -> list[Unit]:
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
        ident = (unit.kind, unit.key)
        if ident in seen:
            if seen[ident].config != unit.config or seen[ident].fn != unit.fn:
                raise ValueError(f"{where}: given twice with different fn/config under the same key; the key must "
                                 "cover everything the unit computes from")
            continue
        seen[ident] = unit
    if check_deps:  # about to compute them: damaged entries move aside (readers never move anything)
        store.quarantine_damaged((u.kind, u.key) for u in seen.values())
    # the function of a unit that will run must import; a done unit's is never called (and importing a unit's
    # module, torch and all, costs a stage driver with nothing to do a few CPU-seconds)
    for unit in seen.values():
        if unit.fn not in resolved and not store.is_done(unit.kind, unit.key):
            try:
                resolve_fn(unit.fn)
            except (ImportError, AttributeError, ValueError) as e:
                raise ValueError(f"unit {unit.name} ({unit.kind}/{unit.key}): cannot use fn {unit.fn!r}: {e}") from e
            resolved.add(unit.fn)
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
    return [u for u in prepare(units, store, check_deps=False) if not store.is_done(u.kind, u.key)]


def write_snapshots(units: tp.Sequence[Unit], store: RunStore) -> None:
    """Before anything is submitted: the code each unit's key names, in the store, for its job to import."""
    for fn, code, modules in sorted({(u.fn, u.code, u.modules) for u in units if u.code}):
        try:
            write_snapshot(store.root, [fn.split(":")[0], *modules], code)
        except SnapshotError as e:
            raise StoreError(f"{e} (nothing was submitted)") from e
