"""`awd-bench init`: an executor.yaml for the SLURM cluster this runs on, from what sinfo/scontrol/sacctmgr say.

    awd-bench init [--output executor.yaml] [--partition P] [--account A] [--force] [--stdout]

It picks a partition with GPUs (the default one if it has GPUs, else the one with most), sizes one job as one GPU
with its node's share of CPUs and memory, takes `--time` from the partition's MaxTime and the QOS's MaxWall, the
account from your associations and the queue limit from sacctmgr, and writes every choice with the alternatives the
cluster offers in comments. The file is checked against the cluster (jobs/cluster_check.py) before it is written,
so it passes `awd-bench check` unchanged. An existing file is never replaced without --force.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import math
import typing as tp
from pathlib import Path

from jobs import bounded_yaml
from jobs import slurm_info as info
from jobs.atomic import atomic_write_text
from jobs.cluster_check import check_cluster
from jobs.executor_config import DEFAULT_FILE, DEFAULT_SLURM_TIMEOUT_MIN, ExecutorConfig, ExecutorConfigError

CPUS_PER_GPU_CAP = 8  # more rarely helps one training run (data loading is on the GPU here)
MEM_GB_CAP = 64  # the paper's largest run needs well under this
MEM_SHARE = 0.9  # of a GPU's share of the node's memory: leave the node's own processes room


@dataclasses.dataclass
class Survey:
    """What the cluster said; a field is None where its command did not answer."""

    cluster: str
    partitions: dict[str, info.Partition]
    nodes: list[info.Node]
    config: dict[str, str]
    associations: list[info.Association] | None = None
    qos: dict[str, info.Qos] | None = None
    default_account: str | None = None
    user: str = ""
    unanswered: list[str] = dataclasses.field(default_factory=list)


def survey() -> Survey:
    """Asks the cluster; raises ExecutorConfigError when it cannot even list partitions and nodes."""
    try:
        config, partitions, nodes = info.config(), info.partitions(), info.nodes()
    except info.Unanswered as e:
        raise ExecutorConfigError(f"awd-bench init needs a SLURM cluster to describe: {e}") from None
    out = Survey(config.get("ClusterName", "?"), partitions, nodes, config, user=info.user())
    for field, ask in (("associations", lambda: info.associations(out.cluster)), ("qos", info.qos_table),
                       ("default_account", info.default_account)):
        try:
            setattr(out, field, ask())
        except info.Unanswered as e:
            out.unanswered.append(f"{field}: {e}")
    return out


def _scalar(value: tp.Any) -> str:
    return bounded_yaml.dumps(value, flow=True)


def _gpu_partitions(s: Survey) -> dict[str, list[info.Node]]:
    out: dict[str, list[info.Node]] = {}
    for name, part in s.partitions.items():
        gpu_nodes = [n for n in s.nodes if name in n.partitions and n.gpus() > 0]
        if part.state == "UP" and gpu_nodes:
            out[name] = gpu_nodes
    return out


def choose_partition(s: Survey, wanted: str | None) -> str:
    if wanted is not None:
        if wanted not in s.partitions:
            raise ExecutorConfigError(f"--partition {wanted!r}: no such partition; partitions: "
                                      f"{', '.join(sorted(s.partitions))}")
        return wanted
    gpu = _gpu_partitions(s)
    default = next((p.name for p in s.partitions.values() if p.default), None)
    if default in gpu:
        return default
    if not gpu:
        raise ExecutorConfigError(f"no partition of cluster {s.cluster} that is up has nodes with GPUs (GRES gpu); "
                                  f"name one with --partition to run on CPUs: {', '.join(sorted(s.partitions))}")
    return max(gpu, key=lambda p: (sum(n.gpus() for n in gpu[p]), p))


def render(s: Survey, partition: str | None = None, account: str | None = None) -> str:
    """The commented executor.yaml for `s` (see the module)."""
    name = choose_partition(s, partition)
    part = s.partitions[name]
    nodes = [n for n in s.nodes if name in n.partitions]
    gpu_nodes = [n for n in nodes if n.gpus() > 0]
    sized = [n for n in gpu_nodes if n.usable()] or gpu_nodes or nodes
    share = [max(1, n.gpus()) for n in sized]
    cpus = max(1, min(CPUS_PER_GPU_CAP, min(n.cpus // g for n, g in zip(sized, share))))
    mem_gb = max(1, min(MEM_GB_CAP, math.floor(min(n.mem_mb / g for n, g in zip(sized, share)) * MEM_SHARE / 1024)))
    types = sorted({g.type for n in gpu_nodes for g in n.gres if g.name == "gpu" and g.type})
    mine = s.associations or []
    usable = [a for a in mine if a.partition in ("", name)]
    accounts = sorted({a.account for a in usable})
    chosen = account or (s.default_account if s.default_account in accounts else accounts[0] if accounts else None)
    rows = [a for a in usable if a.account == chosen]
    qos_names = sorted(frozenset().union(*(a.qos for a in rows)))
    default_qos = next((a.default_qos for a in rows if a.default_qos), qos_names[0] if len(qos_names) == 1 else None)
    q = (s.qos or {}).get(default_qos or "")
    walls = [m for m in (part.max_time_min, q.max_wall_min if q else None) if m]
    timeout = min([DEFAULT_SLURM_TIMEOUT_MIN, *walls])
    limits = [a.max_submit for a in rows if a.max_submit] + ([q.max_submit_per_user] if q and q.max_submit_per_user
                                                              else [])
    most_array = int(s.config["MaxArraySize"]) if s.config.get("MaxArraySize", "").isdigit() else None
    today = datetime.date.today().isoformat()
    others = sorted(set(_gpu_partitions(s)) - {name})
    lines = [
        f"# executor.yaml for SLURM cluster {s.cluster}, written by `awd-bench init` on {today} for user {s.user},",
        "# from sinfo/scontrol/sacctmgr. Where units run: never a DVC param, never part of a cache key. Every key:",
        "# docs/reference/configuration.md. `awd-bench check` checks this file against the cluster, and every stage",
        "# does so again before it submits anything.",
        "kind: slurm",
        f"partition: {_scalar(name)}" + (f"  # other GPU partitions: {', '.join(others)}" if others else
                                          "  # the only GPU partition that is up"),
        f"# {len(nodes)} node(s); MaxTime {f'{part.max_time_min} min' if part.max_time_min else 'unlimited'}; GRES "
        + (", ".join(sorted({str(g) for n in nodes for g in n.gres})) or "none"),
        "gpus_per_node: 1  # one GPU per unit: a training run, an AutoAttack block or a pruning sweep",
    ]
    if types:
        lines.append(f"# GPU types here: {', '.join(types)}; to ask for one, replace gpus_per_node with e.g. "
                     f"`gres: gpu:{types[0]}:1`")
    lines += [
        f"cpus_per_task: {cpus}  # the node's CPUs per GPU (at most {CPUS_PER_GPU_CAP})",
        f"mem_gb: {mem_gb}  # {int(MEM_SHARE * 100)}% of the node's memory per GPU (at most {MEM_GB_CAP})",
        f"timeout_min: {timeout}  # --time: at most the partition's MaxTime"
        + (f" and QOS {q.name}'s MaxWall" if q and q.max_wall_min else "") + "; longer runs requeue and resume",
    ]
    if chosen:
        lines.append(f"account: {_scalar(chosen)}" + (f"  # yours here: {', '.join(accounts)}" if len(accounts) > 1
                                                       else "  # your account"))
    elif s.associations is None:
        lines.append("# account: <name>  # sacctmgr did not answer: set it if your site needs one")
    if qos_names:
        lines.append(f"# qos: {_scalar(default_qos or qos_names[0])}  # unset: the association's default"
                     f" ({default_qos or 'none'}); allowed: {', '.join(qos_names)}")
    if limits:
        lines.append(f"max_queued: {min(limits)}  # the scheduler's limit on your queued jobs (sacctmgr); lower it "
                     "to leave room for other work")
    if most_array is not None and most_array < 1000:
        lines.append(f"max_array_size: {most_array}  # the cluster's MaxArraySize")
    if s.config.get("JobRequeue", "1") == "0":
        lines.append("extra: {requeue: true}  # JobRequeue=0 here: a job must ask to be requeueable")
    lines += [
        "check_gpus: true  # a job that sees no GPU fails at once (false only on a test cluster with fake GPUs)",
        "budget_gpu_hours: 100  # a stage whose new work is estimated above this asks for confirmation first",
        "# time_safety_factor: 3  # --time per unit from its estimate x this (see the cluster guide)",
        "# setup: [\"module load cuda\"]  # shell lines run in each job before the unit",
        "# profiles: {prune: {units_per_job: 8}}  # per kind of unit",
    ]
    return "\n".join(lines) + "\n"


def main(argv: tp.Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="awd-bench init", description=__doc__.split("\n\n")[0],
                                     epilog="exit status: 0 written (or printed); 1 no cluster to describe, the file "
                                     "exists, or the cluster refuses what was found (nothing written)")
    parser.add_argument("--output", "-o", default=DEFAULT_FILE, help=f"file to write (default: {DEFAULT_FILE})")
    parser.add_argument("--partition", help="use this partition (default: the default one if it has GPUs)")
    parser.add_argument("--account", help="use this account (default: your default account)")
    parser.add_argument("--force", action="store_true", help="replace an existing file")
    parser.add_argument("--stdout", action="store_true", help="print the file instead of writing it")
    args = parser.parse_args(argv)
    out = Path(args.output)
    if out.exists() and not (args.force or args.stdout):
        raise ExecutorConfigError(f"{out} exists: not replaced (--force replaces it, --stdout prints the new one)")
    s = survey()
    text = render(s, args.partition, args.account)
    cfg = ExecutorConfig.from_mapping(bounded_yaml.load_text(text, str(out)), str(out))
    report = check_cluster(cfg)
    if report.problems:
        raise report.error(str(out), "(not written: the cluster refuses what was found; please report this)")
    for line in [*s.unanswered, *report.warnings]:
        print(f"warning: {line}")
    if args.stdout:
        print(text, end="")
        return 0
    atomic_write_text(out, text)
    print(f"wrote {out}: partition {cfg.partition}, per job {cfg.gpus_per_job()} GPU, {cfg.cpus_per_task} CPU(s), "
          f"{cfg.mem_gb} GB, --time {cfg.timeout_min} min; checked against cluster {s.cluster} as `awd-bench check` "
          "does")
    return 0


if __name__ == "__main__":
    import sys

    from jobs.console import configure_logging

    configure_logging()
    try:
        sys.exit(main())
    except ExecutorConfigError as e:
        print(f"ERROR: {e}", file=sys.stderr)
        sys.exit(1)
