"""The claims table's rule on small synthetic inputs: Holm's adjustment and levels, intervals within their bounds,
the 'not testable here' verdict, grid-edge notes, selections by validation only, the Departures section."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.report import stats
from pipeline.report.claims_adversarial import table3_claims
from pipeline.report.claims_core import Claim, decide
from pipeline.report.claims_search import noise_claims
from pipeline.report.departures import departures
from pipeline.report.inputs import Inputs


def claim(a, b=None, favourable="above", margin=0.0, **kw) -> Claim:
    return Claim("c", "AWD: x", "ds", "", "m", "r", favourable, margin, ("awd", "fixed"), dict(enumerate(a)),
                 dict(enumerate(b)) if b is not None else {}, **kw)


def test_holm_adjusts_and_gives_each_step_its_level():
    adjusted, levels = stats.holm([0.01, 0.04, 0.03, 0.005, math.nan])
    # sorted: 0.005·4 = 0.02, 0.01·3 = 0.03, 0.03·2 = 0.06, max(0.04·1, 0.06) = 0.06; NaN is outside the family
    assert adjusted[:4] == pytest.approx([0.03, 0.06, 0.06, 0.02]) and math.isnan(adjusted[4])
    # ranks 1, 2 rejected (0.005 < 0.05/4, 0.01 < 0.05/3); rank 3 stops (0.03 >= 0.05/2): ranks 3 and 4 take its level
    assert levels[:4] == pytest.approx([1 - 0.05 / 3, 0.975, 0.975, 1 - 0.05 / 4]) and math.isnan(levels[4])


def test_a_holm_interval_excludes_the_margin_exactly_when_holm_rejects():
    rng = np.random.default_rng(0)
    for _ in range(20):
        rows = [claim(list(rng.normal(rng.normal(0, 1.5), 1, 4)), [0.0] * 4) for _ in range(6)]
        decide(rows)
        for c in rows:
            assert (c.p_holm < stats.ALPHA) == (c.verdict != stats.INCONCLUSIVE), (c.p_holm, c.interval)


def test_family_size_counts_only_testable_rows_and_the_adjustment_widens_intervals():
    rows = [claim([1.0, 2.0, 3.0], [0.0, 0.0, 0.0]), claim([0.5], [0.0]), claim([2.0, 2.5, 2.2], [0.0] * 3)]
    fam = decide(rows)
    assert fam["size"] == 2 and fam["adjustment"] == "holm"
    # the smaller p (rank 1 of 2) is tested at 1 − 0.05/2: a wider interval than the unadjusted 95 %; the last
    # step's level is 95 %
    raw = stats.t_interval([2.0, 2.5, 2.2])
    assert rows[2].level == pytest.approx(0.975) and rows[2].interval.low < raw.low
    assert rows[0].level == pytest.approx(0.95)


def test_bounded_intervals_stay_within_their_bounds():
    iv = stats.t_interval([99.5, 100.0, 99.0], bounds=(0.0, 100.0))
    assert iv.high == 100.0 and iv.low < 99.5 and iv.estimate == pytest.approx(99.5)
    c = claim([10.0, 90.0, 50.0], [0.0] * 3, bounds=(-100.0, 100.0))
    decide([c])
    assert -100.0 <= c.interval.low and c.interval.high <= 100.0


def test_not_testable_without_a_seed_pair_at_the_ceiling_or_for_the_builders_reason():
    one = claim([99.5], [99.5], ceiling=[99.5, 99.5])
    ceiling = claim([99.5, 99.7, 99.6], [99.5, 99.8, 99.6], ceiling=[99.5, 99.7, 99.6, 99.5, 99.8, 99.6])
    missing = claim([], [], reason="no clean runs")
    decide([one, ceiling, missing])
    assert {c.verdict for c in (one, ceiling, missing)} == {stats.NOT_TESTABLE}
    assert "seed pair" in one.reason and "ceiling" in one.reason
    assert "ceiling" in ceiling.reason and missing.reason == "no clean runs"
    assert all(math.isnan(c.p_holm) for c in (one, ceiling, missing))  # outside the family
    # at the ceiling, a difference the test does find stays a verdict: 99.9 vs 99.0 in every seed
    clear = claim([99.9, 99.9, 99.9], [99.0, 99.0, 99.0], ceiling=[99.9, 99.0])
    decide([clear])
    assert clear.verdict == stats.HOLDS


def test_a_claimed_positive_count_that_is_zero_in_every_seed_does_not_hold():
    c = claim([0.0, 0.0, 0.0], zero_fails=True)
    decide([c])
    assert c.verdict == stats.FAILS


def test_margin_and_side():
    below = claim([-1.0, -1.1, -0.9], [0.0] * 3, favourable="below")
    wrong_side = claim([-1.0, -1.1, -0.9], [0.0] * 3, favourable="above")
    within = claim([-0.2, -0.1, -0.3], [0.0] * 3, margin=-1.0)
    decide([below, wrong_side, within])
    assert (below.verdict, wrong_side.verdict, within.verdict) == (stats.HOLDS, stats.FAILS, stats.HOLDS)


def test_grid_edge():
    assert stats.grid_edge(0.04, [0.04, 0.08, 0.16]) == "lower"
    assert stats.grid_edge(0.16, [0.16, 0.04, 0.08]) == "upper"
    assert stats.grid_edge(0.08, [0.04, 0.08, 0.16]) is None
    assert stats.grid_edge(0.08, [0.08]) is None  # one value: no grid to be on the edge of


def _inputs(runs: list[dict]) -> Inputs:
    df = pd.DataFrame(runs)
    for c, v in (("study", 0), ("dataset", "ds"), ("lr", 0.1), ("model", "tiny"), ("epochs", 4), ("n_test", 100)):
        df[c] = v
    df["key"] = [f"k{i}" for i in range(len(df))]
    empty = pd.DataFrame(columns=["key", "suite", "dataset", "lr", "method", "value", "seed", "amount", "acc"])
    return Inputs(root=Path("."), suites={}, runs=df, attacks=empty, prune=empty)


def test_table3_verdicts_use_the_validation_best_never_the_test_best():
    runs = []
    # fixed: 1e-3 is best by val PGD-20 (0.5), 1e-2 best by test AutoAttack (90): the claim must use 1e-3's seeds
    for value, val, aa in ((1e-3, 50.0, 40.0), (1e-2, 30.0, 90.0)):
        for seed in (0, 1, 2):
            runs.append({"suite": "adversarial", "method": "fixed", "value": value, "seed": seed,
                         "replicate": seed > 0, "val_robust_acc": val, "aa_acc": aa + seed, "test_acc": 80.0,
                         "weight_norm": 10.0})
    for value, val, aa in ((0.02, 50.0, 45.0), (0.04, 40.0, 20.0)):
        for seed in (0, 1, 2):
            runs.append({"suite": "adversarial", "method": "awd", "value": value, "seed": seed, "replicate": seed > 0,
                         "val_robust_acc": val, "aa_acc": aa + 2 * seed, "test_acc": 80.0, "weight_norm": 5.0})
    rows = {c.id: c for c in table3_claims(_inputs(runs))}
    aa = rows["higher_autoattack"]
    assert aa.b == {0: 40.0, 1: 41.0, 2: 42.0} and aa.a == {0: 45.0, 1: 47.0, 2: 49.0}
    decide(list(rows.values()))
    assert aa.verdict == stats.HOLDS  # against the test-selected 90 it would not hold
    # the test-selected fixed value sits on the grid's upper edge: said beside the verdict, as a note only
    assert any("upper edge" in n and "test AutoAttack" in n for n in aa.notes)


def test_label_noise_selects_by_clean_validation_and_pairs_the_drop_by_seed():
    runs = []
    for method, value, val, clean, noisy in (("fixed", 1e-4, 90.0, 90.0, 60.0), ("fixed", 1e-3, 80.0, 95.0, 94.0),
                                             ("awd", 0.1, 90.0, 90.0, 85.0), ("awd", 0.2, 70.0, 92.0, 50.0)):
        for seed in (0, 1):
            runs.append({"suite": "noisy", "method": method, "value": value, "seed": seed, "rate": 0.0,
                         "val_acc": val, "test_acc": clean + seed})
            runs.append({"suite": "noisy", "method": method, "value": value, "seed": seed, "rate": 0.2,
                         "val_acc": 10.0, "test_acc": noisy})
    (c,) = noise_claims(_inputs(runs))
    # fixed by clean val: 1e-4 (drop 30 + seed), not 1e-3 (the best clean test accuracy); AWD: 0.1 (drop 5 + seed)
    assert c.b == {0: 30.0, 1: 31.0} and c.a == {0: 5.0, 1: 6.0} and c.id == "label_noise_20"
    assert any("fixed value = 0.0001" in n and "lower edge" in n for n in c.notes)


PAPER_LIKE = {"train": {"model": "preact_wrn", "epochs": 200, "bf16": True, "deterministic": False, "augment": True},
              "adversarial": {"eps": 8 / 255, "train_steps": 7}, "autoattack": {"version": "standard", "n_test": None},
              "suites": {"natural": [{"dataset": "cifar10", "plateau": {"window": 10, "rel_tol": 0.05}}],
                         "adversarial": [{"dataset": "cifar100"}]}}


def test_departures_are_read_from_the_params_keys():
    keys = [d[0] for d in departures(PAPER_LIKE)]
    assert keys == ["train.bf16", "train.deterministic", "train.augment", "suites.natural", "suites.natural.plateau"]
    flips = next(d for d in departures(PAPER_LIKE) if d[0] == "train.augment")
    assert "flips" in flips[1]
    fp32 = {**PAPER_LIKE, "train": {**PAPER_LIKE["train"], "bf16": False, "deterministic": True},
            "autoattack": {"version": "fast-robust", "n_test": 1000}}
    keys = [d[0] for d in departures(fp32)]
    assert "train.bf16" not in keys and "train.deterministic" not in keys
    assert {"autoattack.version", "autoattack.n_test"} <= set(keys)
    custom = {**fp32, "autoattack": {"version": "custom", "attacks": ["apgd-ce", "apgd-t"]}}
    (row,) = [d for d in departures(custom) if d[0].startswith("autoattack")]
    assert row[0] == "autoattack.version, attacks" and "APGD-CE + APGD-T only" in row[1] and "upper bound" in row[3]
    # a study's own train: block counts: one bf16 study is a departure
    mixed = {**fp32, "suites": {"grid": [{"dataset": "cifar10", "train": {"bf16": True}}]}}
    assert "train.bf16" in [d[0] for d in departures(mixed)]
    # adversarial validation from a later epoch is a departure; from epoch 1 (every epoch) is the paper's rule
    late = {**fp32, "adversarial": {**fp32["adversarial"], "val_steps": 20, "val_from_fraction": 0.5}}
    (row,) = [d for d in departures(late) if d[0] == "adversarial.val_from_fraction"]
    assert "PGD-20 validation after the first 0.5 of the epochs (epoch 101 on)" in row[1] and "earlier" in row[3]
    every = {**fp32, "adversarial": {**fp32["adversarial"], "val_from_fraction": 0.0}}
    assert "adversarial.val_from_fraction" not in [d[0] for d in departures(every)]


def test_departures_defaults_are_the_training_configs():
    from awd.train_config import TrainConfig
    from pipeline.report.departures import DEFAULTS

    assert DEFAULTS == {k: TrainConfig.model_fields[k].default for k in DEFAULTS}
    # a params file that leaves augment out trains with flips on CIFAR: a departure, said
    assert "train.augment" in [d[0] for d in departures({"suites": {"grid": [{"dataset": "cifar10"}]}})]
