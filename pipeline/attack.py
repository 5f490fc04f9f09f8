"""DVC stage `attack`: AutoAttack (L∞; `autoattack.version`, or `custom` with its `attacks`: the robust estimate
each result names in `robust_estimate`) on the test set for every adversarially trained run.

The stored unit is one block of `autoattack.block_size` test examples of one model (its key does not depend on
`autoattack.shards`); the blocks of each of a model's `autoattack.shards` contiguous shards run as one array task.
Blocks are merged in index order, so neither the result nor what is cached depends on how many shards ran.
"""

from __future__ import annotations

from jobs.driver import cancel_early, run_units_report
from pipeline import outcomes, pending
from pipeline.common import ARTIFACTS, executor_config, open_store, stage_args, unit_env, write_json
from pipeline.cost import check_budget
from pipeline.params import load_params
from pipeline.plan import AA_FN, Planner, for_stage, test_size
from pipeline.suites import ATTACKED_SUITES
from pipeline.trained_runs import check_trained, trained_runs

__all__ = ["AA_FN", "main", "units_for"]


def units_for(rec: dict, params, executor=None) -> list:
    """The AutoAttack blocks of one trained model (built by pipeline/plan.py, as the train stage's early ones are)."""
    return Planner(params, executor).attack_units(rec)


def main() -> None:
    from awd.autoattack import merge_autoattack

    args = stage_args(__doc__)
    params = load_params(args.params)
    aa = params.autoattack
    executor = executor_config()
    planner = for_stage(params, executor)
    store = open_store()
    runs = trained_runs(ATTACKED_SUITES)
    plan, out = [], [outcomes.skipped_record(rec) for rec in runs if not outcomes.usable(rec)]
    for rec in filter(outcomes.usable, runs):
        plan += [(rec, unit) for unit in planner.attack_units(rec)]
    cancel_early(store, "autoattack", {u.key for _, u in plan}, say=print)
    check_trained(store, plan, "attack")
    check_budget([u for _, u in plan], store, executor, "attack")
    report = run_units_report([u for _, u in plan], store, executor, desc="attack")
    failures = {f.unit.key: f for f in report.failures}
    merged: dict[str, dict] = {}
    for rec, unit in plan:
        m = merged.setdefault(rec["suite"] + rec["key"], {"rec": rec, "shards": [], "env": [], "failed": None})
        if unit.key in failures:  # a model's robust accuracy needs every block
            m["failed"] = m["failed"] or failures[unit.key]
            continue
        m["shards"].append(report.results[unit.key])
        env = unit_env(store, unit)
        if env not in m["env"]:
            m["env"].append(env)
    for m in merged.values():
        if m["failed"] is not None:
            out.append({**outcomes.skipped_record(m["rec"]), **outcomes.failure_fields(m["failed"]), "skipped": None})
            continue
        rec = m["rec"]
        try:  # every block exactly once: [0, n) without gaps or overlaps
            aa_result = merge_autoattack(m["shards"], n=test_size(rec["dataset"], params.data.root, aa.n_test))
        except ValueError as e:
            raise RuntimeError(f"AutoAttack blocks of {rec['key']}: {e}") from e
        out.append({"key": rec["key"], "suite": rec["suite"], "dataset": rec["dataset"], "label": rec["label"],
                    **aa_result, "robust_estimate": aa.estimate(), "env": m["env"]})
    out.sort(key=lambda r: (r["suite"], r["dataset"], r["key"]))
    write_json(ARTIFACTS / "attack" / "results.json", out)
    write_json(ARTIFACTS / "attack" / "units.json", {"autoattack": sorted({u.key for _, u in plan})})  # store gc/pull
    print(f"attack: {len(out)} models, {len(plan)} blocks")
    outcomes.report("attack", report.failures, len(plan))
    pending.write_mark("attack", report.failures)  # a dependency: what `dvc status` compares (pipeline/pending.py)


if __name__ == "__main__":
    from pipeline.common import run_entry_point

    run_entry_point(main)
