"""What each unit's job asks the scheduler for: its kind's profile, the memory an out-of-memory retry raised, and
what the backend makes of its estimate (--time) and of its chain (--nice)."""

from __future__ import annotations

import collections
import typing as tp

from jobs.backends import Backend
from jobs.executor_config import ExecutorConfig
from jobs.job import Unit
from jobs.policies.priority import chain_nice, handoff_s
from jobs.policies.retry import RetryPolicy


class JobRequests:
    """`final`: the keys of units whose outcome is known (the driver's set: they leave their group's job)."""

    def __init__(self, cfg: ExecutorConfig, backend: Backend, retry: RetryPolicy, final: tp.Container[str]) -> None:
        self.cfg, self.backend, self.retry, self.final = cfg, backend, retry, final
        self.groups: dict[str, list[Unit]] = collections.defaultdict(list)  # units that run in one job together
        self.longest_chain_s = 0.0  # of the units given or followed: the reference of chain_nice
        self.memo: dict[tuple, ExecutorConfig] = {}

    def saw(self, unit: Unit) -> None:
        """A unit given or followed, as the stage estimated it: the campaign's longest chain so far."""
        self.longest_chain_s = max(self.longest_chain_s, unit.chain_s)

    def add(self, unit: Unit) -> None:
        """A unit with the estimate the throughput model gave it: its group's job grows by it."""
        if unit.group:
            self.groups[unit.group].append(unit)

    def cfg_of(self, unit: Unit) -> ExecutorConfig:
        """The unit's settings. Memoized: a validated config per distinct request (thousands of waiting units share
        a handful, and the driver asks at every submission)."""
        nice = chain_nice(unit.chain_s, self.longest_chain_s) if self.cfg.chain_priority else None
        job_s = self.job_estimate_s(unit)
        mem = self.retry.mem_gb(unit.key)
        ident = (unit.kind, mem, job_s, nice)
        if ident not in self.memo:
            cfg = self.cfg.for_kind(unit.kind)
            changes = self.backend.job_request(cfg, job_s, nice)
            if mem is not None:
                changes["mem_gb"] = mem
            self.memo[ident] = cfg.replace(**changes) if changes else cfg
        return self.memo[ident]

    def handoff_s(self, unit: Unit) -> float:
        """Seconds the unit's job may keep its GPU for the unit's follow-ups (jobs.policies.priority.handoff_s): with
        chain_priority on, where jobs queue (SLURM): there a freed GPU goes to the highest-priority pending job."""
        if not self.cfg.chain_priority or self.backend.starts_all or self.backend.in_process:
            return 0.0
        return handoff_s(unit.estimate_s, unit.tail_s, unit.chain_s, self.longest_chain_s)

    def job_estimate_s(self, unit: Unit) -> float | None:
        """Seconds of the job the unit runs in, what its --time must cover: its group's unfinished units one after
        another (an AutoAttack shard's blocks), else units_per_job units like it."""
        if unit.estimate_s is None:
            return None
        if unit.group:
            return sum(u.estimate_s or 0.0 for u in self.groups.get(unit.group, [unit]) if u.key not in self.final)
        return unit.estimate_s * (self.cfg.for_kind(unit.kind).units_per_job or 1)

    def key(self, unit: Unit) -> tuple[tp.Any, ...]:
        """Units with equal keys share an array: one per distinct resource request and priority."""
        cfg = self.cfg_of(unit)
        return unit.kind, cfg.mem_gb, cfg.timeout_min, cfg.extra.get("nice")
