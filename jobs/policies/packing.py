"""Which units share a job: a group (an AutoAttack shard's blocks) stays in one job; other units go
`units_per_job` to a job, or, while more units wait than the queue takes, short ones share a job of about
SHORT_JOB_S; at most `slots` jobs."""

from __future__ import annotations

import math
import typing as tp

# A job's start-up (scheduler dispatch, imports, CUDA and data on a real node: 30 s to a minute) is paid per job: a
# unit of a few minutes (an AutoAttack shard, a pruning evaluation of seconds) would spend a tenth of its GPU time or
# more starting. Jobs of at least this much work spend under 5 % of it.
SHORT_JOB_S = 900.0


class Packable(tp.Protocol):
    @property
    def group(self) -> str | None: ...

    @property
    def estimate_s(self) -> float | None: ...


P = tp.TypeVar("P", bound=Packable)


def short_s(timeout_min: int | None, safety: float | None) -> float:
    """The work a short unit's pack may reach: SHORT_JOB_S, or less where the job's --time (`timeout_min`, sized
    for one unit with `safety`) would not cover a pack (under twice that)."""
    if not timeout_min:
        return SHORT_JOB_S
    return min(SHORT_JOB_S, timeout_min * 60 / (safety or 1.0) / 2)


def packs(units: tp.Sequence[P], per_job: int, slots: int, deal: bool, short_s: float = 0.0) -> list[list[P]]:
    """At most `slots` jobs of `units`. `deal`: every job starts at once (local), so units are dealt round-robin
    over the free slots rather than filled job by job; otherwise groups first, then `per_job` singles a job.
    `short_s` (queued jobs, one unit per job): atoms with less work than this share jobs of about this much, in
    their order; the others keep a job each. The driver asks for it only while more units wait than the queue
    takes: then a short unit would wait for a GPU anyway, and sharing one costs no parallelism; at the campaign's
    tail every unit gets its own job again."""
    per_job = per_job or 1
    atoms: dict[tp.Any, list[P]] = {}  # a group stays together; an ungrouped unit is its own atom
    for i, unit in enumerate(units):
        atoms.setdefault(unit.group or i, []).append(unit)
    parts = list(atoms.values())
    if deal:
        n_jobs = min(math.ceil(len(parts) / per_job), max(0, slots))
        return [[u for part in parts[i::n_jobs] for u in part] for i in range(n_jobs)]
    if short_s > 0 and per_job == 1:
        return fill(parts, short_s)[:max(0, slots)]
    singles = [part[0] for part in parts if not part[0].group]
    grouped = [part for part in parts if part[0].group]
    return (grouped + [singles[i:i + per_job] for i in range(0, len(singles), per_job)])[:max(0, slots)]


def fill(parts: tp.Sequence[list[P]], short_s: float) -> list[list[P]]:
    """Atoms with less work than `short_s` share jobs until each holds at least that much (under twice as much);
    longer atoms, and those without an estimate, keep a job each. Order is kept."""
    out: list[list[P]] = []
    pending: list[P] = []
    work = 0.0
    for part in parts:
        seconds = sum(u.estimate_s or 0.0 for u in part)
        if seconds >= short_s or any(u.estimate_s is None for u in part):
            out.append(part)
            continue
        pending, work = pending + part, work + seconds
        if work >= short_s:
            out.append(pending)
            pending, work = [], 0.0
    return out + ([pending] if pending else [])

