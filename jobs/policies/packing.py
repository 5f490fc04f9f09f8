"""Which units share a job: a group (an AutoAttack shard's blocks) stays in one job; other units go
`units_per_job` to a job; at most `slots` jobs."""

from __future__ import annotations

import math
import typing as tp


class Packable(tp.Protocol):
    @property
    def group(self) -> str | None: ...


P = tp.TypeVar("P", bound=Packable)


def packs(units: tp.Sequence[P], per_job: int, slots: int, deal: bool) -> list[list[P]]:
    """At most `slots` jobs of `units`. `deal`: every job starts at once (local), so units are dealt round-robin
    over the free slots rather than filled job by job; otherwise groups first, then `per_job` singles a job."""
    per_job = per_job or 1
    atoms: dict[tp.Any, list[P]] = {}  # a group stays together; an ungrouped unit is its own atom
    for i, unit in enumerate(units):
        atoms.setdefault(unit.group or i, []).append(unit)
    parts = list(atoms.values())
    if deal:
        n_jobs = min(math.ceil(len(parts) / per_job), max(0, slots))
        return [[u for part in parts[i::n_jobs] for u in part] for i in range(n_jobs)]
    singles = [part[0] for part in parts if not part[0].group]
    grouped = [part for part in parts if part[0].group]
    return (grouped + [singles[i:i + per_job] for i in range(0, len(singles), per_job)])[:max(0, slots)]
