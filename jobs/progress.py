"""The driver's progress line: done / running / queued / failed counts and an ETA from the durations of finished units,
for every unit kind the driver has at once (a train stage also runs the early AutoAttack and pruning units)."""

from __future__ import annotations

import math
import statistics
import sys
import time
import typing as tp

from tqdm import tqdm


def estimate_eta_s(remaining: int, durations: tp.Sequence[float], parallel: int) -> float | None:
    """Seconds until `remaining` units finish, if they take the median finished-unit time, `parallel` at a time.

    The median, not the mean: one unit slowed by a busy node should not swing the estimate. None before any
    unit of this run has finished (there is nothing honest to extrapolate from).
    """
    if remaining <= 0:
        return 0.0
    if not durations:
        return None
    return math.ceil(remaining / max(1, parallel)) * statistics.median(durations)


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


class Progress:
    def __init__(self, total: int, done: int, desc: str, stream: tp.TextIO | None = None):
        self.stream = stream if stream is not None else sys.stderr
        self.bar = tqdm(total=total, initial=done, desc=desc, unit="unit", file=self.stream, dynamic_ncols=True,
                        bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]", mininterval=0.5)
        self.durations: list[float] = []
        isatty = getattr(self.stream, "isatty", lambda: False)()
        # a log file (dvc's captured stderr, a SLURM login session piped to tee) gets a line a minute, not a second
        self._every_s = 1.0 if isatty else 60.0
        self._last: tuple[tp.Any, ...] = ()
        self._last_t = float("-inf")

    def update(self, done: int, running: int, failed: int, parallel: int, retried: int = 0) -> None:
        eta = estimate_eta_s(running, self.durations, parallel)
        counts = (done, running, failed, retried)
        now = time.monotonic()
        if counts == self._last and now - self._last_t < self._every_s:
            return
        self._last, self._last_t = counts, now
        self.bar.n = done
        retries = f" retried={retried}" if retried else ""
        self.bar.set_postfix_str(f"done={done} running={running} failed={failed}{retries} eta={format_duration(eta)}",
                                 refresh=False)
        self.bar.refresh()

    def update_kinds(self, done: int, rows: tp.Mapping[str, tp.Mapping[str, int]],
                     durations: tp.Mapping[str, tp.Sequence[float]], parallel: int, retried: int = 0,
                     etas: tp.Mapping[str, tuple[float, str]] | None = None) -> None:
        """One line for every kind: `rows[kind]` holds total, done, running, queued and failed; the ETA of a kind
        is `etas[kind]` (seconds, and whether the estimates behind it are measured or assumed) when the driver has
        one, else the median duration of its finished units extrapolated over what remains, `parallel` at a time."""
        etas = etas or {}
        shown = {k: (format_duration(v[0]), v[1]) for k, v in etas.items()}  # the line changes when these do
        counts = (done, retried, tuple((k, tuple(sorted(r.items()))) for k, r in sorted(rows.items())),
                  tuple(sorted(shown.items())))
        now = time.monotonic()
        if counts == self._last and now - self._last_t < self._every_s:
            return
        self._last, self._last_t = counts, now
        self.bar.n = done
        parts = []
        for kind, r in rows.items():
            left = r["total"] - r["done"] - r["failed"]
            if kind in shown and left > 0:
                eta = f"{shown[kind][0]} ({shown[kind][1]})"
            else:
                eta = format_duration(estimate_eta_s(left, durations.get(kind, ()), parallel))
            parts.append(f"{kind} {r['done']}/{r['total']} running={r['running']} queued={r['queued']} "
                         f"failed={r['failed']} eta={eta}")
        retries = f" | retried={retried}" if retried else ""
        self.bar.set_postfix_str(" | ".join(parts) + retries, refresh=False)
        self.bar.refresh()

    def write(self, message: str) -> None:
        self.bar.write(message, file=self.stream)

    def close(self) -> None:
        self.bar.close()
