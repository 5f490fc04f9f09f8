"""Whether a unit whose job failed runs again: up to `max_retries` resubmissions, with more memory after an
out-of-memory end (x `oom_mem_factor`, at most `max_mem_gb`)."""

from __future__ import annotations

import dataclasses
import typing as tp

OOM_MARKERS = ("OUT_OF_MEMORY", "OutOfMemoryError", "CUDA out of memory", "MemoryError", "oom-kill")


class Limits(tp.Protocol):
    """The settings the policy reads (an ExecutorConfig with the unit kind's profile applied)."""

    max_retries: int
    mem_gb: float | None
    oom_mem_factor: float
    max_mem_gb: float | None


@dataclasses.dataclass(frozen=True)
class Decision:
    attempt: int  # this failure's number: 1 when the first run failed
    retry: bool
    oom: bool
    cause: str  # the error, prefixed "out of memory: " when it was one


class RetryPolicy:
    def __init__(self) -> None:
        self.retries: dict[str, int] = {}  # resubmissions made, per unit key
        self.mem: dict[str, float] = {}  # memory a retry raised, per unit key (what its next job asks)

    def decide(self, key: str, limits: Limits, error: str, state: str = "", stored_error: str | None = None
               ) -> Decision:
        """A unit's job failed with `error` (the scheduler said `state`; the entry's error.txt says
        `stored_error`): retry it or give up, and the memory its next job asks."""
        oom = any(m in error or m in state or m in (stored_error or "") for m in OOM_MARKERS)
        attempt = self.retries.get(key, 0) + 1
        cause = ("out of memory: " if oom else "") + error
        if attempt > limits.max_retries:
            return Decision(attempt, False, oom, cause)
        self.retries[key] = attempt
        mem = self.mem.get(key, limits.mem_gb)
        if oom and mem is not None:
            raised = mem * limits.oom_mem_factor
            self.mem[key] = min(raised, limits.max_mem_gb) if limits.max_mem_gb else raised
        return Decision(attempt, True, oom, cause)

    def mem_gb(self, key: str) -> float | None:
        """The memory a retry raised for unit `key` (None: its kind's own)."""
        return self.mem.get(key)

    def total(self) -> int:
        return sum(self.retries.values())
