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
