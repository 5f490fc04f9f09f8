"""jobs.policies.packing: groups stay together, units_per_job, slots; dealt round-robin where jobs start at once."""

import dataclasses

from jobs.policies.packing import SHORT_JOB_S, packs, short_s


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


@dataclasses.dataclass
class T:
    name: str
    estimate_s: float | None
    group: str | None = None


def test_short_units_share_jobs_of_about_the_short_job_length_and_long_ones_keep_theirs():
    units = [T("long", 5000.0), T("a1", 200.0, "a"), T("a2", 200.0, "a"), T("p", 300.0), T("q", 450.0),
             T("b1", 100.0, "b"), T("unknown", None), T("r", 10.0)]
    assert names(packs(units, per_job=1, slots=10, deal=False, short_s=900.0)) == [
        ["long"], ["a1", "a2", "p", "q"], ["unknown"], ["b1", "r"]]  # a group is never split; order is kept
    assert names(packs(units, per_job=1, slots=2, deal=False, short_s=900.0)) == [["long"], ["a1", "a2", "p", "q"]]
    # no short_s (the queue has room: the campaign's tail), or an explicit units_per_job: as before
    assert len(packs(units, per_job=1, slots=10, deal=False)) == 7
    assert names(packs(units, per_job=2, slots=10, deal=False, short_s=900.0))[0] == ["a1", "a2"]


def test_a_pack_never_outgrows_the_time_limit_its_units_ask_for():
    assert short_s(None, None) == short_s(60, None) == SHORT_JOB_S  # a pack holds under twice this: 30 min < 60
    assert short_s(15, 1.5) == 300.0  # --time 15 min sized with a factor 1.5: packs under 10 min of work
