"""Dress rehearsal of a campaign through the real path (dvc repro → stage drivers → jobs → submitit → sbatch → slurmd)
on the rehearsal SLURM cluster, in a throwaway copy of this repository, with every unit a timed stand-in.

    python -m pipeline.rehearsal [--params configs/paper.yaml] [--minutes-per-gpu-hour 0.5] [--gpus 64]
        [--units-per-job 1] [--faults all|survivable|none|NAME,...] [--faults-seed 0] [--out results]

Writes <out>/rehearsal.json, rehearsal.md and rehearsal_gpus.png. Exits 0 only when no unit's work was lost and
every table and figure was produced; 1 otherwise (the report says where the campaign broke); 2 on bad input.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from jobs import bounded_yaml
from pipeline.rehearsal import cluster_faults
from pipeline.rehearsal.cifar import write_datasets
from pipeline.rehearsal.cluster_faults import NAMES as CLUSTER_FAULTS
from pipeline.rehearsal.sbatch_shim import SBATCH_SHIM
from pipeline.rehearsal.shared import Others
from pipeline.rehearsal.swap import ENV

PROJECT_ROOT = Path(__file__).resolve().parents[2]
CLUSTER_SCRIPT = PROJECT_ROOT / "scripts" / "local-slurm.sh"
SLURM_DIR = Path(os.environ.get("AWD_REHEARSAL_SLURM_DIR", "/var/lib/awd-slurm-rehearsal"))
CLUSTER_LOCK = Path("/tmp/awd-rehearsal-cluster.lock")  # one rehearsal at a time on this machine
GPUS_PER_NODE = 16
ERROR_LINE = re.compile(r"ERROR|Error:|error:")  # dvc's and the stage's own error lines, a traceback's last line
RATES = {"diverge": 0.008, "exit": 0.004, "timeout": 0.006}  # per unit of the kinds they apply to
ONE_OFFS = ("kill_driver", "sbatch_fail", *CLUSTER_FAULTS)  # each fires once
PRESETS = {  # `all` is every fault; `survivable` those the design survived before the cluster faults existed
    "all": {**RATES, **{k: True for k in ONE_OFFS}},
    "survivable": {"diverge": 0.0, "exit": 0.0, "timeout": 0.006, **{k: k == "kill_driver" for k in ONE_OFFS}},
    "none": {**{k: 0.0 for k in RATES}, **{k: False for k in ONE_OFFS}},
}
SIM_MINUTES = {"slurmctld": 30, "slurmdbd": 60, "node_down": 30}  # how long each cluster fault lasts, simulated
OPTION = {"slurmctld": "slurmctld-down-min", "slurmdbd": "slurmdbd-down-min", "node_down": "node-down-min"}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--params", default="configs/paper.yaml", help="the campaign's params file")
    p.add_argument("--minutes-per-gpu-hour", type=float, default=0.5,
                   help="compression: wall minutes a stand-in sleeps per estimated GPU-hour (default 0.5)")
    p.add_argument("--tflops", type=float, default=100.0, help="the dry run's sustained TFLOP/s per GPU")
    p.add_argument("--gpus", type=int, default=64, help=f"GPU slots: a multiple of {GPUS_PER_NODE}, or fewer")
    p.add_argument("--units-per-job", type=int, default=None,
                   help="executor units_per_job (default: the executor file's, else 1: one array task per unit)")
    p.add_argument("--executor", default=None,
                   help="rehearse on the cluster this machine's SLURM commands reach (yours), with this executor.yaml "
                        "(point its partition at a CPU partition and set gpus_per_node: 0); default: start the local "
                        "rehearsal cluster (scripts/local-slurm.sh, profile rehearsal, needs root)")
    p.add_argument("--poll-s", type=float, default=None,
                   help="the driver's poll interval, wall seconds (default: the executor's, 15 s on SLURM; at 0.5 min "
                        "per GPU-hour 15 s is half a simulated hour before a finished unit's follow-ups are submitted)")
    p.add_argument("--max-submit", type=int, default=200, help="QOS MaxSubmitJobsPerUser")
    p.add_argument("--max-jobs", type=int, default=None, help="QOS MaxJobsPerUser (default: --gpus)")
    p.add_argument("--time-limit", type=int, default=60, help="partition MaxTime and job time limit, minutes")
    p.add_argument("--faults", default="all",
                   help=f"a preset ({', '.join(PRESETS)}) or a comma list of presets and faults "
                        f"({', '.join([*RATES, *ONE_OFFS])}); e.g. survivable,slurmctld,node_down")
    for name, minutes in SIM_MINUTES.items():
        p.add_argument(f"--{OPTION[name]}", dest=f"{name}_min", type=float, default=minutes,
                       help=f"simulated minutes the {name} fault lasts (default {minutes})")
    p.add_argument("--faults-seed", type=int, default=0)
    p.add_argument("--profile", choices=("dedicated", "shared"), default="dedicated",
                   help="shared: two other users submit a seeded stream of jobs under fair share (pipeline.rehearsal."
                        "shared); dedicated: the cluster is ours")
    p.add_argument("--others-load", type=float, default=0.6,
                   help="shared: GPUs each other user keeps asked for, as a fraction of --gpus (default 0.6)")
    p.add_argument("--chain-priority", choices=("on", "off"), default=None,
                   help="executor chain_priority (--nice for shorter chains); default: the executor's (on)")
    for name in ("diverge", "exit", "timeout"):
        p.add_argument(f"--{name}-rate", type=float, default=None, help=f"override the preset's {name} rate")
    p.add_argument("--kill-driver-at", type=float, default=0.3,
                   help="SIGKILL the train stage driver once this fraction of training units is done")
    p.add_argument("--sbatch-fail-call", type=int, default=2, help="which sbatch call fails (1-based)")
    p.add_argument("--workdir", default="/tmp/awd-rehearsal", help="throwaway copy, store and logs (wiped)")
    p.add_argument("--out", default="results", help="where rehearsal.json/.md/_gpus.png go")
    p.add_argument("--label", default="", help="a name for this rehearsal in the report")
    p.add_argument("--keep-cluster", action="store_true", help="leave the rehearsal cluster running")
    p.add_argument("--report-from", default=None, metavar="WORKDIR",
                   help="only write the report again from a finished rehearsal's workdir (sacct keeps its jobs)")
    return p.parse_args(argv)


def check_args(args) -> dict:
    """Every bad option stops here, naming it, before a cluster starts or a job is submitted."""
    def bad(msg):
        raise SystemExit(f"rehearsal: {msg}")
    if not Path(args.params).is_file():
        bad(f"--params {args.params}: no such file")
    if args.minutes_per_gpu_hour <= 0 or args.tflops <= 0:
        bad("--minutes-per-gpu-hour and --tflops must be > 0")
    if args.gpus < 1 or (args.gpus > GPUS_PER_NODE and args.gpus % GPUS_PER_NODE):
        bad(f"--gpus {args.gpus}: must be 1..{GPUS_PER_NODE} or a multiple of {GPUS_PER_NODE}")
    if args.executor is not None and not Path(args.executor).is_file():
        bad(f"--executor {args.executor}: no such file")
    for name in ("units_per_job", "max_submit", "time_limit"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            bad(f"--{name.replace('_', '-')} must be >= 1")
    if args.profile == "shared" and (args.executor or args.others_load <= 0):
        bad("--profile shared needs the local rehearsal cluster (no --executor) and --others-load > 0")
    if args.poll_s is not None and args.poll_s <= 0:
        bad("--poll-s must be > 0")
    if not 0 <= args.kill_driver_at < 1:
        bad("--kill-driver-at must be in [0, 1) (0: never)")
    faults = dict(PRESETS["none"])
    for word in (w.strip() for w in args.faults.split(",")):
        if word in PRESETS:
            faults.update({k: v for k, v in PRESETS[word].items() if v})
        elif word in RATES:
            faults[word] = RATES[word]
        elif word in ONE_OFFS:
            faults[word] = True
        else:
            bad(f"--faults {args.faults}: unknown {word!r}; allowed: presets {', '.join(PRESETS)} or faults "
                f"{', '.join([*RATES, *ONE_OFFS])}, comma-separated")
    if args.executor:  # your cluster: its daemons, nodes and filesystem are not the rehearsal's to stop
        named = [w for w in CLUSTER_FAULTS if w in args.faults.split(",")]
        if named:
            bad(f"--faults {','.join(named)}: cluster faults need the local rehearsal cluster, not --executor")
        faults.update({k: False for k in CLUSTER_FAULTS})
    for name in SIM_MINUTES:
        if getattr(args, f"{name}_min") <= 0:
            bad(f"--{OPTION[name]} must be > 0")
    for name in ("diverge", "exit", "timeout"):
        value = getattr(args, f"{name}_rate")
        if value is not None:
            if not 0 <= value <= 1:
                bad(f"--{name}-rate must be in [0, 1]")
            faults[name] = value
    if args.kill_driver_at == 0:
        faults["kill_driver"] = False
    if args.sbatch_fail_call < 1:
        faults["sbatch_fail"] = False
    return faults


def tracked_files(root: Path) -> list[str]:
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=root,
                         check=True, capture_output=True, timeout=60).stdout.decode()
    return [f for f in out.split("\0") if f]


def make_copy(root: Path, copy: Path) -> None:
    """The repository as it is now (tracked and untracked, not ignored files), with no DVC cache of results."""
    skip = ("results/", "dvc.lock", "executor.yaml")
    for rel in tracked_files(root):
        src = root / rel
        if rel.startswith(skip) or not src.is_file():
            continue
        dst = copy / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst)
    subprocess.run(["git", "init", "-q"], cwd=copy, check=True, timeout=60)


def write_inputs(args, faults: dict, copy: Path, work: Path) -> dict:
    """params.yaml (data from the rehearsal's CIFAR files), executor.yaml, settings.json, the sbatch shim."""
    from pipeline.params import load_params
    from pipeline.suites import datasets_used, independent_runs

    raw = bounded_yaml.load(args.params)  # as DVC and load_params read it: YAML 1.2
    raw.setdefault("data", {})
    raw["data"].update(root="data/rehearsal", download=False)
    (copy / "params.yaml").write_text(bounded_yaml.dumps(raw))
    params = load_params(str(copy / "params.yaml"))  # bad params stop the rehearsal here, named by the loader
    write_datasets(copy / "data" / "rehearsal", datasets_used(params))
    n_train = len({json.dumps(s.config, sort_keys=True) for s in independent_runs(params)})
    if args.executor:
        from jobs.executors import load_executor_config

        load_executor_config(args.executor)  # a bad file stops here, named by the loader
        executor = bounded_yaml.load(args.executor) or {}
        executor["kind"] = "slurm"
    else:
        executor = {"kind": "slurm", "partition": "rehearsal", "gpus_per_node": 1, "cpus_per_task": 1,
                    "timeout_min": args.time_limit}
    if args.units_per_job is not None:
        executor["units_per_job"] = args.units_per_job
    if getattr(args, "poll_s", None) is not None:
        executor["poll_s"] = args.poll_s
    if getattr(args, "chain_priority", None) is not None:
        executor["chain_priority"] = args.chain_priority == "on"
    executor["check_gpus"] = False  # a stand-in never touches a GPU (and must not import torch to look for one)
    executor["budget_gpu_hours"] = 1e9  # stand-ins spend no GPU-hours: the spending guard is for the real campaign
    (copy / "executor.yaml").write_text(bounded_yaml.dumps(executor))
    settings = {"minutes_per_gpu_hour": args.minutes_per_gpu_hour, "tflops": args.tflops,
                "seed": args.faults_seed, "rates": {k: faults[k] for k in ("diverge", "exit", "timeout")}}
    (work / "settings.json").write_text(json.dumps(settings, indent=1))
    bin_dir = work / "bin"
    bin_dir.mkdir()
    real = shutil.which("sbatch")
    if real is None:
        raise SystemExit("rehearsal: `sbatch` is not on PATH (install SLURM: scripts/local-slurm.sh start)")
    fail_at = args.sbatch_fail_call if faults["sbatch_fail"] else 0
    shim = bin_dir / "sbatch"
    shim.write_text(SBATCH_SHIM.format(fail_at=fail_at, log=work / "sbatch.log", counter=work / "sbatch.count",
                                       sbatch=real))
    shim.chmod(0o755)
    return {"params": params, "n_train": n_train, "executor": executor, "settings": settings}


def cluster(command: str, args, env: dict, *more: str) -> None:
    cenv = dict(env, AWD_SLURM_PROFILE="rehearsal", AWD_SLURM_DIR=str(SLURM_DIR),
                AWD_REHEARSAL_NODES=str(max(1, args.gpus // GPUS_PER_NODE)),
                AWD_REHEARSAL_GPUS_PER_NODE=str(min(args.gpus, GPUS_PER_NODE)),
                AWD_REHEARSAL_MAX_TIME=str(args.time_limit), AWD_REHEARSAL_MAX_SUBMIT=str(args.max_submit),
                AWD_REHEARSAL_MAX_JOBS=str(args.max_jobs or args.gpus),
                AWD_REHEARSAL_SHARED=str(int(getattr(args, "profile", "dedicated") == "shared")))
    done = subprocess.run([str(CLUSTER_SCRIPT), command, *more], env=cenv, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise SystemExit(f"rehearsal: `AWD_SLURM_PROFILE=rehearsal {CLUSTER_SCRIPT} {command} {' '.join(more)}` "
                         "failed:\n"
                         f"{done.stdout}{done.stderr}")


def _stage_driver_pids(copy: Path, module: str) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().split(b"\0")
            cwd = os.readlink(proc / "cwd")
        except OSError:
            continue
        if module.encode() in cmd and Path(cwd) == copy:
            pids.append(int(proc.name))
    return pids


def _done_units(store: Path, kind: str) -> int:
    return sum(1 for _ in (store / kind).glob("*/*/manifest.json")) if (store / kind).is_dir() else 0


def run_campaign(copy: Path, work: Path, env: dict, n_train: int, faults: dict, kill_at: float,
                 injector: cluster_faults.Injector | None = None, others: Others | None = None) -> dict:
    """`dvc repro` until it succeeds, is broken by a failure (recorded, not retried: a person would have to act),
    or was killed by the injected driver kill or stopped by the injected full store (then rerun, as a person or a
    supervisor would; for the full store, once the space is freed)."""
    runs: list[dict] = []
    killed, t0 = None, time.time()
    cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    while True:
        n = len(runs) + 1
        log_path = work / f"dvc-repro-{n}.log"
        start = time.time()
        with open(log_path, "w") as log:
            proc = subprocess.Popen([sys.executable, "-m", "dvc", "repro"], cwd=copy, env=env, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True)
            while proc.poll() is None:
                time.sleep(1.0)
                for poller in (p for p in (injector, others) if p is not None):
                    poller.poll(_done_units(copy / "runs", "train") / max(1, n_train))
                if faults["kill_driver"] and killed is None and _done_units(copy / "runs", "train") >= kill_at * n_train:
                    for pid in _stage_driver_pids(copy, "pipeline.train"):
                        os.kill(pid, signal.SIGKILL)
                        killed = {"t": time.time(), "pid": pid, "train_units_done": _done_units(copy / "runs", "train"),
                                  "dvc_run": n}
                        print(f"rehearsal: injected SIGKILL of the train stage driver (pid {pid}) at "
                              f"{killed['train_units_done']}/{n_train} training units done", flush=True)
        text = log_path.read_text(errors="replace")
        runs.append({"n": n, "start": start, "end": time.time(), "rc": proc.returncode, "log": str(log_path),
                     "errors": [line for line in text.splitlines() if ERROR_LINE.search(line)][-12:]})
        print(f"rehearsal: dvc repro #{n} exited {proc.returncode} after {time.time() - start:.0f} s", flush=True)
        freed = injector is not None and proc.returncode != 0 and injector.after_run(text)
        runs[-1]["store_freed"] = freed  # stopped by the injected full store, rerun once freed: no break
        if proc.returncode == 0 or not (freed or (killed and killed["dvc_run"] == n)):
            break
    if injector is not None:
        injector.close()
    cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"t0": t0, "t1": time.time(), "runs": runs, "driver_kill": killed,
            "cluster_faults": injector.events if injector is not None else [],
            "driver_cpu_s": (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)}


def cancel_leftovers(store: Path, env: dict) -> None:
    """Cancels the jobs this rehearsal's store records (a broken campaign may leave some queued), and no other."""
    ids = set()
    for record in store.glob("*/*/*/job.json"):
        try:
            ids.add(str(json.loads(record.read_text())["job_id"]).split("_")[0])
        except (OSError, ValueError, KeyError):
            continue
    if ids:
        subprocess.run(["scancel", *sorted(ids)], env=env, timeout=120, capture_output=True)


@contextlib.contextmanager
def cluster_lock():
    with open(CLUSTER_LOCK, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def report_again(workdir: Path, out: Path) -> int:
    """The report of a finished rehearsal, from its saved facts and sacct (the rehearsal cluster's accounting
    database outlives the cluster's restarts)."""
    from pipeline.rehearsal.report import collect, write_report

    saved = json.loads((workdir / "campaign.json").read_text())
    args = argparse.Namespace(**saved["args"])
    env = dict(os.environ, **saved["env"])
    if not args.executor:
        cluster("start", args, env)
    facts = collect(args, saved["faults"], saved["inputs"], saved["campaign"], workdir / "repo", workdir, env)
    if not args.executor and not args.keep_cluster:
        cluster("stop", args, env)
    return write_report(facts, out)["exit_status"]


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.report_from:
        with cluster_lock():
            return report_again(Path(args.report_from).resolve(), Path(args.out).resolve())
    faults = check_args(args)
    from pipeline.rehearsal.report import collect, write_report

    work = Path(args.workdir).resolve()
    copy = work / "repo"
    out = Path(args.out).resolve()
    with cluster_lock():
        cluster_faults.unmount_store(copy / "runs", keep=False)  # a store_full rehearsal that was itself killed
        shutil.rmtree(work, ignore_errors=True)
        copy.mkdir(parents=True)
        make_copy(PROJECT_ROOT, copy)
        inputs = write_inputs(args, faults, copy, work)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "AWD_"))}
        env.update(**{ENV: str(work / "settings.json")},
                   PATH=f"{work / 'bin'}:{Path(sys.executable).parent}:{env.get('PATH', '')}")
        if os.environ.get("SLURM_CONF") and args.executor:
            env["SLURM_CONF"] = os.environ["SLURM_CONF"]
        if not args.executor:
            env["SLURM_CONF"] = str(SLURM_DIR / "etc" / "slurm.conf")
        print(f"rehearsal: {args.params} on {args.gpus} GPUs, {args.minutes_per_gpu_hour:g} wall min per GPU-hour, "
              f"faults {args.faults} (seed {args.faults_seed}); copy in {copy}", flush=True)
        if not args.executor:
            cluster("stop", args, env)
            cluster("start", args, env)
        names = [k for k in CLUSTER_FAULTS if faults[k]]
        if "store_full" in names:
            cluster_faults.mount_store(copy / "runs")
        injector = cluster_faults.Injector(
            names, args.faults_seed, {k: getattr(args, f"{k}_min") * args.minutes_per_gpu_hour for k in SIM_MINUTES},
            copy / "runs", env, lambda *cmd: cluster(cmd[0], args, env, *cmd[1:]),
            lambda line: print(line, flush=True)) if names else None
        others = Others(args.faults_seed, args.gpus, args.others_load, args.minutes_per_gpu_hour,
                        inputs["executor"]["partition"], env) if args.profile == "shared" else None
        try:
            campaign = run_campaign(copy, work, env, inputs["n_train"], faults, args.kill_driver_at, injector, others)
            campaign["others"] = others and {"submitted": others.submitted, "refused": others.refused[:5]}
        finally:
            for poller in (p for p in (injector, others) if p is not None):
                poller.close()
            cancel_leftovers(copy / "runs", env)
        saved_inputs = {"n_train": inputs["n_train"], "executor": inputs["executor"], "settings": inputs["settings"]}
        kept_env = {k: env[k] for k in ("PATH", "SLURM_CONF", ENV) if k in env}
        (work / "campaign.json").write_text(json.dumps({"args": vars(args), "faults": faults, "env": kept_env,
                                                        "inputs": saved_inputs, "campaign": campaign}, indent=1))
        facts = collect(args, faults, saved_inputs, campaign, copy, work, env)
        if not args.executor and not args.keep_cluster:
            cluster("stop", args, env)
        if "store_full" in names:  # the store's facts are in the report; the copy is throwaway
            cluster_faults.unmount_store(copy / "runs")
    report = write_report(facts, out)
    print(f"rehearsal: report in {out}/rehearsal.md; exit {report['exit_status']}", flush=True)
    return report["exit_status"]


if __name__ == "__main__":
    sys.exit(main())
