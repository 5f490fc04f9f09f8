"""Orchestration cost: what DVC and the job layer add around the computation.

--part dvc    cold `dvc repro` of the embedded default (the full params.yaml) in a throwaway git + DVC copy with
              the local executor and an empty run store, then a no-op `dvc repro` (median of --noop-repeats).
              Targets: no-op ≤ 2 s, cold ≤ 5 min on 2 cores.
--part local  --units trivial units (bench.noop_unit:noop, no work) through jobs.run_units with the local executor:
              wall seconds per unit (total / units), then the no-op rerun with every unit cached.
--part slurm  the same through the local SLURM cluster (scripts/local-slurm.sh), one array task per unit unless
              --slurm-units-per-job packs them.

Each part waits for a quiet machine, prints a table and appends a section to results/bench.md.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from bench.common import Meter, report, table, wait_for_quiet

ROOT = Path(__file__).resolve().parent.parent

PARTS = ("dvc", "local", "slurm")
NOOP_FN = "bench.noop_unit:noop"
KIND = "bench-noop"


def _timed(fn) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


# -- dvc ---------------------------------------------------------------------------------------------------------------
def bench_dvc(args) -> None:
    from bench.scratch_repo import make_repo, run, train_entries

    quiet = wait_for_quiet()
    tmp = Path(tempfile.mkdtemp(prefix="awd-bench-dvc-"))
    try:
        repo = make_repo(tmp, executor="local")
        with Meter() as meter:
            cold, proc = _timed(lambda: run(repo, "dvc", "repro", timeout=args.dvc_timeout_s))
        quiet["others"] = meter.others
        n_train = len(train_entries(repo))
        n_units = sum(1 for _ in (repo / "runs").glob("*/*/*/manifest.json"))
        noops = []
        for _ in range(args.noop_repeats):
            seconds, proc = _timed(lambda: run(repo, "dvc", "repro"))
            # train/attack/prune are always_changed (their drivers look into the store and rewrite identical
            # artifacts): a no-op reruns them but neither prepare nor aggregate
            out = proc.stdout + proc.stderr
            if "Running stage 'prepare'" in out or "Running stage 'aggregate'" in out:
                raise AssertionError(f"the rerun was not a no-op:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
            noops.append(seconds)
        noop = statistics.median(noops)
        rows = [["cold `dvc repro` (empty run store)", f"{cold:.1f}", "≤ 300", "yes" if cold <= 300 else "**no**"],
                [f"no-op `dvc repro` (median of {len(noops)}: {', '.join(f'{s:.2f}' for s in noops)})",
                 f"{noop:.2f}", "≤ 2", "yes" if noop <= 2 else "**no**"]]
        body = (f"Embedded default (the working tree's full `params.yaml`) in a throwaway git + DVC copy "
                f"(`bench/scratch_repo.make_repo`), executor `local` ({os.cpu_count()} parallel jobs); the cold run "
                f"trained {n_train} runs and committed {n_units} units in all.\n\n"
                + table(["what", "seconds", "target", "met"], rows))
        report("Orchestration: cold and no-op dvc repro", body, quiet)
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


# -- jobs.run_units -----------------------------------------------------------------------------------------------------
def _units(n: int, salt: str):
    from jobs.job import Unit
    from jobs.keys import unit_key

    return [Unit(KIND, unit_key(KIND, {"i": i, "salt": salt}, "noop"), NOOP_FN, {"i": i, "salt": salt},
                 label=f"noop {i}") for i in range(n)]


def _job_env() -> None:
    """Jobs start in the driver's cwd (locally and through sbatch) and put it on their path: from the repository
    root, they import bench.noop_unit as the driver does (`python -m bench.orchestration`)."""
    os.chdir(ROOT)


def _bookkeeping(name: str, cfg, args, setup: str) -> list:
    from jobs.driver import run_units
    from jobs.store import RunStore

    _job_env()
    quiet = wait_for_quiet()
    tmp = Path(tempfile.mkdtemp(prefix=f"awd-bench-{name}-", dir=args.tmp))
    try:
        store = RunStore(tmp / "runs")
        units = _units(args.units, salt=f"{time.time_ns()}")
        with Meter() as meter:
            wall, out = _timed(lambda: run_units(units, store, cfg, desc="bench", stream=io.StringIO()))
        quiet["others"] = meter.others
        assert sorted(r["i"] for r in out.values()) == list(range(args.units)), "wrong results"
        work = sum(store.manifest(u.kind, u.key)["meta"]["seconds"] for u in units)
        jobs = {store.manifest(u.kind, u.key)["meta"]["job_id"] for u in units}
        reruns = []
        for _ in range(args.noop_repeats):
            seconds, again = _timed(lambda: run_units(units, store, cfg, desc="bench", stream=io.StringIO()))
            assert again == out
            reruns.append(seconds)
        rerun = statistics.median(reruns)
        n = args.units
        rows = [[f"{n} units, none done", f"{wall:.2f}", f"{wall / n * 1e3:.1f}", f"{len(jobs)}",
                 f"{work * 1e3:.1f}"],
                [f"rerun, all {n} cached (median of {len(reruns)})", f"{rerun:.3f}", f"{rerun / n * 1e3:.2f}", "0",
                 "0"]]
        body = (f"{n} trivial units (`{NOOP_FN}`, returns at once) through `jobs.run_units`, {setup}; "
                f"driver poll {cfg.poll_interval():g} s; fresh run store on local disk. Per unit = wall / {n}: the "
                f"bookkeeping (validation, store entry, submission, job start, commit with manifest, polling) "
                f"beyond the work itself, which summed to {work * 1e3:.1f} ms in all.\n\n"
                + table(["what", "wall s", "ms per unit", "jobs", "work ms (Σ)"], rows)
                + f"\n\n**{wall / n:.3f} s per unit** ({name}); cached rerun {rerun:.2f} s.")
        report(f"Orchestration: bookkeeping per unit, {name}", body, quiet)
        return [wall, rerun]
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def bench_local(args) -> None:
    from jobs.executors import ExecutorConfig

    cfg = ExecutorConfig(kind="local", poll_s=args.poll_s)
    _bookkeeping("local executor", cfg, args,
                 f"executor `local` (detached submitit subprocesses, ≤ {cfg.parallel} jobs, units dealt "
                 "round-robin)")


def _slurm_partition() -> str:
    for tool in ("sinfo", "sbatch", "sacct"):
        if shutil.which(tool) is None:
            raise SystemExit(f"--part slurm: `{tool}` is not on PATH; start the local cluster with "
                             "`scripts/local-slurm.sh start` (as root)")
    out = subprocess.run(["sinfo", "-h", "-o", "%P|%a"], capture_output=True, text=True, timeout=30, check=True)
    parts = [line.split("|")[0] for line in out.stdout.split() if line.endswith("|up")]
    if not parts:
        raise SystemExit(f"--part slurm: no partition is up (sinfo: {out.stdout.strip()!r})")
    default = [p for p in parts if p.endswith("*")] or parts
    return default[0].rstrip("*")


def _queued() -> int:
    out = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True, timeout=30)
    return len(out.stdout.split())


def _wait_for_empty_queue(limit_s: float = 600.0) -> int:
    """Other users' jobs on the single node would queue ours behind theirs: wait (up to limit_s) for an empty
    queue; returns how many jobs were still queued when measuring started."""
    start = time.monotonic()
    while (n := _queued()) and time.monotonic() - start < limit_s:
        print(f"{n} SLURM jobs queued or running: waiting 15 s", flush=True)
        time.sleep(15)
    return n


def bench_slurm(args) -> None:
    from jobs.executors import ExecutorConfig

    partition = _slurm_partition()
    for per_job in args.slurm_units_per_job:
        cfg = ExecutorConfig(kind="slurm", poll_s=args.poll_s, partition=partition, cpus_per_task=1, timeout_min=15,
                             units_per_job=per_job)
        n_jobs = -(-args.units // per_job)
        queued = _wait_for_empty_queue()
        _bookkeeping(f"SLURM, {per_job} unit{'s' if per_job > 1 else ''} per job", cfg, args,
                     f"executor `slurm` on the local single-node cluster (partition `{partition}`, 1 CPU per task), "
                     f"{per_job} unit{'s' if per_job > 1 else ''} per array task ({n_jobs} tasks; {queued} other "
                     "jobs in the queue at the start; the jobs, run by slurmd, count as other processes in the header)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", action="append", choices=PARTS, help="repeatable; default: all three")
    ap.add_argument("--units", type=int, default=200)
    ap.add_argument("--poll-s", type=float, default=0.2, help="driver poll interval for --part local/slurm")
    ap.add_argument("--slurm-units-per-job", type=lambda s: [int(v) for v in s.split(",")], default=[1, 25],
                    help="comma-separated, one measurement each (default 1,25)")
    ap.add_argument("--noop-repeats", type=int, default=3)
    ap.add_argument("--dvc-timeout-s", type=float, default=1800)
    ap.add_argument("--tmp", default=None, help="where the run stores of --part local/slurm go (default: $TMPDIR)")
    ap.add_argument("--keep", action="store_true", help="keep the throwaway directories")
    args = ap.parse_args()
    for part in args.part or PARTS:
        if part == "slurm" and not args.part and shutil.which("sinfo") is None:
            print("--part slurm skipped: no SLURM here (`scripts/local-slurm.sh start` starts a local cluster)")
            continue
        {"dvc": bench_dvc, "local": bench_local, "slurm": bench_slurm}[part](args)


if __name__ == "__main__":
    main()
