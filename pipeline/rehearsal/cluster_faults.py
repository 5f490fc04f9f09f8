"""The cluster's own faults in a rehearsal (issue 27), beside the units' faults the stand-ins inject:

- `slurmctld`: the controller stopped (`local-slurm.sh pause slurmctld`) for `--slurmctld-down-min` simulated
  minutes; sbatch, squeue and scontrol fail meanwhile, jobs keep running;
- `slurmdbd`: the accounting daemon stopped for `--slurmdbd-down-min` simulated minutes (sacct fails);
- `store_full`: the copy's run store is a tmpfs; mid-campaign it is shrunk to what it holds plus a few MB and a
  filler file takes the rest; the stage driver stops and says how much space it needs (dvc repro fails); the
  rehearsal then frees the space (removes the filler, restores the size) and reruns `dvc repro`, as a user would;
- `node_down`: the node running most of our jobs set down (`scontrol update state=down`) for `--node-down-min`
  simulated minutes, then resumed; SLURM requeues its jobs (JobRequeue=1) and they resume from their checkpoints.

Each fires once, at a seeded fraction of the training units done, in its own slot so that no two overlap. Runs in
the rehearsal's polling loop (no thread); every action is timed, so the report can tell which restarts each forced.
"""

from __future__ import annotations

import random
import re
import shutil
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

NAMES = ("slurmctld", "slurmdbd", "store_full", "node_down")
# what the stage driver says while each lasts (jobs/outages.py, jobs/driver_faults.py): the report quotes the first
SAID = {"slurmctld": ("slurmctld unreachable since", "slurmctld answers again"),
        "slurmdbd": ("slurmdbd (accounting) unreachable", "sacct answers again"),
        "store_full": ("is full (",),
        "node_down": ("was requeued by the scheduler",)}
KILLS_JOBS = ("store_full", "node_down")  # restarts inside these windows are the fault's, not lost work
STORE_SIZE = "8g"  # the tmpfs's size outside the fault: pages are only used as the store grows
FULL_MARGIN = 4 << 20  # bytes left to fill when the store is shrunk to what it holds


def schedule(names: list[str], seed: int) -> dict[str, float]:
    """{fault: fraction of training units done when it fires}: seeded slots in [0.15, 0.85), one per fault."""
    rng = random.Random(f"cluster-faults|{seed}")
    order = sorted(names, key=lambda _: rng.random())
    width = 0.7 / max(1, len(order))
    return {name: round(0.15 + width * (i + 0.2 + 0.6 * rng.random()), 3) for i, name in enumerate(order)}


def mount_store(store: Path) -> None:
    store.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={STORE_SIZE}", "tmpfs", str(store)],
                          capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise SystemExit(f"rehearsal: fault store_full needs the run store on a size-limited tmpfs (root), and "
                         f"`mount -t tmpfs {store}` failed: {done.stderr.strip()} (leave store_full out of --faults)")


def unmount_store(store: Path, keep: bool = True) -> None:
    """Unmounts the store's tmpfs (no-op when none is mounted), keeping its files in place on disk when `keep`."""
    if subprocess.run(["mountpoint", "-q", str(store)], timeout=60).returncode != 0:
        return
    kept = store.with_name(store.name + ".kept")
    if keep:
        shutil.rmtree(kept, ignore_errors=True)
        shutil.copytree(store, kept, symlinks=True, ignore=shutil.ignore_patterns(".rehearsal-filler"))
    subprocess.run(["umount", "-l", str(store)], capture_output=True, timeout=60)
    if keep:
        store.rmdir()
        kept.rename(store)


