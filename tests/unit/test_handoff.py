"""A done unit's job holding its GPU for the unit's follow-up: how long it may (jobs.policies.priority.handoff_s) and
how it waits for the driver's word (jobs.job.hand_over). The driver's side: tests/integration/test_submit_limits.py."""

import os

from jobs import RunStore, Unit
from jobs.job import hand_over
from jobs.policies.priority import HANDOFF_MAX_S, handoff_s

HOUR = 3600.0


def test_only_the_heads_of_the_longest_chains_hold_their_gpu_and_for_a_bounded_time():
    assert handoff_s(8 * HOUR, 8 * HOUR, 16 * HOUR, 16 * HOUR) == HANDOFF_MAX_S  # 2 % of 8 h is over the cap
    assert handoff_s(HOUR, 2 * HOUR, 3 * HOUR, 3 * HOUR + 600) == 72.0  # within a priority step of the longest
    assert handoff_s(HOUR, 2 * HOUR, 3 * HOUR, 4 * HOUR) == 0.0  # a shorter chain: its follow-up can wait
    assert handoff_s(8 * HOUR, 0.0, 8 * HOUR, 8 * HOUR) == 0.0  # nothing waits on it
    assert handoff_s(None, HOUR, HOUR, HOUR) == 0.0  # no estimate: no bound to hold it by


def _units(store, n):
    units = [Unit("train", f"{i:02d}" + "ab" * 16, "m:f", {}, handoff_s=30.0) for i in range(n)]
    for u in units:
        store.workdir(u.kind, u.key)
    return units


def test_the_job_ends_as_soon_as_the_driver_has_said_so_for_each_of_its_units(tmp_path):
    store = RunStore(tmp_path)
    units = _units(store, 2)
    clock, slept = [0.0], []

    def sleep(s):  # the driver says so for the first unit, then for the second, one poll apart
        slept.append(s)
        clock[0] += s
        store.hand_off(units[len(slept) - 1].kind, units[len(slept) - 1].key)

    assert hand_over(store, units, sleep=sleep, now=lambda: clock[0]) is True
    assert len(slept) == 2


def test_without_the_drivers_word_the_job_gives_its_gpu_back_at_the_bound(tmp_path):
    store = RunStore(tmp_path)
    units = _units(store, 1)
    clock = [0.0]

    def sleep(s):
        clock[0] += s

    assert hand_over(store, units, sleep=sleep, now=lambda: clock[0]) is False
    assert 30.0 <= clock[0] < 31.0


def test_a_planted_link_counts_only_as_presence_and_is_never_followed(tmp_path):
    store = RunStore(tmp_path)
    (unit,) = _units(store, 1)
    os.symlink(tmp_path / "nowhere", store.path(unit.kind, unit.key) / ".handoff")
    assert store.handed_off(unit.kind, unit.key)  # the job only ends earlier: what a member can cause at most
    assert not (tmp_path / "nowhere").exists()
