"""Store facts of a rehearsal: per unit its plan, outcome and attempts, read from the stand-ins' own logs."""

from __future__ import annotations

import json
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


def lost_work(unit: dict) -> dict:
    """Steps computed more than once, and starts beyond those its faults forced (a duplicate job, a restart from
    scratch). Work lost inside an interrupted step is what the fault forces, not counted here."""
    att = unit["attempts"]
    computed = sum(a["to_step"] - a["from_step"] for a in att)
    final = max((a["to_step"] for a in att), default=0)
    # a diverged attempt ends its unit as failed; the retry that follows is the driver's policy and resumes
    forced = sum(1 for a in att if a["fault"] in ("exit", "timeout", "diverge"))
    return {"repeated_steps": computed - final, "extra_starts": max(0, len(att) - 1 - forced)}
