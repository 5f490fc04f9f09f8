"""DVC stage `prune`: test accuracy after global non-iterative L1 pruning (Table 6, Figure 5)."""

from __future__ import annotations

from jobs.executors import load_executor_config
from jobs.submit import run_units
from pipeline.common import ARTIFACTS, make_unit, open_store, stage_args, unit_env, write_json
from pipeline.cost import check_budget
from pipeline.evaluated import base_eval_config, check_trained, trained_runs
from pipeline.params import load_params
from pipeline.suites import PRUNED_SUITES

PRUNE_FN = "pipeline.units.prune:prune_unit"


def main() -> None:
    args = stage_args(__doc__)
    params = load_params(args.params)
    executor = load_executor_config()
    store = open_store()
    plan = []
    for rec in trained_runs(PRUNED_SUITES):
        config = dict(base_eval_config(rec, params.data.root), amounts=list(params.prune.amounts))
        plan.append((rec, make_unit("prune", PRUNE_FN, config, f"prune {rec['suite']} {rec['label']}")))
    check_trained(store, plan, "prune")
    check_budget([u for _, u in plan], store, executor, "prune")
    results = run_units([u for _, u in plan], store, executor, desc="prune")
    out = []
    for rec, unit in plan:
        env = unit_env(store, unit)
        for row in results[unit.key]["rows"]:
            out.append({"key": rec["key"], "suite": rec["suite"], "dataset": rec["dataset"], "label": rec["label"],
                        **row, "env": env})
    out.sort(key=lambda r: (r["suite"], r["dataset"], r["key"], r["amount"]))
    write_json(ARTIFACTS / "prune" / "results.json", out)
    print(f"prune: {len(plan)} models x {len(params.prune.amounts)} amounts")


if __name__ == "__main__":
    main()
