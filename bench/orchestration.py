"""Orchestration cost: what DVC and the job layer add around the computation.

--part dvc    cold `dvc repro` of the embedded default (the full params.yaml) in a throwaway git + DVC copy with
              the local executor and an empty run store, then a no-op `dvc repro`, `python -m pipeline.repro` (what
              `make repro` runs: the store check, then dvc repro) and `dvc status` (medians of --noop-repeats).
              Targets: no-op ≤ 2 s, cold ≤ 5 min on 2 cores.
--part decide the per-unit cost of deciding "nothing to do" at paper scale: --entries done entries (default 2,000)
              in a fresh store, then the store check of `make repro` (pipeline.pending.check over unit lists naming
              them all) and a stage driver's pass over them (jobs.run_units_report with every unit done).
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

PARTS = ("dvc", "decide", "local", "slurm")
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
        status = run(repo, "dvc", "status").stdout
        if status.strip() != "Data and pipelines are up to date.":
            raise AssertionError(f"`dvc status` after the cold repro is not up to date:\n{status[-3000:]}")
        rows = [["cold `dvc repro` (empty run store)", f"{cold:.1f}", "≤ 300", "yes" if cold <= 300 else "**no**"]]
        for what, cmd in (("no-op `dvc repro`", ("dvc", "repro")),
                          ("no-op `make repro` (`python -m pipeline.repro`: store check, then dvc repro)",
                           ("python", "-m", "pipeline.repro")),
                          ("`dvc status`", ("dvc", "status"))):
            times = []
            for _ in range(args.noop_repeats):
                seconds, proc = _timed(lambda c=cmd: run(repo, *c))
                # no stage runs: their deps (code, params, pending marks) and outs are those dvc.lock holds
                if "Running stage" in proc.stdout + proc.stderr:
                    raise AssertionError(f"not a no-op:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
                times.append(seconds)
            med = statistics.median(times)
            rows.append([f"{what} (median of {len(times)}: {', '.join(f'{s:.2f}' for s in times)})", f"{med:.2f}",
                         "≤ 2", "yes" if med <= 2 else "**no**"])
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


# -- deciding "nothing to do" at paper scale ---------------------------------------------------------------------------
def bench_decide(args) -> None:
    """A store of --entries done entries (one small result file each, as a committed unit), unit lists naming them
    all: the store check `make repro` runs before DVC, and a driver's pass when a stage runs with nothing to do."""
    import json

    from jobs.driver import run_units_report
    from jobs.executors import ExecutorConfig
    from jobs.store import RunStore
    from pipeline import pending

    quiet = wait_for_quiet()
    tmp = Path(tempfile.mkdtemp(prefix="awd-bench-decide-", dir=args.tmp))
    try:
        store = RunStore(tmp / "runs")
        units = _units(args.entries, salt=f"{time.time_ns()}")
        kinds = {"train": args.entries // 2, "autoattack": args.entries * 3 // 8}  # the rest: prune
        for i, unit in enumerate(units):
            unit.kind = "train" if i < kinds["train"] else "autoattack" if i < sum(kinds.values()) else "prune"
            (store.workdir(unit.kind, unit.key) / "metrics.json").write_text(json.dumps({"i": i}))
            store.commit(unit.kind, unit.key, {"i": i})
        (tmp / "artifacts" / "train").mkdir(parents=True)
        (tmp / "artifacts" / "attack").mkdir()
        (tmp / "artifacts" / "prune").mkdir()
        (tmp / "artifacts" / "train" / "runs.json").write_text(json.dumps(
            [{"key": u.key, "status": "done"} for u in units if u.kind == "train"]))
        for stage, kind in (("attack", "autoattack"), ("prune", "prune")):
            (tmp / "artifacts" / stage / "units.json").write_text(json.dumps({kind: [u.key for u in units
                                                                                     if u.kind == kind]}))
        for stage in pending.STAGES:
            pending.write_mark(stage, [], root=tmp)
        cfg = ExecutorConfig(kind="local", poll_s=args.poll_s)
        n = len(units)
        with Meter() as meter:
            checks = [_timed(lambda: pending.check(tmp, store, say=print))[0] for _ in range(args.noop_repeats)]
            passes = [_timed(lambda: run_units_report(units, store, cfg, desc="bench", stream=io.StringIO()))[0]
                      for _ in range(args.noop_repeats)]
        quiet["others"] = meter.others
        check, drive = statistics.median(checks), statistics.median(passes)
        rows = [[f"store check of `make repro` ({n} listed entries, median of {len(checks)})", f"{check:.3f}",
                 f"{check / n * 1e3:.3f}"],
                [f"a stage driver's pass, all {n} units done (`run_units_report`, median of {len(passes)})",
                 f"{drive:.3f}", f"{drive / n * 1e3:.3f}"]]
        body = (f"{n} done entries ({kinds['train']} train, {kinds['autoattack']} autoattack, "
                f"{n - sum(kinds.values())} prune; a result and one small file each) in a fresh run store on local "
                "disk, unit lists naming every one. A no-op `dvc repro` reads none of them (DVC compares its hashes "
                "alone); `make repro` checks each listed entry is still done (sizes against its manifest) before "
                "calling DVC, and a stage that runs (code or params changed) passes every unit through the driver, "
                "which finds it done and submits nothing.\n\n"
                + table(["what", "seconds", "ms per unit"], rows))
        report(f"Orchestration: deciding nothing to do, {n} entries", body, quiet)
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
    ap.add_argument("--entries", type=int, default=2000, help="done entries for --part decide (default 2000)")
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
        {"dvc": bench_dvc, "decide": bench_decide, "local": bench_local, "slurm": bench_slurm}[part](args)


if __name__ == "__main__":
    main()
