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
    from awd.autoattack import block_bounds
    from pipeline.attack import AA_FN
    from pipeline.common import make_unit
    from pipeline.cost import TEST_SIZE
    from pipeline.prune import PRUNE_FN
    from pipeline.suites import ATTACKED_SUITES, PRUNED_SUITES, independent_runs, natural_awd
    from pipeline.train import unit_for
    from pipeline.trained_runs import base_eval_config

    specs = independent_runs(params)
    specs += [natural_awd(params, s, 0.02) for s in specs if s.suite == "natural"]
    counts = {"train": 0, "autoattack": 0, "prune": 0}
    aa, adv = params.autoattack, params.adversarial
    for spec in specs:
        unit = unit_for(spec, params)
        counts["train"] += 1
        rec = {"key": unit.key, "config": spec.config}
        if spec.suite in ATTACKED_SUITES:
            n = TEST_SIZE[spec.dataset] if aa.n_test is None else min(aa.n_test, TEST_SIZE[spec.dataset])
            for start, stop in block_bounds(n, aa.block_size):
                make_unit("autoattack", AA_FN, dict(base_eval_config(rec, params.data.root), eps=adv.eps,
                          version=aa.version, seed=aa.seed, batch_size=aa.batch_size, block_size=aa.block_size,
                          start=start, stop=stop))
                counts["autoattack"] += 1
        if spec.suite in PRUNED_SUITES:
            make_unit("prune", PRUNE_FN, dict(base_eval_config(rec, params.data.root),
                                              amounts=list(params.prune.amounts)))
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
