"""Store facts of a rehearsal: per unit its plan, outcome and attempts, read from the stand-ins' own logs."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from pipeline.rehearsal.standin import ATTEMPTS

FAULT_EVENTS = {"diverged": "diverge", "killed": "exit", "time_limit": "timeout"}


def attempts(entry: Path) -> list[dict]:
    """[{start, last_t, from_step, to_step, ended, fault}] per start of the stand-in."""
    out: list[dict] = []
    try:
        lines = (entry / ATTEMPTS).read_text().splitlines()
    except FileNotFoundError:
        return out
    for line in lines:
        try:
            ev = json.loads(line)
        except ValueError:
            continue  # a line cut by a kill
        if ev["event"] == "start":
            out.append({"start": ev["t"], "last_t": ev["t"], "from_step": ev["step"], "to_step": ev["step"],
                        "ended": False, "fault": None, "slurm_job": ev.get("slurm_job")})
        elif out:
            a = out[-1]
            a["last_t"] = ev["t"]
            if ev["event"] == "checkpoint":
                a["to_step"] = ev["step"]
            elif ev["event"] == "end":
                a["ended"] = True
            elif ev["event"] in FAULT_EVENTS:
                a["fault"] = FAULT_EVENTS[ev["event"]]
    return out


def units(store: Path) -> list[dict]:
    found = []
    for kind_dir in sorted(p for p in store.iterdir() if p.is_dir() and not p.name.startswith("_")) \
            if store.is_dir() else []:
        for entry in sorted(kind_dir.glob("*/*")):
            try:
                config = json.loads((entry / "config.json").read_text())
            except (FileNotFoundError, ValueError):
                continue
            plan = config.get("_rehearsal") or {}
            manifest = None
            if (entry / "manifest.json").exists():
                manifest = json.loads((entry / "manifest.json").read_text())
            label = ((manifest or {}).get("meta") or {}).get("label", "")
            found.append({"kind": kind_dir.name, "key": entry.name, "plan": plan, "done": manifest is not None,
                          "error": (entry / "error.txt").exists(), "label": label,
                          "train_key": config.get("train_key"), "attempts": attempts(entry)})
    return found


def _stopped_in(attempt: dict, w0: float, w1: float) -> bool:
    """Whether the window can have stopped the attempt: one cut short stopped at the latest by the window's end; one
    that ran to its end did so inside the window, where its result could still be refused (a full store) or lost
    (with its node), so the unit was not done and ran again. An end before the window is a result kept."""
    return w0 <= attempt["last_t"] <= w1 if attempt["ended"] else attempt["last_t"] <= w1


def lost_work(unit: dict, windows: Sequence[tuple[float, float]] = ()) -> dict:
    """Steps computed more than once, and starts beyond those its faults forced (a duplicate job, a restart from
    scratch). Work lost inside an interrupted step is what the fault forces, not counted here. `windows`: wall
    times a cluster fault killed jobs in (a node set down, a full store); an attempt that stopped inside one, its
    next start after the window opened, was forced by it."""
    att = unit["attempts"]
    computed = sum(a["to_step"] - a["from_step"] for a in att)
    final = max((a["to_step"] for a in att), default=0)
    # a diverged attempt ends its unit as failed; the retry that follows is the driver's policy and resumes
    forced = sum(1 for a in att if a["fault"] in ("exit", "timeout", "diverge"))
    forced += sum(1 for a, nxt in zip(att, att[1:]) if windows and not a["fault"] and any(
        _stopped_in(a, w0, w1) and nxt["start"] >= w0 for w0, w1 in windows))
    # a checkpoint written whose log line the full store refused: the next start is ahead of the last line, not behind
    return {"repeated_steps": max(0, computed - final), "extra_starts": max(0, len(att) - 1 - forced)}
