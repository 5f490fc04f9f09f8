"""What `dvc repro` would train and evaluate for the current params, why, and a GPU-hour estimate; submits nothing.

    python -m pipeline.dry_run [--params params.yaml] [--tflops 100] [--list]

Each pending training run says why it is pending: a new config, or which code files changed since an entry with
its config was computed (`--list` groups the runs by reason). The cost model is pipeline/cost.py's.
"""

from __future__ import annotations

import argparse

from pipeline.cost import AA_FORWARDS_PER_IMAGE, DEFAULT_TFLOPS, TEST_SIZE, gpu_hours, run_forward_flops, train_flops
from pipeline.params import check_data, load_params
from pipeline.suites import ATTACKED_SUITES, PRUNED_SUITES, independent_runs, natural_fixed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--tflops", type=float, default=DEFAULT_TFLOPS,
                        help=f"sustained TFLOP/s per GPU (default {DEFAULT_TFLOPS:g})")
    parser.add_argument("--list", action="store_true", help="list every pending unit, grouped by why it is pending")
    args = parser.parse_args()

    from jobs.why import pending_reasons, summary
    from pipeline.common import PROJECT_ROOT, open_store
    from pipeline.train import unit_for

    params = load_params(args.params)
    check_data(params)
    store = open_store()
    specs = independent_runs(params)
    pending, cached, seen = [], 0, set()
    for spec in specs:
        unit = unit_for(spec, params)
        if unit.key in seen:
            continue
        seen.add(unit.key)
        if store.is_done("train", unit.key):
            cached += 1
        else:
            pending.append((spec, unit))
    n_awd = len(natural_fixed(params))
    flops = sum(train_flops(s.config) for s, _ in pending)
    flops += sum(train_flops(dict(s.config, wd_method="awd")) for s in natural_fixed(params))
    attacked = {u.key: s for s, u in pending if s.suite in ATTACKED_SUITES}
    n_test = params.autoattack.n_test
    aa_flops = sum(
        AA_FORWARDS_PER_IMAGE * (TEST_SIZE[s.dataset] if n_test is None else min(n_test, TEST_SIZE[s.dataset]))
        * run_forward_flops(s.config)
        for s in attacked.values()
    )
    pruned = sum(1 for s, _ in pending if s.suite in PRUNED_SUITES)
    hours = lambda f: gpu_hours(f, args.tflops)  # noqa: E731
    reasons = pending_reasons([u for _, u in pending], store.root, PROJECT_ROOT)
    print(f"params: {args.params}")
    print(f"train:  {len(pending)} runs to train, {cached} cached; + {n_awd} natural AWD runs after the DoG estimate"
          f" (cached ones are skipped then)")
    print(f"attack: >= {len(attacked)} models to AutoAttack ({params.autoattack.shards} shards each)")
    print(f"prune:  >= {pruned} models to prune at {list(params.prune.amounts)}")
    print(f"estimate: {hours(flops):.2f} GPU-hours training + {hours(aa_flops):.2f} GPU-hours AutoAttack "
          f"at {args.tflops:g} TFLOP/s sustained (upper bound: natural AWD runs counted as pending)")
    for line in summary([u for _, u in pending], reasons, "training runs"):
        print(f"  {line}")
    if args.list:
        groups: dict[str, list] = {}
        for _, unit in pending:
            groups.setdefault(reasons[unit.key], []).append(unit)
        for reason, units in sorted(groups.items(), key=lambda kv: -len(kv[1])):
            print(f"  {reason} ({len(units)}):")
            for unit in units:
                print(f"    {unit.key[:12]}  {unit.label}")
    print("nothing was submitted")


if __name__ == "__main__":
    from pipeline.common import run_entry_point

    run_entry_point(main)
