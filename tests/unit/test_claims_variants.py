"""`seeds:` on a variants study (Table 4: every row's runs pair up by seed, its claims are decided) and on a grid
study (each cell's metric is its mean over the seeds; the Fig. 1/7 claims pair the seeds)."""

from __future__ import annotations

import pandas as pd
import pytest

from pipeline.aggregate import aggregate
from tests.unit.test_aggregate import Artifacts, correct_string

SEEDS = (0, 1, 2)
# (name, method, value, optimizer, from the sweep) -> AutoAttack accuracy of seed s: base + step * s
ROWS = {
    ("DoG=0.022 SGD", "awd", 0.022, "sgd", True): (0.30, 0.01),
    ("DoG=0.022 ASAM", "awd", 0.022, "asam", False): (0.36, 0.01),
    ("λ_wd=0.0005 SGD", "fixed", 5e-4, "sgd", True): (0.25, 0.02),
    ("λ_wd=0.0005 ASAM", "fixed", 5e-4, "asam", False): (0.25, 0.0),
}


def _build(tmp_path) -> tuple[dict, pd.DataFrame]:
    art = Artifacts(tmp_path)
    for (name, method, value, opt, from_sweep), (base, step) in ROWS.items():
        for seed in SEEDS:
            metrics = {"val_robust_acc": 0.4, "test_acc": 0.6, "weight_norm": 10.0}
            aa = base + step * seed
            key = None
            if from_sweep:  # the sweep's run of the value at seed 0, an extra seed of it at 1 and 2: one key each
                label = {"method": method, "value": value, **({"seed": seed} if seed else {})}
                key = art.run("adversarial", "cifar100", label, metrics, config={"seed": seed})
                art.attacks.append({"key": key, "suite": "adversarial", "dataset": "cifar100", "label": label,
                                    "robust_acc": aa, "clean_acc": 0.6, "n": 100, "correct": correct_string(aa)})
            label = {"name": name, "method": method, "value": value, "optimizer": opt, "seed": seed,
                     **({"from_sweep": True} if from_sweep else {})}
            key = art.run("variants", "cifar100", label, metrics, config={"seed": seed, "optimizer": opt}, key=key)
            art.attacks.append({"key": key, "suite": "variants", "dataset": "cifar100", "label": label,
                                "robust_acc": aa, "clean_acc": 0.6, "n": 100, "correct": correct_string(aa)})
    params, arts = art.write()
    m = aggregate(params, arts, tmp_path / "results")
    return m["claims"], pd.read_csv(tmp_path / "results" / "tables" / "T4.csv")


def test_every_table4_row_pairs_its_seeds_and_is_decided(tmp_path):
    claims, t4 = _build(tmp_path)
    asam = claims["t4_awd_asam_vs_sgd"]["cifar100"]  # +6 points at every seed: no spread, p = 0
    assert asam["n"] == 3 and asam["estimate"] == pytest.approx(6.0) and asam["verdict"] == "holds"
    fixed = claims["t4_fixed_asam_vs_sgd"]["cifar100"]  # 0, −2, −4: a mean of −2 with spread, n = 3
    assert fixed["n"] == 3 and fixed["estimate"] == pytest.approx(-2.0) and fixed["verdict"] != "not testable here"
    under_asam = claims["t4_awd_vs_fixed_asam"]["cifar100"]
    assert under_asam["n"] == 3 and under_asam["estimate"] == pytest.approx(12.0)
    # the table shows each row over its seeds: the sweep row's three runs, not only the sweep's own
    sgd = t4[(t4["run"] == "DoG=0.022 SGD") & (t4["metric"] == "autoattack")].iloc[0]
    assert sgd["n"] == 3 and sgd["ours"] == pytest.approx(31.0) and "sweep run itself and 2 more seeds" in sgd["note"]
    asam_row = t4[(t4["run"] == "DoG=0.022 ASAM") & (t4["metric"] == "autoattack")].iloc[0]
    assert asam_row["n"] == 3 and asam_row["ours"] == pytest.approx(37.0)


def test_a_seeded_grids_cells_are_means_over_seeds_and_its_claims_pair_them(tmp_path):
    art = Artifacts(tmp_path)
    for seed in SEEDS:
        for lr in (0.01, 0.1, 1.0):
            for wd in (5e-5, 5e-4, 5e-3):
                best = {0.01: 5e-3, 0.1: 5e-4, 1.0: 5e-5}[lr]  # the diagonal, at every seed
                acc = 0.9 - 0.1 * (wd != best) + 0.01 * seed
                art.run("grid", "digits", {"name": "tiny", "lr": lr, "wd": wd, "seed": seed},
                        {"val_acc": acc, "test_acc": acc}, config={"lr": lr, "wd_method": "fixed", "wd": wd,
                                                                   "seed": seed})
    params, arts = art.write()
    m = aggregate(params, arts, tmp_path / "results")
    cell = m["grid"]["digits"]["tiny"]["fixed"]
    assert cell["lr_0p1"]["wd_0p0005"]["val_acc"] == pytest.approx(91.0)  # (90 + 91 + 92) / 3, in percent
    diagonal = m["claims"]["diagonal_optimum"]["digits"]
    assert diagonal["n"] == 3 and diagonal["estimate"] == pytest.approx(-1.0) and diagonal["verdict"] == "holds"
