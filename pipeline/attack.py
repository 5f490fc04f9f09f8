"""DVC stage `attack`: AutoAttack (standard, L∞) on the test set for every adversarially trained run.

Each model's test set is cut into `autoattack.shards` contiguous shards, one array task each; shards are merged in
index order, so the result does not depend on how many shards ran.
"""

from __future__ import annotations

from functools import lru_cache

from jobs.submit import run_units_report
from pipeline import outcomes
from pipeline.common import ARTIFACTS, executor_config, make_unit, open_store, stage_args, write_json
from pipeline.evaluated import base_eval_config, check_trained, trained_runs
from pipeline.params import load_params
from pipeline.suites import ATTACKED_SUITES

AA_FN = "pipeline.units.evaluate:autoattack_unit"


@lru_cache(maxsize=None)
def test_size(dataset: str, data_root: str, n_test) -> int:
    from awd.data import load_dataset

    total = int(load_dataset(dataset, data_root, download=False, train=False).y.numel())
    return total if n_test is None else min(int(n_test), total)


def main() -> None:
    from awd.attacks import shard_bounds

    args = stage_args(__doc__)
    params = load_params(args.params)
    aa, adv = params.autoattack, params.adversarial
    executor = executor_config()
    store = open_store()
    runs = trained_runs(ATTACKED_SUITES)
    plan, out = [], [outcomes.skipped_record(rec) for rec in runs if not outcomes.usable(rec)]
    for rec in filter(outcomes.usable, runs):
        n = test_size(rec["dataset"], params.data.root, aa.n_test)
        for start, stop in shard_bounds(n, aa.shards, aa.block_size):
            config = dict(base_eval_config(rec, params.data.root), eps=adv.eps, version=aa.version, seed=aa.seed,
                          batch_size=aa.batch_size, block_size=aa.block_size, n_test=n, start=start, stop=stop)
            plan.append((rec, make_unit("autoattack", AA_FN, config, f"AA {rec['suite']} {rec['label']} [{start},{stop})")))
    check_trained(store, plan, "attack")
    report = run_units_report([u for _, u in plan], store, executor, desc="attack")
    failures = {f.unit.key: f for f in report.failures}
    merged: dict[str, dict] = {}
    for rec, unit in plan:
        m = merged.setdefault(rec["suite"] + rec["key"], {"rec": rec, "shards": [], "failed": None})
        if unit.key in failures:  # a model's robust accuracy needs every shard
            m["failed"] = m["failed"] or failures[unit.key]
        else:
            m["shards"].append(report.results[unit.key])
    for m in merged.values():
        if m["failed"] is not None:
            out.append({**outcomes.skipped_record(m["rec"]), **outcomes.failure_fields(m["failed"]), "skipped": None})
            continue
        shards = sorted(m["shards"], key=lambda s: s["start"])
        for a, b in zip(shards, shards[1:]):
            if a["stop"] != b["start"]:
                raise RuntimeError(f"AutoAttack shards of {m['rec']['key']} leave a gap/overlap: {a} / {b}")
        n = sum(s["n"] for s in shards)
        rec = m["rec"]
        out.append({"key": rec["key"], "suite": rec["suite"], "dataset": rec["dataset"], "label": rec["label"],
                    "robust_acc": sum(s["robust_correct"] for s in shards) / n,
                    "clean_acc": sum(s["clean_correct"] for s in shards) / n, "n": n})
    out.sort(key=lambda r: (r["suite"], r["dataset"], r["key"]))
    write_json(ARTIFACTS / "attack" / "results.json", out)
    print(f"attack: {len(out)} models, {len(plan)} shards")
    outcomes.report("attack", report.failures, len(plan))


if __name__ == "__main__":
    main()
