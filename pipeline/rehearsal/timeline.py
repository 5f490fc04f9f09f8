"""Scheduler facts of a rehearsal: every job attempt from sacct (requeued attempts included), and what the GPUs
did over time (running, pending, idle), integrated exactly over the event times."""

from __future__ import annotations

import os
import pwd
import subprocess
import time
from collections.abc import Sequence
from typing import Any

FIELDS = ("JobID", "JobIDRaw", "JobName", "State", "Submit", "Start", "End")


def sacct_jobs(env: dict, since: float, until: float) -> list[dict]:
    """One row per job attempt (array tasks separately) submitted in [since, until], times as epoch seconds
    (None when not reached)."""
    start = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(since - 60))  # minute resolution
    user = pwd.getpwuid(os.getuid()).pw_name
    out = subprocess.run(["sacct", "-D", "-X", "-P", "-n", "-u", user, f"--starttime={start}", "-o", ",".join(FIELDS)],
                         env=dict(env, SLURM_TIME_FORMAT="%s"), capture_output=True, text=True, timeout=120,
                         check=True).stdout
    rows = []
    for line in out.splitlines():
        parts = line.split("|")
        if len(parts) != len(FIELDS):
            continue
        row: dict[str, Any] = dict(zip(FIELDS, parts))
        for f in ("Submit", "Start", "End"):
            row[f] = float(row[f]) if row[f].isdigit() else None
        if "[" in row["JobID"]:  # a pending array's remaining tasks in one row, e.g. 123_[5-99]
            continue
        if row["Submit"] is None or not since - 1 <= row["Submit"] <= until:  # another rehearsal's job
            continue
        rows.append(row)
    return rows


def kind_of(job_name: str) -> str:
    """awd-train, awd-train-awd-with-estimated-dog, awd-attack, awd-prune -> what the jobs ran."""
    name = job_name[4:] if job_name.startswith("awd-") else job_name
    return "train (phase 2: AWD)" if name.startswith("train-awd") else name


def sweep(jobs: list[dict], t0: float, t1: float, gpus: int,
          waiting: Sequence[tuple[float, float]] = ()) -> dict:
    """Integrals over [t0, t1] (GPU-seconds): running; idle while some job was pending (the scheduler, QOS or
    dispatch); idle while nothing was pending but units were ready and not yet submitted (`waiting`: per unit, from
    when its inputs existed to its job's submission: a stage barrier, a driver starting or restarting); idle with
    nothing pending and nothing ready (the dependency chain: no scheduling could use those GPUs). Peak counts."""
    events = []
    for j in jobs:
        sub, st, en = j["Submit"], j["Start"], j["End"]
        if sub is None:
            continue
        en = min(en if en is not None else t1, t1)
        st_eff = min(st if st is not None else en, en)
        events += [(sub, "q", 1), (en, "q", -1), (sub, "p", 1), (st_eff, "p", -1), (st_eff, "r", 1), (en, "r", -1)]
    events += [e for ready, submit in waiting if submit > ready for e in ((ready, "w", 1), (submit, "w", -1))]
    # sacct times are whole seconds: a job that ends in the second another starts must leave before it arrives, or
    # the handover counts both (peak running above the GPUs). Ends (-1) sort before starts (+1) at one time.
    events.sort(key=lambda e: (e[0], e[2]))
    queued = pending = running = ready = 0
    last = t0
    acc = {"running": 0.0, "idle_pending": 0.0, "idle_ready": 0.0, "idle_dependency": 0.0}
    peak_q = peak_r = 0

    def advance(now):
        nonlocal last
        now = max(t0, min(now, t1))
        dt = now - last
        if dt > 0:
            busy = min(running, gpus)
            idle = gpus - busy
            acc["running"] += busy * dt
            if pending > 0:
                acc["idle_pending"] += idle * dt
            else:
                acc["idle_ready"] += min(idle, ready) * dt
                acc["idle_dependency"] += (idle - min(idle, ready)) * dt
            last = now

    for t, what, d in events:
        advance(t)
        if what == "q":
            queued += d
        elif what == "p":
            pending += d
        elif what == "w":
            ready += d
        else:
            running += d
        peak_q, peak_r = max(peak_q, queued), max(peak_r, running)
    advance(t1)
    return {**acc, "idle_nothing_pending": acc["idle_ready"] + acc["idle_dependency"], "peak_queued": peak_q,
            "peak_running": peak_r}


def busy_series(jobs: list[dict], t0: float, t1: float, points: int = 400) -> tuple[list[float], dict]:
    """Running jobs per stage at `points` evenly spaced times (for the plot)."""
    step = (t1 - t0) / max(1, points - 1)
    times = [t0 + i * step for i in range(points)]
    series: dict[str, list[int]] = {}
    for j in jobs:
        if j["Start"] is None:
            continue
        end = j["End"] if j["End"] is not None else t1
        counts = series.setdefault(kind_of(j["JobName"]), [0] * points)
        for i, t in enumerate(times):
            if j["Start"] <= t < end:
                counts[i] += 1
    return times, series
