"""The driver's progress line and its ETAs: a mixin of `_Driver` (jobs/unit_driver.py), which holds the state these
steps read."""

from __future__ import annotations

import collections
import math

from jobs.backends import Backend
from jobs.job import Unit
from jobs.outcome import Tracked
from jobs.policies.retry import RetryPolicy
from jobs.progress import Progress
from jobs.throughput import Estimator, kind_etas


class ViewSteps:
    active: dict[str, Tracked]
    waiting: list[Unit]
    early: set[str]
    backend: Backend
    progress: Progress
    rates: Estimator
    retry: RetryPolicy
    done: int
    totals: collections.Counter[str]
    outcomes: dict[str, collections.Counter[str]]
    durations: dict[str, list[float]]

    @property
    def cap(self) -> int | None:
        raise NotImplementedError

    def jobs(self) -> int:
        raise NotImplementedError

    def show(self) -> None:
        rows: dict[str, dict[str, int]] = {}
        for kind in self.totals:
            running = sum(1 for t in self.active.values() if t.unit.kind == kind and t.state.startswith("RUNNING"))
            in_jobs = sum(1 for t in self.active.values() if t.unit.kind == kind)
            rows[kind] = {"total": self.totals[kind], "done": self.outcomes[kind]["done"], "running": running,
                          "queued": in_jobs - running + sum(1 for u in self.waiting if u.kind == kind),
                          "failed": self.outcomes[kind]["failed"]}
        self.progress.update_kinds(self.done, rows, self.durations, max(1, self.jobs()), self.retry.total(),
                                   etas=self.etas())

    def etas(self) -> dict[str, tuple[float, str]]:
        """Per kind, (seconds, measured/assumed) until its awaited units are done, from their estimates, spread over
        the jobs running (all queued ones while none runs): jobs.throughput.kind_etas."""
        tracked = [(t.unit, t.running_since) for k, t in self.active.items() if k not in self.early]
        running = len({t.record["job_id"] for t in self.active.values() if t.running_since is not None})
        if self.backend.starts_all and self.cap:
            # every task of a local array looks alive while only `cap` of them compute: count those alone
            first = sorted(range(len(tracked)), key=lambda i: tracked[i][1] or math.inf)[: self.cap]
            tracked = [(u, since if i in first else None) for i, (u, since) in enumerate(tracked)]
            running = min(running, self.cap)
        pending = [(u, None) for u in self.waiting if u.key not in self.early] + tracked
        return kind_etas(pending, self.rates.sources, running or self.jobs() or (self.cap or 1), self.durations)
