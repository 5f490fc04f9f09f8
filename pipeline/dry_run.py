"""What `dvc repro` would train and evaluate for the current params, why, where, and what it costs; submits nothing.

    python -m pipeline.dry_run [--params params.yaml] [--tflops T] [--gpus N] [--list]

Each pending training run says why it is pending: a new config, or which code files changed since an entry with
its config was computed (`--list` groups the runs by reason). Then where the units would run (executor.yaml: kind,
partition, GPUs per job, units per job, the --time range), each kind's estimate marked measured (from units of the
same shape the store has seen run: jobs/throughput.py) or assumed (pipeline/cost.py's cost model), the spending
guard's verdict, and the campaign's wall-clock lower bound on the GPUs you have: max(work / GPUs, longest chain).
"""

from __future__ import annotations

import argparse

from pipeline.cost import DEFAULT_TFLOPS, device_hours, device_word, on_cpus
from pipeline.params import check_data, load_params
from pipeline.plan import Planner, longest_job_s
from pipeline.suites import ATTACKED_SUITES, PRUNED_SUITES, independent_runs, natural_fixed


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    parser.add_argument("--tflops", type=float, default=None,
                        help=f"sustained TFLOP/s per GPU for the cost model (default: tflops in executor.yaml, else "
                             f"{DEFAULT_TFLOPS:g})")
    parser.add_argument("--gpus", type=int, default=None,
                        help="GPUs (job slots) the wall-clock lower bound assumes (default: what executor.yaml and "
                             "the scheduler's submit limit allow)")
    parser.add_argument("--list", action="store_true", help="list every pending unit, grouped by why it is pending")
    return parser


def _gpus(cfg, given: int | None) -> tuple[list[int], str]:
    """Job slots for the lower bound, and where that number comes from."""
    if given is not None:
        return [given], "--gpus"
    if on_cpus(cfg) or cfg.kind != "slurm":
        return [cfg.parallel if cfg.kind == "local" else 1], f"{cfg.kind} jobs at once"
    from jobs.executors import submit_limit

    jobs = [n for n in (cfg.max_queued, submit_limit(cfg.qos), cfg.array_parallelism) if n]
    if jobs:
        return [min(jobs) * max(1, cfg.gpus_per_job())], "max_queued / submit limit / array_parallelism"
    return [8, 64], "no max_queued or submit limit known: pass --gpus N"