class Injector:
    """The cluster faults of one rehearsal: `poll(train_done)` each second starts and ends them; `after_run(text)`
    frees a full store once dvc repro has stopped on it (True: rerun)."""

    def __init__(self, names: list[str], seed: int, durations_s: dict[str, float], store: Path, env: dict,
                 cluster: Callable[..., None], say: Callable[[str], None]) -> None:
        self.at = schedule(names, seed)
        self.durations_s, self.store, self.env, self.cluster, self.say = durations_s, store, env, cluster, say
        self.events: list[dict] = []  # one per fault fired: name, at, start, end, and what it touched
        self.active: dict | None = None

    def _run(self, *cmd: str) -> str:
        return subprocess.run(list(cmd), env=self.env, capture_output=True, text=True, timeout=120).stdout

    def poll(self, train_fraction: float) -> None:
        now = time.time()
        if self.active is not None:
            ev = self.active
            if ev["name"] != "store_full" and now >= ev["start"] + self.durations_s[ev["name"]]:
                self._clear(ev)
            return
        fired = {e["name"] for e in self.events}
        due = [n for n, at in sorted(self.at.items(), key=lambda kv: kv[1]) if n not in fired and train_fraction >= at]
        if due:
            self._start(due[0], train_fraction)

    def _start(self, name: str, fraction: float) -> None:
        ev = {"name": name, "at_train_fraction": self.at[name], "train_fraction": round(fraction, 3),
              "start": time.time(), "end": None}
        if name in ("slurmctld", "slurmdbd"):
            self.cluster("pause", name)
        elif name == "node_down":
            nodes = Counter(self._run("squeue", "-h", "-t", "R", "-o", "%N").split())
            if not nodes:
                return  # nothing runs now: try again at the next poll
            node = nodes.most_common(1)[0][0]
            ev.update(node=node, jobs_on_node=nodes[node])
            subprocess.run(["scontrol", "update", f"nodename={node}", "state=down", "reason=rehearsal-node-down"],
                           env=self.env, capture_output=True, timeout=60, check=True)
        else:  # store_full: shrink the tmpfs to what it holds plus a margin, then fill the margin
            used = shutil.disk_usage(self.store).used
            subprocess.run(["mount", "-o", f"remount,size={used + FULL_MARGIN}", str(self.store)], check=True,
                           capture_output=True, timeout=60)
            try:
                with open(self.store / ".rehearsal-filler", "wb") as f, open("/dev/zero", "rb") as zero:
                    while chunk := zero.read(1 << 20):
                        f.write(chunk)
                        f.flush()
            except OSError:
                pass  # ENOSPC: full, as meant (running jobs may fill the margin before the filler is even created)
            ev["store_bytes"] = used
        ev["start"] = time.time()
        self.events.append(ev)
        self.active = ev
        self.say(f"rehearsal: injected {name} at {fraction:.0%} of training units done"
                 + (f" (node {ev['node']}, {ev['jobs_on_node']} jobs on it)" if name == "node_down" else ""))

    def _clear(self, ev: dict) -> None:
        if ev["name"] in ("slurmctld", "slurmdbd"):
            self.cluster("resume", ev["name"])
        elif ev["name"] == "node_down":
            subprocess.run(["scontrol", "update", f"nodename={ev['node']}", "state=resume"], env=self.env,
                           capture_output=True, timeout=60)
        else:
            (self.store / ".rehearsal-filler").unlink(missing_ok=True)
            subprocess.run(["mount", "-o", f"remount,size={STORE_SIZE}", str(self.store)], capture_output=True,
                           timeout=60)
        ev["end"] = time.time()
        self.active = None
        self.say(f"rehearsal: {ev['name']} cleared after {ev['end'] - ev['start']:.0f} s")

    def after_run(self, log_text: str) -> bool:
        """A dvc repro run ended: a store it found full is freed (the user's step) and the campaign rerun."""
        ev = self.active
        if ev is None or ev["name"] != "store_full":
            return False
        ev["driver_stopped"] = any(s in log_text for s in SAID["store_full"])  # its one line, not a traceback
        self._clear(ev)
        return True  # whatever the driver said, the user frees space and reruns

    def close(self) -> None:
        """A fault still on when the campaign ended is cleared, so the cluster and store are left as found."""
        if self.active is not None:
            self._clear(self.active)


def report(events: list[dict], names: list[str], logs: list[str], t0: float, mpg: float, final_ok: bool,
           lost: int) -> tuple[dict, dict, list[str], list[dict]]:
    """(injected, survived, not reached, rows) of the cluster faults: each row says when it lasted (simulated h from
    the start), what the driver said about it (the first line, and how often), and whether the campaign survived."""
    text = "\n".join(logs)
    injected, survived, rows = {}, {}, []
    for ev in events:
        name = ev["name"]
        lines = [_clean(piece, SAID[name]) for line in text.splitlines() for piece in line.split("\r")
                 if any(s in piece for s in SAID[name])]
        injected[name] = 1
        survived[name] = int(final_ok and lost == 0 and ev["end"] is not None)
        rows.append({**{k: v for k, v in ev.items() if k not in ("start", "end")},
                     "from_h": round((ev["start"] - t0) / 60 / mpg, 2),
                     "lasted_h": round(((ev["end"] or ev["start"]) - ev["start"]) / 60 / mpg, 2),
                     "user_saw": lines[0][:400] if lines else None, "lines_said": len(lines)})
    not_reached = [n for n in names if n not in injected]
    return injected, survived, not_reached, rows


def _clean(piece: str, phrases: tuple[str, ...]) -> str:
    """The driver's line without the progress bar it was written over (tqdm pads with spaces, then the line)."""
    return re.split(r"\s{3,}", piece.strip())[-1] if any(s in piece for s in phrases) else piece.strip()


def windows(events: list[dict]) -> list[tuple[float, float]]:
    """Wall-time windows in which a fault killed jobs (their units restart: forced, not lost)."""
    return [(ev["start"], ev["end"] or ev["start"]) for ev in events if ev["name"] in KILLS_JOBS]


def markdown(rows: list[dict]) -> list[str]:
    if not rows:
        return []
    out = ["", "## Cluster faults", "", "| fault | from (h) | lasted (h) | what the driver said (first line) | "
           "times said | survived |", "|---|---|---|---|---|---|"]
    for r in rows:
        what = r["name"] + (f" ({r['node']}, {r['jobs_on_node']} jobs)" if r.get("node") else "")
        said = (r["user_saw"] or "(nothing: no submission or poll met it)").replace("|", "\\|")
        out.append(f"| {what} | {r['from_h']} | {r['lasted_h']} | {said} | {r['lines_said']} | "
                   f"{r.get('survived', '')} |")
    return out
