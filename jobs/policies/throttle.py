"""How many jobs to keep queued and when to call the scheduler again: the site's submit limit (read up front, or
learned from a refusal, then probed upward), and back-off while sbatch fails."""

from __future__ import annotations

import time

from jobs.policies import Clock

BACKOFF_S = (5.0, 600.0)  # first and longest wait after a failed or refused sbatch
GIVE_UP_S = 3600.0  # sbatch failing (not refusing: that is a limit, waited out) this long fails the units


class SubmitThrottle:
    """`cap`: most jobs queued or running at once (None: no cap); `site_limit`: the scheduler's own limit on this
    user's jobs when known up front (then never crossed, nor probed)."""

    def __init__(self, cap: int | None, site_limit: int | None = None, *,
                 backoff_s: tuple[float, float] = BACKOFF_S, give_up_s: float = GIVE_UP_S,
                 now: Clock = time.time) -> None:
        self.capped_by_site = site_limit is not None and (cap or site_limit + 1) > site_limit
        self.cap = site_limit if self.capped_by_site else cap
        self.base_cap = self.cap  # a refusal lowers `cap`; each accepted submission raises it by what it queued
        self.ceiling: int | None = None  # just below the level of our jobs at which the scheduler last refused
        self.backoff_s, self.give_up_s, self.now = backoff_s, give_up_s, now
        self.backoff = backoff_s[0]
        self.next_submit = 0.0
        self.failing_since: float | None = None

    def slots(self, waiting: int, jobs: int) -> int:
        """Jobs that may be submitted now, with `waiting` units to place and `jobs` of ours queued or running."""
        if not waiting or self.now() < self.next_submit:
            return 0
        return waiting if self.cap is None else self.cap - jobs

    def accepted(self, jobs: int, queued_before: int) -> None:
        """Every submission of a round went through: back-off resets and a lowered cap grows again, as far again as
        just accepted, but one job at a time near the level last refused."""
        self.backoff, self.failing_since = self.backoff_s[0], None
        if self.cap == self.base_cap or self.cap is None:
            return
        grown = self.cap + max(1, jobs - queued_before)
        if self.ceiling is not None:
            grown = min(grown, max(self.ceiling, self.cap) + 1)
            self.ceiling = max(self.ceiling, self.cap)
        self.cap = grown if self.base_cap is None else min(self.base_cap, grown)

    def refused(self, jobs: int, size: int, tried: int) -> None:
        """The scheduler refused an array of `size` jobs over its submit limit with `jobs` of ours queued; `tried`:
        the slots the round had. The limit counts every job of ours on the cluster, not only this driver's: the
        limit lies between what is queued now and that plus the refused array, so half of it is tried next (one job
        at a time from the queued count made a long ramp after a driver restart); with nothing queued, half of
        what was tried. The controller answered at once: it is not overloaded, so the wait is the first back-off,
        not a doubled one (a doubled wait idled the cluster once jobs had ended)."""
        size = max(1, size)
        self.cap = max(1, jobs + size // 2) if jobs else max(1, min(tried, self.cap or tried) // 2)
        self.ceiling = jobs + size - 1
        self.next_submit = self.now() + self.backoff_s[0]

    def failed(self) -> float | None:
        """sbatch failed (not a limit): the seconds until the next try, doubling up to the longest back-off; None
        once it has failed for longer than `give_up_s` (the waiting units fail instead)."""
        now = self.now()
        self.failing_since = self.failing_since or now
        if now - self.failing_since > self.give_up_s:
            return None
        wait = self.backoff
        self.next_submit = now + wait
        self.backoff = min(self.backoff_s[1], self.backoff * 2)
        return wait