def main() -> None:
    args = _parser().parse_args()
    if args.tflops is not None and args.tflops <= 0:
        _parser().error(f"--tflops must be > 0, got {args.tflops:g}")
    if args.gpus is not None and args.gpus < 1:
        _parser().error(f"--gpus must be >= 1, got {args.gpus}")

    from jobs.placement import lines as placement_lines
    from jobs.placement import minutes
    from jobs.throughput import Estimator
    from jobs.why import pending_reasons, summary
    from pipeline.common import PROJECT_ROOT, executor_config, open_store
    from pipeline.cost import _budget

    params = load_params(args.params)
    check_data(params)
    cfg = executor_config()
    if args.tflops is not None:
        cfg = cfg.replace(tflops=args.tflops, profiles={
            kind: {k: v for k, v in p.items() if k != "tflops"} for kind, p in cfg.profiles.items()})
    store = open_store()
    planner = Planner(params)  # the real units' keys; the estimates come from the executor below
    pending, cached, seen = [], 0, set()
    for spec in independent_runs(params):
        unit = planner.train_unit(spec)
        if unit.key in seen:
            continue
        seen.add(unit.key)
        if store.is_done("train", unit.key):
            cached += 1
        else:
            pending.append((spec, unit))
    later = planner.estimated_phase2([s for s, _ in pending])
    evals = {u.key: planner.estimated_evaluations(s, u) for s, u in pending + later}
    attacked = [u for s, u in pending if s.suite in ATTACKED_SUITES]
    pruned = [u for s, u in pending if s.suite in PRUNED_SUITES]

    # the cluster's bill in GPU-hours, whatever runs the units (a local executor's CPU-hours come below)
    bill = Estimator(store.root, cfg if not on_cpus(cfg) else cfg.replace(kind="slurm", local_gpus=None))
    units = [u for _, u in pending + later] + [e for es in evals.values() for e in es]
    bill.apply(units)

    def gpu_h(kind: str) -> float:
        return sum(u.estimate_s or 0.0 for u in units if u.kind == kind) / 3600

    reasons = pending_reasons([u for _, u in pending], store.root, PROJECT_ROOT)
    print(f"params: {args.params}")
    n_awd = len(natural_fixed(params))
    print(f"train:  {len(pending)} runs to train, {cached} cached; + {n_awd} natural AWD runs after the DoG "
          f"estimate and {len(later) - n_awd} extra seeds of the adversarial best (cached ones are skipped then)")
    print(f"attack: >= {len(attacked)} models to AutoAttack ({params.autoattack.shards} shards each)")
    print(f"prune:  >= {len(pruned)} models to prune at {list(params.prune.amounts)}")
    measured = sum(1 for u in units if (e := bill.sources.get(u.key)) is not None and e.source == "measured")
    print(f"estimate: {gpu_h('train'):.2f} GPU-hours training + {gpu_h('autoattack'):.2f} GPU-hours AutoAttack + "
          f"{gpu_h('prune'):.2f} GPU-hours pruning at {bill.cfg.tflops:g} TFLOP/s sustained"
          + (f" where not measured ({measured} of {len(units)} estimates measured)" if measured else "")
          + " (upper bound: natural AWD runs and extra seeds counted as pending)")
    for line in summary([u for _, u in pending], reasons, "training runs"):
        print(f"  {line}")

    here = Estimator(store.root, cfg)
    here.apply(units)
    for line in placement_lines(units, cfg, here):
        print(f"where: {line}")
    word = device_word(cfg)
    total_h = sum(device_hours(u.estimate_s or 0.0, cfg.for_kind(u.kind)) for u in units)
    budget, _, key = _budget(cfg)
    verdict = (f"within {key} ({budget:g})" if total_h <= budget else
               f"over {key} ({budget:g}): `dvc repro` refuses before submitting anything until "
               f"AWD_CONFIRM_{word}_HOURS={int(total_h) + 1} or a higher {key}"
               + (" (see docs/cluster.md: run it on a cluster)" if word == "CPU" else ""))
    print(f"budget: {total_h:.2f} {word}-hours of new work on executor kind {cfg.kind}, {verdict}")

    def chain(s, u) -> float:
        """This run, then its longest evaluation job; what its result starts (a natural fixed-λ run's AWD run, an
        adversarial sweep's extra seeds) as long again."""
        own = (u.estimate_s or 0.0) + longest_job_s(evals[u.key])
        extra = s.suite == "natural" or (s.suite == "adversarial" and params.suites.adversarial[s.study].best_seeds)
        return own + (u.estimate_s or 0.0 if extra else 0.0)

    longest = max((chain(s, u) for s, u in pending + later), default=0.0)
    slots, why = _gpus(cfg, args.gpus)
    work_s = sum(u.estimate_s or 0.0 for u in units)
    bounds = [f"{minutes(max(work_s / n, longest) / 60)} on {n} {'job slots' if word == 'CPU' else 'GPUs'} "
              f"(work {work_s / 3600:.1f} {word}-h / {n} = {minutes(work_s / n / 60)}, longest chain "
              f"{minutes(longest / 60)})" for n in slots]
    print(f"lower bound: wall-clock {'; '.join(bounds)} [{why}]")
    if args.list:
        groups: dict[str, list] = {}
        for _, unit in pending:
            groups.setdefault(reasons[unit.key], []).append(unit)
        for reason, group in sorted(groups.items(), key=lambda kv: -len(kv[1])):
            print(f"  {reason} ({len(group)}):")
            for unit in group:
                print(f"    {unit.key[:12]}  {unit.label}")
    print("nothing was submitted")


if __name__ == "__main__":
    from pipeline.common import run_entry_point

    run_entry_point(main)
