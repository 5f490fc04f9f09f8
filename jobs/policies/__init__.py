"""The driver's decisions as plain objects, each testable without a job or a scheduler: how many jobs to queue and
when to submit again (`throttle`), whether a failed unit runs again and with how much memory (`retry`), which
units share a job (`packing`) and their priority among our own jobs (`priority`). Time comes in through a `Clock`
(the driver passes `time.time`; tests pass a counter), never read directly."""

from __future__ import annotations

import typing as tp

Clock = tp.Callable[[], float]  # seconds, monotonic enough for waits of seconds to minutes
