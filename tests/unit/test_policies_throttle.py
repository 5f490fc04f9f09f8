"""jobs.policies.throttle against a fake clock: caps, the site's limit, refusals, back-off, giving up."""

from jobs.policies.throttle import SubmitThrottle


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_a_site_limit_read_up_front_caps_and_is_never_probed():
    t = SubmitThrottle(cap=None, site_limit=2, now=Clock())
    assert t.capped_by_site and t.slots(waiting=10, jobs=0) == 2 and t.slots(waiting=10, jobs=2) == 0
    t.accepted(jobs=2, queued_before=0)
    assert t.cap == 2  # not raised past what sacctmgr said
    assert not SubmitThrottle(cap=2, site_limit=5).capped_by_site  # the own cap is lower: it stays


def test_nothing_is_submitted_without_waiting_units_or_before_the_next_try():
    clock = Clock()
    t = SubmitThrottle(cap=None, now=clock)
    assert t.slots(waiting=0, jobs=0) == 0 and t.slots(waiting=3, jobs=0) == 3
    assert t.failed() == 5.0
    assert t.slots(waiting=3, jobs=0) == 0
    clock.t += 5.0
    assert t.slots(waiting=3, jobs=0) == 3


def test_a_refusal_halves_toward_the_limit_then_probes_one_job_at_a_time_near_it():
    clock = Clock()
    t = SubmitThrottle(cap=100, now=clock)
    t.refused(jobs=10, size=8, tried=8)  # the limit lies in 10..17: try half the refused array on top
    assert (t.cap, t.ceiling, t.next_submit) == (14, 17, 1005.0)
    t.accepted(jobs=14, queued_before=10)
    assert (t.cap, t.ceiling) == (18, 17)  # as far again as accepted, but no more than one past the ceiling
    t.accepted(jobs=18, queued_before=14)
    assert t.cap == 19
    t.refused(jobs=0, size=4, tried=6)  # nothing of ours queued: half of what was tried
    assert t.cap == 3


def test_a_refusal_waits_the_first_back_off_however_long_sbatch_failed_before():
    clock = Clock()
    t = SubmitThrottle(cap=None, backoff_s=(5.0, 600.0), now=clock)
    assert [t.failed() for _ in range(4)] == [5.0, 10.0, 20.0, 40.0]
    t.refused(jobs=3, size=2, tried=2)
    assert t.next_submit == clock.t + 5.0


def test_back_off_doubles_to_its_longest_and_resets_once_a_submission_goes_through():
    t = SubmitThrottle(cap=None, backoff_s=(5.0, 30.0), now=Clock())
    assert [t.failed() for _ in range(5)] == [5.0, 10.0, 20.0, 30.0, 30.0]
    t.accepted(jobs=1, queued_before=0)
    assert t.failed() == 5.0


def test_sbatch_failing_longer_than_the_give_up_time_gives_up():
    clock = Clock()
    t = SubmitThrottle(cap=None, give_up_s=60.0, now=clock)
    assert t.failed() is not None
    clock.t += 60.0
    assert t.failed() is not None  # not yet longer than 60 s
    clock.t += 0.5
    assert t.failed() is None
