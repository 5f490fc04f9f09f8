"""Why a unit is pending: its config was never computed, or the code changed since an entry with its config was.

An entry's manifest records its config digest and code digest (`meta.config`, `meta.code`); the code snapshot of
that digest lists the semantic digest of every module it ran, so the modules that changed can be named.
"""

from __future__ import annotations

import collections
import typing as tp
from pathlib import Path

from jobs import safefs
from jobs.keys import config_digest, unit_closure_digests
from jobs.snapshot import SnapshotError, verify_snapshot
from jobs.store import MANIFEST, RECORD_LIMIT

NEW_CONFIG = "new config"


def _module_path(module: str, files: tp.Mapping[str, dict]) -> str:
    info = files.get(module)
    return info["path"] if info else module.replace(".", "/") + ".py"


def _done_by_config(store_root: Path, kind: str) -> dict[str, tuple[str, str]]:
    """{config digest: (committed_at, code digest)} of the newest committed entry per config (manifests only)."""
    out: dict[str, tuple[str, str]] = {}
    for path in sorted((store_root / kind).glob("??/*/manifest.json")):
        try:  # bounded and link-free: any member may have written it (jobs.safefs)
            manifest = safefs.read_json(store_root, path.relative_to(store_root).as_posix(),
                                        limit=RECORD_LIMIT[MANIFEST], expect=dict)
            meta = manifest.get("meta", {})
            config, code, when = meta.get("config"), meta.get("code"), str(manifest.get("committed_at", ""))
        except (OSError, ValueError, AttributeError):
            continue  # an unreadable manifest is the store's business (is_done), not a reason
        if isinstance(config, str) and isinstance(code, str) and config and code and \
                (config not in out or when > out[config][0]):
            out[config] = (when, code)
    return out


def pending_reasons(units: tp.Sequence[tp.Any], store_root: str | Path,
                    root: str | Path | None = None) -> dict[str, str]:
    """{unit key: reason} for pending units (jobs.job.Unit): "new config", or "<files> changed" naming the
    project files whose code differs from that of the newest entry computed with the same config."""
    store_root = Path(store_root)
    by_kind: dict[str, dict[str, tuple[str, str]]] = {}
    now: dict[tuple[str, ...], dict[str, str]] = {}  # by the unit's modules
    old: dict[str, dict | None] = {}
    reasons = {}
    for unit in units:
        if unit.kind not in by_kind:
            by_kind[unit.kind] = _done_by_config(store_root, unit.kind)
        match = by_kind[unit.kind].get(config_digest(unit.config))
        if match is None or not unit.code:
            reasons[unit.key] = NEW_CONFIG
            continue
        module = (unit.fn.split(":")[0], *getattr(unit, "modules", ()))  # a plugin's files are its code too
        if module not in now:
            now[module] = unit_closure_digests(module, root)
        code = match[1]
        if code not in old:
            try:
                old[code] = verify_snapshot(store_root, code)["files"]
            except SnapshotError:  # removed or damaged: the reason stays vaguer, nothing else depends on it
                old[code] = None
        before = old[code]
        if before is None:
            reasons[unit.key] = f"code changed (no snapshot of the old code {code[:12]} to compare)"
            continue
        changed = sorted({_module_path(m, before) for m in set(before) | set(now[module])
                          if before.get(m, {}).get("semantic") != now[module].get(m)})
        reasons[unit.key] = " + ".join(changed) + " changed" if changed else "code changed"
    return reasons


def summary(units: tp.Sequence[tp.Any], reasons: tp.Mapping[str, str], what: str = "units") -> list[str]:
    """One line per reason, most frequent first: "481 training units pending because awd/train.py changed"."""
    counts = collections.Counter(reasons[u.key] for u in units)
    return [f"{n} {what} pending: {reason}" if reason == NEW_CONFIG else f"{n} {what} pending because {reason}"
            for reason, n in counts.most_common()]
