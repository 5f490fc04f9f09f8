"""Where a cold `dvc repro` of the embedded default spends its time: per DAG stage and per unit kind, wall and CPU.

    .venv/bin/python -m bench.repro_breakdown [--params FILE] [--keep]

Runs the DAG in a throwaway git + DVC copy with an empty run store (bench/scratch_repo.py, executor `local`) and
meanwhile samples /proc every 0.5 s: the CPU time of every process working for the copy (dvc, the stage drivers,
the detached submitit jobs, whose rusage no parent collects) is charged to the stage running at the time and to
the process kind (a job's kind is its log folder: train, attack, prune, train-awd-with-estimated-dog). The machine is
shared, so wall time alone says little: CPU-seconds are what the copy itself burned, and "others" is what every
other process used meanwhile (/proc/stat minus ours). Per unit kind: the store's own wall seconds per unit (the
manifests' `meta.seconds`) and their share of the job CPU of that kind.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

from bench.common import Meter, report, table, wait_for_quiet
from bench.scratch_repo import ROOT

TICK = os.sysconf("SC_CLK_TCK")


def _proc(pid: str) -> tuple[str, str, float] | None:
    """(cmdline, cwd, CPU seconds) of a live process, None when it is gone or not ours to read."""
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        cwd = os.readlink(f"/proc/{pid}/cwd")
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return cmd, cwd, (int(fields[11]) + int(fields[12])) / TICK  # utime, stime


def classify(cmd: str) -> str:
    """What a process of the copy does: `job <desc>` (a submitit job; desc is its log folder), `driver <stage>`,
    `dvc`, or `other`."""
    if "submitit" in cmd or "jobs.owned_submission" in cmd:
        m = re.search(r"_logs/[^/ ]+/([^/ ]+)", cmd)
        return f"job {m.group(1) if m else '?'}"
    if m := re.search(r"-m pipeline\.(\w+)", cmd):
        return f"driver {m.group(1)}"
    return "dvc" if "dvc" in cmd else "other"


class Sampler(threading.Thread):
    """CPU of the copy's processes, charged to the stage running while it was spent (early AutoAttack jobs that the
    train stage starts are charged to train while it runs) and to each process kind. A process that ends between
    two samples loses at most its last 0.5 s."""

    def __init__(self, repo: Path):
        super().__init__(daemon=True)
        self.repo, self.stage, self.done = str(repo), "startup", threading.Event()
        self.last: dict[str, float] = {}
        self.by_stage: dict[str, float] = defaultdict(float)
        self.by_kind: dict[str, float] = defaultdict(float)

    def run(self) -> None:
        while not self.done.wait(0.5):
            for pid in filter(str.isdigit, os.listdir("/proc")):
                got = _proc(pid)
                if got is None or (self.repo not in got[0] and not got[1].startswith(self.repo)):
                    continue
                delta = max(0.0, got[2] - self.last.get(pid, 0.0))
                self.last[pid] = got[2]
                self.by_stage[self.stage] += delta
                self.by_kind[classify(got[0])] += delta


def unit_kinds(repo: Path) -> dict[str, list[float]]:
    """{kind: [units, wall seconds]} from the copy's run store: training by suite (adversarial apart),
    AutoAttack by its attack list, prune."""
    out: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])
    for man in (repo / "runs").glob("*/*/*/manifest.json"):
        meta = json.loads(man.read_text()).get("meta", {})
        config = json.loads((man.parent / "config.json").read_text()) if (man.parent / "config.json").exists() else {}
        kind = man.parent.parent.parent.name
        if kind == "train":
            suite = re.split(r"[\[ ]", meta.get("label", "?"), maxsplit=1)[0]
            kind = f"train {suite}" + (" (adversarial)" if config.get("adversarial") else "")
        elif kind == "autoattack":
            kind = f"autoattack {config.get('version', '?')}" + (
                f" {'+'.join(config['attacks'])}" if config.get("attacks") else "")
        out[kind][0] += 1
        out[kind][1] += float(meta.get("seconds", 0.0))
    return out


def repro(repo: Path, sampler: Sampler, timeout_s: float, fresh: bool = False) -> tuple[list[tuple[str, float]], float]:
    """Runs `dvc repro` in the copy (with `fresh`, `make repro` in a fresh clone: its setup of .venv first);
    returns [(stage, wall seconds)] in the order they ran, the setup as its first row, and the total."""
    from bench.scratch_repo import VENV_BIN, _env

    t0 = time.monotonic()
    starts: list[tuple[str, float]] = [("setup (make: .venv, pip)", 0.0)] if fresh else []
    sampler.stage = starts[0][0] if fresh else sampler.stage
    env = _env()
    if fresh:  # the clone's own .venv, as a newcomer's shell has it: nothing of this checkout's
        env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if Path(p) != VENV_BIN)
    cmd = ["make", "repro"] if fresh else [str(VENV_BIN / "dvc"), "repro"]
    proc = subprocess.Popen(cmd, cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    tail: list[str] = []
    for line in proc.stdout:
        tail = (tail + [line])[-60:]
        if m := re.match(r"Running stage '([^']+)'", line):
            starts.append((m.group(1), time.monotonic() - t0))
            sampler.stage = m.group(1)
        if time.monotonic() - t0 > timeout_s:
            proc.kill()
    total = time.monotonic() - t0
    if proc.wait() != 0:  # the times so far are still reported, marked
        print(f"dvc repro failed ({proc.returncode}):\n{''.join(tail)}")
        starts.append((f"FAILED (dvc repro exit {proc.returncode})", total))
    ends = [s for _, s in starts[1:]] + [total]
    return [(name, end - start) for (name, start), end in zip(starts, ends)], total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", type=Path, help="the params file to run (default: the working tree's params.yaml)")
    ap.add_argument("--rev", help="take the code from this commit, not the working tree (e.g. HEAD)")
    ap.add_argument("--timeout-s", type=float, default=3600)
    ap.add_argument("--keep", action="store_true", help="keep the throwaway copy (its path is printed)")
    ap.add_argument("--fresh", action="store_true",
                    help="`git clone` this checkout's HEAD and time `make repro` there, setup included (what a "
                         "newcomer runs); the params are the commit's")
    ap.add_argument("--note", default="", help="a sentence added to the section (e.g. what the params are)")
    args = ap.parse_args()
    from bench.scratch_repo import make_repo

    quiet = wait_for_quiet()
    tmp = Path(tempfile.mkdtemp(prefix="awd-bench-breakdown-"))
    try:
        if args.fresh:
            repo = tmp / "fresh"
            subprocess.run(["git", "clone", "-q", str(ROOT), str(repo)], check=True)
        else:
            repo = make_repo(tmp, args.params.read_text() if args.params else None, executor="local", rev=args.rev)
        sampler = Sampler(repo)
        sampler.start()
        with Meter() as meter:
            stages, total = repro(repo, sampler, args.timeout_s, fresh=args.fresh)
        sampler.done.set()
        sampler.join()
        quiet["others"] = meter.others
        print(f"kept {tmp}" if args.keep else "", end="")
        by_stage, by_kind = sampler.by_stage, sampler.by_kind
        rows = [[name, f"{wall:.1f}", f"{by_stage.get(name, 0):.1f}"] for name, wall in stages]
        rows.append([f"**cold `{'make' if args.fresh else 'dvc'} repro`, all{' (fresh clone, setup included)' if args.fresh else ' stages'}**", f"**{total:.1f}**", f"**{sum(by_stage.values()):.1f}**"])
        kinds = unit_kinds(repo)
        unit_rows = [[k, int(n), f"{s:.1f}", f"{s / n:.1f}"] for k, (n, s) in sorted(kinds.items())]
        unit_rows.append(["**all units**", int(sum(n for n, _ in kinds.values())),
                          f"**{sum(s for _, s in kinds.values()):.1f}**", ""])
        proc_rows = [[k, f"{v:.1f}"] for k, v in sorted(by_kind.items(), key=lambda kv: -kv[1])]
        what = ("`make repro` in a fresh `git clone` of HEAD (its params.yaml; `.venv` set up by make), executor "
                f"`local` ({os.cpu_count()} parallel jobs)" if args.fresh else
                f"cold `dvc repro` of {'`' + str(args.params) + '`' if args.params else '`params.yaml`'} "
                f"({'commit ' + args.rev if args.rev else 'the working tree'}) in a throwaway git + DVC copy, executor "
                f"`local` ({os.cpu_count()} parallel jobs)")
        body = (f"{args.note + ' ' if args.note else ''}{what[0].upper() + what[1:]}, empty run store; other processes "
                f"used {meter.others or 0:.2f} cores on average meanwhile. CPU = user + system seconds of the copy's "
                f"own processes, sampled from /proc.\n\n"
                + table(["stage", "wall s", "CPU s"], rows) + "\n\n"
                + table(["unit kind (run store)", "units", "wall s (sum of units)", "wall s / unit"], unit_rows)
                + "\n\n" + table(["process kind", "CPU s"], proc_rows))
        report("Cold repro breakdown: stages, unit kinds, CPU", body, quiet)
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
