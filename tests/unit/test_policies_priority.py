"""jobs.policies.priority: --nice in 15-minute steps of how much shorter a chain is; longest chain first."""

import dataclasses

from jobs.policies.priority import NICE_STEP_MIN, chain_nice, longest_first


def test_nice_is_the_minutes_a_chain_is_shorter_in_steps_and_never_negative():
    hour = 3600.0
    assert chain_nice(5 * hour, 5 * hour) == 0
    assert chain_nice(5 * hour - 14 * 60, 5 * hour) == 0  # within one step: the same priority (and array)
    assert chain_nice(4 * hour, 5 * hour) == 60
    assert chain_nice(3.5 * hour, 5 * hour) == 90 and 90 % NICE_STEP_MIN == 0
    assert chain_nice(6 * hour, 5 * hour) == 0  # longer than the reference: never a negative nice


@dataclasses.dataclass
class U:
    name: str
    chain_s: float


def test_longest_chain_first_and_equal_chains_keep_their_order():
    units = [U("a", 10), U("b", 300), U("c", 10), U("d", 50)]
    longest_first(units)
    assert [u.name for u in units] == ["b", "d", "a", "c"]
