"""jobs.policies.retry: attempts, causes, out-of-memory growth capped at max_mem_gb."""

import dataclasses

from jobs.policies.retry import RetryPolicy


@dataclasses.dataclass
class Limits:
    max_retries: int = 2
    mem_gb: float | None = 32.0
    oom_mem_factor: float = 1.5
    max_mem_gb: float | None = 60.0


def test_a_unit_is_retried_max_retries_times_then_given_up():
    policy, limits = RetryPolicy(), Limits(max_retries=2)
    decisions = [policy.decide("k", limits, "job 1 ended (FAILED)") for _ in range(3)]
    assert [(d.attempt, d.retry) for d in decisions] == [(1, True), (2, True), (3, False)]
    assert policy.total() == 2 and policy.mem_gb("k") is None  # not out of memory: its kind's memory
    assert RetryPolicy().decide("k", Limits(max_retries=0), "boom").retry is False


def test_out_of_memory_is_seen_in_the_error_the_state_or_error_txt_and_grows_memory_to_the_cap():
    policy, limits = RetryPolicy(), Limits(max_retries=5)
    first = policy.decide("a", limits, "job 7 ended", state="OUT_OF_MEMORY")
    assert first.oom and first.cause == "out of memory: job 7 ended" and policy.mem_gb("a") == 48.0
    assert policy.decide("a", limits, "x", stored_error="torch.cuda.OutOfMemoryError: CUDA out of memory").oom
    assert policy.mem_gb("a") == 60.0  # 72 capped at max_mem_gb
    assert not policy.decide("b", limits, "ValueError: nan loss").oom and policy.mem_gb("b") is None


def test_without_a_memory_request_or_a_cap_memory_grows_as_it_can():
    policy = RetryPolicy()
    policy.decide("a", Limits(mem_gb=None), "MemoryError")
    assert policy.mem_gb("a") is None  # nothing asked: nothing to raise
    policy.decide("b", Limits(max_mem_gb=None, max_retries=3), "oom-kill")
    policy.decide("b", Limits(max_mem_gb=None, max_retries=3), "oom-kill")
    assert policy.mem_gb("b") == 72.0
