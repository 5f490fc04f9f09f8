"""jobs.policies.packing: groups stay together, units_per_job, slots; dealt round-robin where jobs start at once."""

import dataclasses

from jobs.policies.packing import packs


@dataclasses.dataclass
class U:
    name: str
    group: str | None = None


def names(result):
    return [[u.name for u in pack] for pack in result]


UNITS = [U("a"), U("g1", "g"), U("b"), U("g2", "g"), U("c"), U("d")]


def test_queued_jobs_take_groups_first_then_units_per_job_singles_up_to_the_slots():
    assert names(packs(UNITS, per_job=2, slots=10, deal=False)) == [["g1", "g2"], ["a", "b"], ["c", "d"]]
    assert names(packs(UNITS, per_job=2, slots=2, deal=False)) == [["g1", "g2"], ["a", "b"]]
    assert packs(UNITS, per_job=1, slots=0, deal=False) == []


def test_jobs_that_start_at_once_get_the_units_dealt_over_the_free_slots():
    assert names(packs(UNITS, per_job=1, slots=2, deal=True)) == [["a", "b", "d"], ["g1", "g2", "c"]]
    assert len(packs(UNITS, per_job=1, slots=8, deal=True)) == 5  # one job per atom: the group is one
    assert names(packs(UNITS, per_job=3, slots=8, deal=True)) == [["a", "b", "d"], ["g1", "g2", "c"]]
