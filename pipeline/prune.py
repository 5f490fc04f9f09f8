"""DVC stage `prune`: test accuracy after global non-iterative L1 pruning (Table 6, Figure 5)."""

from __future__ import annotations

from jobs.driver import cancel_early, run_units_report
from pipeline import outcomes, pending
from pipeline.common import ARTIFACTS, executor_config, open_store, stage_args, unit_env, write_json
from pipeline.cost import check_budget
from pipeline.params import load_params
from pipeline.plan import PRUNE_FN, Planner, for_stage
from pipeline.suites import PRUNED_SUITES
from pipeline.trained_runs import check_trained, trained_runs

__all__ = ["PRUNE_FN", "main", "unit_for"]


def unit_for(rec: dict, params, executor=None):
    """The pruning unit of one trained model (built by pipeline/plan.py, as the train stage's early one is)."""
    return Planner(params, executor).prune_unit(rec)


def main() -> None:
    args = stage_args(__doc__)
    params = load_params(args.params)
    executor = executor_config()
    planner = for_stage(params, executor)
    store = open_store()
    plan, out = [], []
    for rec in trained_runs(PRUNED_SUITES):
        if not outcomes.usable(rec):
            out.append(outcomes.skipped_record(rec))
            continue
        plan.append((rec, planner.prune_unit(rec)))
    cancel_early(store, "prune", {u.key for _, u in plan}, say=print)
    check_trained(store, plan, "prune")
    check_budget([u for _, u in plan], store, executor, "prune")
    report = run_units_report([u for _, u in plan], store, executor, desc="prune")
    failures = {f.unit.key: f for f in report.failures}
    for rec, unit in plan:
        if unit.key in failures:
            out.append({**outcomes.skipped_record(rec), **outcomes.failure_fields(failures[unit.key]), "skipped": None})
            continue
        env = unit_env(store, unit)
        for row in report.results[unit.key]["rows"]:
            out.append({"key": rec["key"], "suite": rec["suite"], "dataset": rec["dataset"], "label": rec["label"],
                        **row, "env": env})
    out.sort(key=lambda r: (r["suite"], r["dataset"], r["key"], r.get("amount", -1.0)))
    write_json(ARTIFACTS / "prune" / "results.json", out)
    write_json(ARTIFACTS / "prune" / "units.json", {"prune": sorted({u.key for _, u in plan})})  # store gc/pull
    print(f"prune: {len(plan)} models x {len(params.prune.amounts)} amounts")
    outcomes.report("prune", report.failures, len(plan))
    pending.write_mark("prune", report.failures)  # a dependency: what `dvc status` compares (pipeline/pending.py)


if __name__ == "__main__":
    from pipeline.common import run_entry_point

    run_entry_point(main)
