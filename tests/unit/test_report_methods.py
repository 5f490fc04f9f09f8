"""Tables, figures and claims show every method: a plugin's rows appear labelled by its own name and
hyper-parameter, one colour per method in every figure, and the claims compare AWD with each baseline."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from pipeline.aggregate import aggregate
from pipeline.report import methods as report_methods
from tests.unit.test_aggregate import build_full, correct_string

SGDW = {"wd_method": "examples.sgdw:SGDW"}


def add_sgdw(art) -> None:
    """SGDW rows beside fixed and AWD in every suite that compares methods (the plugin named in params)."""
    for lr in (0.01, 0.1, 1.0):
        for wd in (1e-4, 1e-3):
            art.run("grid", "digits", {"name": "tiny", "lr": lr, "method": "sgdw", "value": wd},
                    {"val_acc": 0.7 + wd, "test_acc": 0.7}, config={"lr": lr, **SGDW, "wd": wd})
    for value, (val_rob, aa) in {1e-4: (0.33, 0.31), 1e-3: (0.38, 0.36)}.items():
        key = art.run("adversarial", "cifar10", {"method": "sgdw", "value": value},
                      {"val_robust_acc": val_rob, "test_acc": 0.8, "weight_norm": 15.0, "val_acc": 0.85},
                      config={**SGDW, "wd": value})
        art.attacks.append({"key": key, "suite": "adversarial", "dataset": "cifar10", "label": {}, "robust_acc": aa,
                            "clean_acc": 0.8, "n": 100, "correct": correct_string(aa, shift=1)})
    for rate in (0.0, 0.2, 0.4):
        art.run("noisy", "digits", {"rate": rate, "method": "sgdw", "value": 1e-3}, {"test_acc": 0.85 - rate * 0.4},
                config={**SGDW, "wd": 1e-3})
    for lr in (0.01, 0.1, 1.0):
        for seed in (0, 1):
            label = {"lr": lr, "method": "sgdw", "value": 1e-3, "seed": seed}
            key = art.run("lr_sensitivity", "cifar100", label, {"test_acc": 0.7 - 0.01 * seed, "weight_norm": 18.0},
                          config={"lr": lr, **SGDW, "wd": 1e-3})
            for amount in (0.0, 0.5, 0.7):
                art.prune.append({"key": key, "suite": "lr_sensitivity", "dataset": "cifar100", "label": label,
                                  "amount": amount, "acc": 0.7 - amount * 0.2, "sparsity": amount})
    art.run("underfit", "cifar100", {"method": "sgdw", "value": 1e-3},
            {"test_acc": 0.8, "train_acc": 0.98, "weight_norm": 16.0, "n_train": 1000}, config={"lr": 0.01, **SGDW})


@pytest.fixture(scope="module")
def with_plugin(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("plugin")
    _, _, art = build_full(tmp, with_images=False)
    add_sgdw(art)
    params, arts = art.write()
    out = tmp / "results"
    return out, aggregate(params, arts, out)


def md(out: Path, tid: str) -> str:
    return (out / "tables" / f"{tid}.md").read_text()


def test_plugin_rows_appear_in_every_table_of_the_suites_that_list_it(with_plugin):
    out, _ = with_plugin
    for tid in ("T3", "T5", "T6", "F12"):
        rows = pd.read_csv(out / "tables" / f"{tid}.csv")
        assert "sgdw" in set(rows["method"]), tid
        assert "sgdw (examples.sgdw:SGDW): its `λ_wd / DoG` value is λ_SGDW." in md(out, tid)
    assert "sgdw" not in set(pd.read_csv(out / "tables" / "T2.csv")["method"])  # natural does not list it
    assert "sgdw" not in md(out, "T2")


def test_plugin_curves_share_one_style_across_figures(with_plugin):
    out, _ = with_plugin
    s = report_methods.style("sgdw")
    assert (s.param_label, s.sweep, s.spec) == ("λ_SGDW", "log", "examples.sgdw:SGDW")  # read from the class
    assert s.color not in {b.color for b in report_methods.BUILTIN.values()}
    for fid in ("F1", "F3", "F4", "F5"):
        data = pd.read_csv(out / "plots" / f"{fid}.csv")
        assert "sgdw" in set(data["method"]), fid


def test_claims_compare_awd_with_each_baseline(with_plugin):
    out, m = with_plugin
    claims = m["claims"]
    for base in ("higher_autoattack", "label_noise_20", "lr_sensitivity", "pruning", "fits_fewer"):
        assert base in claims and f"{base}_vs_sgdw" in claims, base
    assert "smaller_norm_vs_sgdw" not in claims  # the natural suite compares fixed and AWD only
    readme = (out / "README.md").read_text()
    assert "AWD vs sgdw: higher AutoAttack accuracy" in readme and "AutoAttack acc AWD − sgdw" in readme
    assert "sgdw" in json.dumps(m["grid"]["digits"]["tiny"])


def test_builtin_styles_agree_with_the_method_classes():
    from awd.methods import BUILTINS, resolve_method

    for name in BUILTINS:
        cls = resolve_method(name)
        assert report_methods.BUILTIN[name].param_label == cls.param_label
        assert report_methods.BUILTIN[name].sweep == cls.sweep
