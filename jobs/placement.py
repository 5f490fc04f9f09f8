"""Where a stage's units will run, in one line per unit kind: what the dry run prints and every stage says before
it submits anything (executor kind, partition, GPUs per job, units per job, the --time range, and whether the
estimates behind it are measured or assumed)."""

from __future__ import annotations

import math
import typing as tp

from jobs import backends
from jobs.executors import (
    DEFAULT_SLURM_TIMEOUT_MIN,
    ExecutorConfig,
    partition_time_limit_min,
    unit_time_min,
)
from jobs.job import Unit
from jobs.throughput import MEASURED, Estimate, Estimator


def minutes(m: float) -> str:
    """90 -> '1h30m', 2880 -> '2d', 45 -> '45m'."""
    m = int(math.ceil(m))
    d, rem = divmod(m, 1440)
    h, mm = divmod(rem, 60)
    parts = [f"{d}d" if d else "", f"{h}h" if h else "", f"{mm}m" if mm else ""]
    return "".join(parts) or "0m"


def job_seconds(units: tp.Sequence[Unit], cfg: ExecutorConfig) -> list[float]:
    """Estimated seconds of each job the units make: a group's units together (an AutoAttack shard), the others
    units_per_job at a time (as jobs.driver's job_estimate_s sizes their --time)."""
    groups: dict[str, float] = {}
    singles = []
    for unit in units:
        if unit.estimate_s is None:
            continue
        if unit.group:
            groups[unit.group] = groups.get(unit.group, 0.0) + unit.estimate_s
        else:
            singles.append(unit.estimate_s * (cfg.units_per_job or 1))
    return list(groups.values()) + singles


def jobs_word(units: tp.Sequence[Unit], cfg: ExecutorConfig) -> str:
    per_job = cfg.units_per_job or 1
    grouped = {u.group for u in units if u.group}
    if not grouped:
        return f"{per_job} unit{'s' if per_job != 1 else ''} per job"
    singles = sum(1 for u in units if not u.group)
    return f"in {len(grouped) + math.ceil(singles / per_job)} jobs (a group's units share one)"


def time_range(units: tp.Sequence[Unit], cfg: ExecutorConfig) -> str:
    """The --time the kind's jobs ask for: per unit from its estimate with time_safety_factor (jobs.driver's
    unit_cfg), else timeout_min for every job."""
    fixed = cfg.timeout_min or DEFAULT_SLURM_TIMEOUT_MIN
    estimated = job_seconds(units, cfg)
    if cfg.time_safety_factor is None or not estimated:
        why = "timeout_min" if cfg.timeout_min else "the default; set time_safety_factor to size it per unit"
        return f"--time {minutes(fixed)} for every job ({why})"
    limit = partition_time_limit_min(cfg.partition)
    asks = [unit_time_min(cfg, s, limit) or fixed for s in estimated]
    low, high = min(asks), max(asks)
    text = f"--time {minutes(low)}" + (f" to {minutes(high)}" if high != low else "")
    over = sum(1 for s in estimated if s * cfg.time_safety_factor / 60 > high)
    if over:
        text += (f" ({over} need longer than the cap of {minutes(high)}: they go on from their checkpoint after "
                 "each requeue)")
    return text


def where(cfg: ExecutorConfig) -> str:
    """The machines and resources of one kind's jobs, in words."""
    return backends.of(cfg).describe(cfg)


def estimates_word(estimates: tp.Sequence[Estimate | None]) -> str:
    measured = [e for e in estimates if e is not None and e.source == MEASURED]
    assumed = [e for e in estimates if e is not None and e.source != MEASURED]
    parts = []
    if measured:
        parts.append(f"{len(measured)} measured ({measured[0].note})")
    if assumed:
        parts.append(f"{len(assumed)} assumed ({assumed[0].note})")
    unknown = len(estimates) - len(measured) - len(assumed)
    if unknown:
        parts.append(f"{unknown} from the stage")
    return "estimates: " + ", ".join(parts)


def lines(units: tp.Sequence[Unit], cfg: ExecutorConfig, rates: Estimator) -> list[str]:
    """One line per unit kind: 'N <kind> units run on <where>, K units per job, --time …; estimates: …'."""
    out = []
    kinds: dict[str, list[Unit]] = {}
    for unit in units:
        kinds.setdefault(unit.kind, []).append(unit)
    for kind, group in kinds.items():
        k = cfg.for_kind(kind)
        parts = [f"{len(group)} {kind} unit{'s' if len(group) != 1 else ''} run on {where(k)}"]
        place = backends.of(k)
        if place.starts_all and not place.in_process:  # every job starts at once: units are dealt over the slots
            parts.append("the units dealt over those jobs")
        elif not place.in_process:
            parts.append(jobs_word(group, k))
        if place.is_cluster:
            parts.append(time_range(group, k))
        out.append(", ".join(parts) + "; " + estimates_word([rates.sources.get(u.key) for u in group]))
    return out
