"""Params -> runs for the paper's fidelity points: Table 4 reuses the sweep, the AWD grid, the adversarial best
runs' extra seeds and the pooled DoG of Table 2."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from pipeline.params import ParamsError, load_params, validate
from pipeline.suites import adversarial_replicates, best_by_val, independent_runs
from pipeline.train import pooled_dog, unit_for

ROOT = Path(__file__).resolve().parents[2]


def raw(name="configs/paper.yaml") -> dict:
    return yaml.safe_load((ROOT / name).read_text())


def keys(params, specs):
    return [unit_for(s, params).key for s in specs]


def test_table4_sgd_rows_are_the_table3_sweep_runs_and_add_no_training():
    params = load_params(ROOT / "configs/paper.yaml")
    specs = independent_runs(params)
    sweep = {unit_for(s, params).key: s for s in specs if s.suite == "adversarial"}
    # seed 0 of a sweep row is the sweep's run itself (its other seeds: the next test)
    reused = [s for s in specs if s.suite == "variants" and s.label.get("from_sweep") and s.label["seed"] == 0]
    assert {s.label["name"] for s in reused} == {"λ_wd=0.0005 SGD 200ep", "DoG=0.022 SGD 200ep"}
    for spec in reused:
        key = unit_for(spec, params).key
        assert key in sweep, f"{spec.label['name']} trains a run of its own"
        assert sweep[key].dataset == spec.dataset == "cifar100"
        assert sweep[key].label["value"] == spec.label["value"]
    assert {s.label["value"] for s in reused} == {5e-4, 0.0218102}  # the swept values, not 0.022
    without = [s for s in specs if s not in reused]
    assert set(keys(params, specs)) == set(keys(params, without))


def test_table4_starred_rows_are_a_small_retuning_grid():
    params = load_params(ROOT / "configs/paper.yaml")
    variants = [s for s in independent_runs(params) if s.suite == "variants"]
    asam = sorted(s.label["value"] for s in variants if s.label["name"].startswith("λ_wd=0.00281*")
                  and s.label["seed"] == 0)
    assert len(asam) == 5 and 0.00281171 in asam
    ada = sorted(s.label["value"] for s in variants if s.label["method"] == "adadecay" and s.label["seed"] == 1)
    assert ada == [5e-4, 1e-3, 2e-3, 4e-3, 8e-3]  # every value at every seed (seeds: [0, 1, 2])
    assert all(s.config["optimizer"] == "asam" and s.config["epochs"] == 100
               for s in variants if s.label["name"].startswith("λ_wd=0.00281*"))


def test_from_sweep_needs_a_swept_value_and_sgd():
    cfg = raw()
    runs = cfg["suites"]["variants"][0]["runs"]
    runs[0] = {"name": "far", "method": "fixed", "value": 7.0e-4, "from_sweep": True}
    runs[1] = {"name": "asam", "method": "awd", "value": 0.022, "from_sweep": True, "optimizer": "asam"}
    with pytest.raises(ParamsError) as err:
        validate(copy.deepcopy(cfg), "paper.yaml")
    text = str(err.value)
    assert "suites.variants[0].runs[0].value: from_sweep: no adversarial study on cifar100 sweeps a fixed value " \
           "within 2% of 0.0007" in text
    assert "suites.variants[0].runs[1].optimizer: from_sweep: the adversarial sweep trains with sgd, not asam" in text
    runs[:2] = [{"name": "epochs", "method": "awd", "value": 0.022, "from_sweep": True, "epochs": 10}]
    with pytest.raises(ParamsError, match=r"runs\[0\].epochs: a row reusing the adversarial sweep's run takes the "
                                          "sweep's settings"):
        validate(cfg, "paper.yaml")


def test_grid_suite_holds_the_awd_grid_beside_the_fixed_one():
    params = load_params(ROOT / "configs/paper.yaml")
    grid = [s for s in independent_runs(params) if s.suite == "grid" and s.label["name"] == "resnet50-asam"]
    awd = [s for s in grid if s.label.get("method") == "awd"]
    fixed = [s for s in grid if s.label.get("method") != "awd"]
    assert len(fixed) == 49 and len(awd) == 7 * 5
    assert all(s.config["wd_method"] == "awd" and s.config["dog"] == s.label["value"] and s.config["wd"] == 0
               and s.config["optimizer"] == "asam" and s.config["lr"] == s.label["lr"] for s in awd)
    embedded = [s for s in independent_runs(load_params(ROOT / "params.yaml"))
                if s.suite == "grid" and s.label.get("method") == "awd"]
    assert embedded, "the embedded default must draw Fig. 1(c) too"


def test_extra_seeds_go_to_each_methods_val_selected_best_sweep_value():
    cfg = raw("params.yaml")
    cfg["suites"]["adversarial"][0]["best_seeds"] = [1, 2]
    params = validate(cfg)
    specs = independent_runs(params)
    sweep = [s for s in specs if s.suite == "adversarial"]
    val = {}
    for i, s in enumerate(sweep):  # scripted: the second-largest value of each method is best, one tie
        values = sorted(x.label["value"] for x in sweep if x.label["method"] == s.label["method"])
        val[i] = {"val_robust_acc": 0.9 if s.label["value"] == values[-2] else 0.5}
    best = best_by_val(sweep, val)
    assert {m: s.label["value"] for (_, m), s in best.items()} == {
        m: sorted(x.label["value"] for x in sweep if x.label["method"] == m)[-2] for m in ("fixed", "awd")}
    metrics = {i: val[sweep.index(s)] if s in sweep else {} for i, s in enumerate(specs)}
    extra = adversarial_replicates(params, specs, metrics)
    assert sorted((s.label["method"], s.label["seed"]) for s in extra) == [("awd", 1), ("awd", 2), ("fixed", 1),
                                                                         ("fixed", 2)]
    for s in extra:
        twin = best[(s.study, s.label["method"])]
        assert {k: v for k, v in s.config.items() if k != "seed"} == {k: v for k, v in twin.config.items() if k != "seed"}
        assert s.config["seed"] == s.label["seed"] != twin.config["seed"]


def test_best_by_val_breaks_ties_towards_the_smaller_value():
    sweep = [s for s in independent_runs(load_params(ROOT / "params.yaml")) if s.suite == "adversarial"]
    best = best_by_val(sweep, {i: {"val_robust_acc": 0.7} for i in range(len(sweep))})
    for (_, method), spec in best.items():
        assert spec.label["value"] == min(s.label["value"] for s in sweep if s.label["method"] == method)


def test_best_seeds_must_be_extra_seeds():
    cfg = raw("params.yaml")
    cfg["suites"]["adversarial"][0]["best_seeds"] = [0, 1]
    cfg["suites"]["adversarial"][0].setdefault("train", {})["seed"] = 0
    with pytest.raises(ParamsError, match=r"suites.adversarial\[0\].best_seeds: seed 0 is the sweep's own seed"):
        validate(copy.deepcopy(cfg))


def test_one_pooled_dog_per_natural_study_is_the_mean_of_its_seeds():
    est = [{"study": 0, "dog": 0.012}, {"study": 0, "dog": 0.014}, {"study": 0, "dog": 0.0161}, {"study": 1, "dog": 0.3}]
    assert pooled_dog(est, 0) == pytest.approx(0.01403)
    assert pooled_dog(est, 1) == 0.3


def test_variants_seeds_train_every_row_at_each_seed_and_a_sweep_row_shares_the_sweeps_runs():
    p = raw()
    p["suites"]["variants"][0]["seeds"] = [0, 1, 2]
    params = validate(p)
    specs = independent_runs(params)
    variants = [s for s in specs if s.suite == "variants"]
    rows = {}
    for s in variants:
        rows.setdefault(s.label["name"], []).append(s)
    assert {n: len(r) for n, r in rows.items()} == {
        "λ_wd=0.0005 SGD 200ep": 3, "λ_wd=0.0005 ASAM 100ep": 3, "λ_wd=0.00281* ASAM 100ep": 15,
        "AdaDecay λ=0.002* 200ep": 15, "DoG=0.022 SGD 200ep": 3, "DoG=0.022 ASAM 100ep": 3}
    assert all(s.config["seed"] == s.label["seed"] for s in variants)
    sweep_row = sorted(rows["DoG=0.022 SGD 200ep"], key=lambda s: s.label["seed"])
    sweep = {unit_for(s, params).key for s in specs if s.suite == "adversarial"}
    assert unit_for(sweep_row[0], params).key in sweep  # seed 0 is the sweep's own run (train.seed 0)
    # the other seeds are the runs the sweep's extra seeds of that value would be: one key for both
    [spec] = [s for s in specs if s.suite == "adversarial" and s.label["method"] == "awd"
              and s.dataset == sweep_row[0].dataset and s.label["value"] == sweep_row[0].label["value"]]
    extra = adversarial_replicates(params, [spec], {0: {"val_robust_acc": 0.5}})
    assert {unit_for(s, params).key for s in extra} == {unit_for(s, params).key for s in sweep_row[1:]}
    # unset: one run per row (a re-tuned row: per value), no seed in its label, the keys of before the field
    p["suites"]["variants"][0].pop("seeds")
    plain = [s for s in independent_runs(validate(p)) if s.suite == "variants"]
    assert len(plain) == 2 + 2 + 5 + 5 and not any("seed" in s.label for s in plain)
    assert {unit_for(s, params).key for s in variants if s.label["seed"] == 0} == set(keys(params, plain))


def test_grid_seeds_train_every_cell_at_each_seed_and_unset_keep_the_keys():
    p = raw("params.yaml")
    before = [s for s in independent_runs(validate(copy.deepcopy(p))) if s.suite == "grid"]
    p["suites"]["grid"][0]["seeds"] = [0, 1]
    params = validate(p)
    after = [s for s in independent_runs(params) if s.suite == "grid"]
    assert len(after) == 2 * len(before) and {s.label["seed"] for s in after} == {0, 1}
    assert all("seed" not in s.label for s in before)
    zero = {unit_for(s, params).key for s in after if s.label["seed"] == 0}
    assert zero == set(keys(params, before))  # seed 0 is train.seed: the same runs as without the field
