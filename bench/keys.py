"""Cost of computing every unit key of a params file (default: configs/paper.yaml), without touching a store.

Counts train units (phase 1, plus each natural run's AWD run with a stand-in DoG), the AutoAttack blocks and the
prune sweeps of the models the attack/prune suites evaluate. "cold" includes the semantic digests of the three unit
kinds' code closures (parsed once per process); "warm" is a second pass with them cached. Appends to results/bench.md.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from bench.common import report, table, wait_for_quiet

ROOT = Path(__file__).resolve().parent.parent


def all_keys(params) -> dict[str, int]:
    """Every unit the stages would build, through the one place that builds them (pipeline/plan.py's Planner); the
    attacked test sets' sizes are the known ones, so that no dataset need be on disk."""
    from pipeline.plan import Planner, known_test_size
    from pipeline.suites import ATTACKED_SUITES, PRUNED_SUITES, independent_runs, natural_awd

    planner = Planner(params)
    specs = independent_runs(params)
    specs += [natural_awd(params, s, 0.02) for s in specs if s.suite == "natural"]
    counts = {"train": 0, "autoattack": 0, "prune": 0}
    for spec in specs:
        unit = planner.train_unit(spec)
        counts["train"] += 1
        rec = {"key": unit.key, "suite": spec.suite, "dataset": spec.dataset, "label": spec.label,
               "config": spec.config}
        if spec.suite in ATTACKED_SUITES:
            n = known_test_size(spec.dataset, params.autoattack.n_test)
            counts["autoattack"] += len(planner.attack_units(rec, n))
        if spec.suite in PRUNED_SUITES:
            planner.prune_unit(rec)
            counts["prune"] += 1
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default=str(ROOT / "configs" / "paper.yaml"))
    args = parser.parse_args()
    from pipeline.params import load_params

    params = load_params(args.params)
    quiet = wait_for_quiet()
    t0 = time.perf_counter()
    counts = all_keys(params)
    cold = time.perf_counter() - t0
    t0 = time.perf_counter()
    all_keys(params)
    warm = time.perf_counter() - t0
    total = sum(counts.values())
    rows = [["units keyed", f"{total} ({', '.join(f'{v} {k}' for k, v in counts.items())})"],
            ["cold (closure digests included)", f"{cold:.2f} s"], ["warm", f"{warm:.2f} s"],
            ["per unit (warm)", f"{1e3 * warm / total:.2f} ms"]]
    report(f"Keys: every unit key of {Path(args.params).name}", table(["", ""], rows), quiet)


if __name__ == "__main__":
    main()
