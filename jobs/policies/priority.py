"""Priority among our own pending jobs: longest chain first, and sbatch --nice for the shorter ones."""

from __future__ import annotations

import typing as tp

NICE_STEP_MIN = 15  # chains within a step share a priority (and so an array)


def chain_nice(chain_s: float, longest_s: float) -> int:
    """sbatch --nice for a unit whose chain (estimate + tail) is `chain_s` when the campaign's longest is `longest_s`:
    the minutes it is shorter, in steps of NICE_STEP_MIN. A user may only lower priorities (nice >= 0), so the heads
    of the longest chains keep theirs and shorter work yields to them among our own pending jobs: an extra seed
    submitted late starts before evaluations queued earlier (FIFO would start it after them). Jobs of other users
    see ours at most this much less urgent."""
    short_min = max(0.0, longest_s - chain_s) / 60
    return int(short_min // NICE_STEP_MIN) * NICE_STEP_MIN


class Chained(tp.Protocol):
    @property
    def chain_s(self) -> float: ...


C = tp.TypeVar("C", bound=Chained)


def longest_first(units: list[C]) -> None:
    """Sorts `units` in place, longest chain (the unit's estimate plus the work that waits on it) first: those chains
    bound the makespan; short ones fill the gaps they leave. Stable: a group's units, and equal chains, keep their
    order."""
    units.sort(key=lambda u: -u.chain_s)


HANDOFF_FRACTION = 0.02  # a unit's job may hold its GPU at most this much of the unit's estimate after it ends...
HANDOFF_MAX_S = 300.0  # ...and never longer than this (a dead driver never acknowledges)


def handoff_s(estimate_s: float | None, tail_s: float, chain_s: float, longest_s: float) -> float:
    """Seconds a unit's job keeps its GPU after the unit is done, until the driver says it has submitted what the
    unit's end made ready: 0 unless the unit heads one of the longest chains (within NICE_STEP_MIN of the longest)
    and something waits on it. When such a job ends, the scheduler hands its GPU within a second to a job already
    pending, while the driver needs a poll and an sbatch to submit the follow-up (an extra seed chosen by the
    sweep's result), which would then wait for the next GPU to free: up to the length of a running job, on the
    campaign's critical path."""
    if tail_s <= 0 or not estimate_s or estimate_s <= 0 or longest_s - chain_s >= NICE_STEP_MIN * 60:
        return 0.0
    return min(HANDOFF_FRACTION * estimate_s, HANDOFF_MAX_S)
