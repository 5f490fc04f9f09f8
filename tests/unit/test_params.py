"""pipeline.params: the configs load, grids expand, every bad input is reported with its key, value and rule."""

from __future__ import annotations

import copy
import math
import re
from pathlib import Path

import pytest
import yaml

from pipeline.params import (
    RUN_CONFIG_KEYS,
    ParamsError,
    base_run_config,
    check_data,
    load_params,
    resolve_train,
    to_dict,
    validate,
)

ROOT = Path(__file__).resolve().parents[2]
EMBEDDED = ROOT / "params.yaml"
PAPER = ROOT / "configs" / "paper.yaml"


@pytest.fixture(scope="module")
def raw():
    d = yaml.safe_load(EMBEDDED.read_text())
    d["autoattack"]["n_test"] = 100  # the embedded default attacks the whole split (null); the shards rule needs n
    return d


def _tokens(path: str):
    return [int(i) if i else k for k, i in re.findall(r"([^.\[\]]+)|\[(\d+)\]", path)]


DELETE = object()


def mutate(raw: dict, path: str, value) -> dict:
    d = copy.deepcopy(raw)
    *parents, last = _tokens(path)
    node = d
    for t in parents:
        node = node[t]
    if value is DELETE:
        del node[last]
    else:
        node[last] = value
    return d


def error_lines(d: dict, source="params.yaml") -> list[str]:
    with pytest.raises(ParamsError) as exc:
        validate(d, source=source)
    return str(exc.value).splitlines()


# --- the shipped configs ----------------------------------------------------------------------------------------


def test_embedded_params_load():
    p = load_params(EMBEDDED)
    assert p.datasets() == ["digits"]
    raw = yaml.safe_load(EMBEDDED.read_text())
    assert p.train["model"] == "tiny" and p.train["epochs"] == raw["train"]["epochs"]
    adv = p.suites.adversarial[0]
    assert adv.wds == tuple(raw["suites"]["adversarial"][0]["wds"]) and len(adv.best_seeds) >= 2  # n >= 3 seeds
    # half the digits test split (a fidelity decision stated in params.yaml); no augmentation
    assert p.autoattack.n_test == 180 and p.train["augment"] is False
    assert all(len(getattr(p.suites, s)) == 1 for s in ("natural", "grid", "variants", "noisy", "underfit"))


def test_paper_config_loads_with_appendix_a_settings():
    p = load_params(PAPER)
    assert p.datasets() == ["cifar10", "cifar100"]
    assert (p.train["model"], p.train["epochs"], p.train["batch_size"], p.train["lr"]) == ("preact_wrn", 200, 128, 0.1)
    assert p.train["model_kw"] == {"depth": 28, "width": 10}
    assert p.autoattack.n_test is None
    for study in p.suites.adversarial:
        assert len(study.wds) == 17 and len(study.dogs) == 9
    for study in p.suites.noisy:
        assert len(study.wds) == 5 and len(study.dogs) == 5  # the typo-corrected A.2 lists, all distinct
        assert 0.0158 in study.wds and resolve_train(p, study)["model"] == "resnet34"
    [variants] = p.suites.variants
    epochs = {r.name: resolve_train(p, variants, r.overrides())["epochs"] for r in variants.runs}
    assert epochs["DoG=0.022 ASAM 100ep"] == 100 and epochs["DoG=0.022 SGD 200ep"] == 200
    assert resolve_train(p, variants, variants.runs[-1].overrides())["asam_rho"] == 1.0
    assert [s.dog for s in p.suites.lr_sensitivity] == [0.018, 0.016]


def test_names_match_the_library():
    from pipeline import params

    try:
        from awd.data import DATASET_NAMES
        from awd.models import MODEL_NAMES
    except ImportError:
        pytest.skip("awd.data / awd.models not importable yet")
    assert set(params.DATASET_NAMES) == set(DATASET_NAMES)
    assert set(params.MODEL_NAMES) == set(MODEL_NAMES)


# --- grids ------------------------------------------------------------------------------------------------------


def test_geomspace_17_values_exact_endpoints(raw):
    d = mutate(raw, "suites.adversarial[0].wds", {"geomspace": [5e-5, 5e-3, 17]})
    d = mutate(d, "suites.variants[0].runs[0].value", 5e-3)  # a Table 4 row reusing a swept value
    wds = validate(d).suites.adversarial[0].wds
    assert len(wds) == 17 and wds[0] == 5e-5 and wds[-1] == 5e-3
    ratios = [b / a for a, b in zip(wds, wds[1:])]
    assert all(math.isclose(r, 100 ** (1 / 16), rel_tol=1e-5) for r in ratios)
    assert all(float(f"{w:.6g}") == w for w in wds)  # rounded: stable keys


def test_linspace_and_rounding(raw):
    d = mutate(raw, "suites.noisy[0].rates", {"linspace": [0.0, 0.8, 5]})
    d = mutate(d, "suites.grid[0].lrs", [0.1234567891])
    p = validate(d)
    assert p.suites.noisy[0].rates == (0.0, 0.2, 0.4, 0.6, 0.8)
    assert p.suites.grid[0].lrs == (0.123457,)


def test_yaml_exponent_without_dot_is_a_float(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text(EMBEDDED.read_text().replace("wd: 5.0e-4", "wd: 5e-4"))
    assert load_params(f).suites.natural[0].wd == 5e-4


# --- bad inputs: (id, dotted key, new value, [substrings of the error line]) ------------------------------------

BAD = [
    ("lr_negative", "train.lr", -0.1, ["-0.1", "> 0"]),
    ("lr_nan", "train.lr", float("nan"), ["nan", "finite"]),
    ("epochs_float", "train.epochs", 8.5, ["8.5", "integer"]),
    ("epochs_zero", "train.epochs", 0, ["got 0", ">= 1"]),
    ("batch_size_bool", "train.batch_size", True, ["true", "boolean"]),
    ("momentum_one", "train.momentum", 1.0, ["1.0", "[0, 1)"]),
    ("unknown_model", "train.model", "wrn", ["'wrn'", "preact_wrn, resnet32, resnet34, resnet50, tiny"]),
    ("unknown_optimizer", "train.optimizer", "adam", ["'adam'", "sgd, asam"]),
    ("unknown_awd_grad", "train.asam_awd_grad", "both", ["'both'", "descent, ascent"]),
    ("model_kw_not_mapping", "train.model_kw", [1], ["[1]", "mapping"]),
    ("val_fraction_one", "data.val_fraction", 1.0, ["1.0", "(0, 1)"]),
    ("split_seed_string", "data.split_seed", "0", ["'0'", "integer"]),
    ("eps_pixels", "adversarial.eps", 8, ["got 8", "(0, 1]"]),
    ("step_size_zero", "adversarial.step_size", 0, ["got 0", "(0, 1]"]),
    ("train_steps_zero", "adversarial.train_steps", 0, ["got 0", ">= 1"]),
    ("val_steps_float", "adversarial.val_steps", 2.5, ["2.5", "integer"]),
    ("bn_mode", "adversarial.bn_mode", "frozen", ["'frozen'", "train, eval"]),
    ("aa_version", "autoattack.version", "fast", ["'fast'", "standard, plus, rand"]),
    ("aa_shards_zero", "autoattack.shards", 0, ["got 0", ">= 1"]),
    ("aa_n_test_zero", "autoattack.n_test", 0, ["got 0", ">= 1"]),
    ("aa_shards_over_n_test", "autoattack.shards", 101, ["101", "<= n_test"]),
    ("prune_amount_one", "prune.amounts[1]", 1.0, ["1.0", "(0, 1)"]),
    ("unknown_dataset", "suites.natural[0].dataset", "cifar1O", ["'cifar1O'", "did you mean 'cifar10'",
                                                                 "digits, cifar10, cifar100"]),
    ("natural_wd_zero", "suites.natural[0].wd", 0, ["got 0", "> 0"]),
    ("seed_float", "suites.natural[0].seeds[1]", 1.0, ["1.0", "integer"]),
    ("seed_duplicate", "suites.natural[0].seeds[1]", 0, ["duplicate seed 0", "unique"]),
    ("seeds_empty", "suites.natural[0].seeds", [], ["[]", "non-empty list"]),
    ("plateau_window_zero", "suites.natural[0].plateau.window", 0, ["got 0", ">= 1"]),
    ("plateau_rel_tol_zero", "suites.natural[0].plateau.rel_tol", 0.0, ["0.0", "(0, 1)"]),  # awd.dog_estimate's range
    ("grid_empty", "suites.grid[0].lrs", [], ["empty grid"]),
    ("grid_lr_zero", "suites.grid[0].lrs[0]", 0.0, ["0.0", "> 0"]),
    ("grid_wd_negative", "suites.grid[0].wds[0]", -5e-05, ["-5e-05", "> 0", "method none"]),
    ("grid_duplicate_after_rounding", "suites.grid[0].lrs[1]", 0.0100000001,
     ["0.0100000001", "same as suites.grid[0].lrs[0]", "6 significant digits"]),
    ("dog_negative", "suites.adversarial[0].dogs", [0.02, 0.03, -0.1], ["-0.1", "> 0"]),
    ("geomspace_start_zero", "suites.adversarial[0].wds", {"geomspace": [0, 5e-3, 3]}, ["got 0", "> 0"]),
    ("geomspace_num_float", "suites.adversarial[0].dogs", {"geomspace": [0.02, 0.04, 2.5]}, ["2.5", "integer"]),
    ("geomspace_num_zero", "suites.adversarial[0].dogs", {"geomspace": [0.02, 0.04, 0]}, ["got 0", ">= 1"]),
    ("geomspace_short", "suites.adversarial[0].dogs", {"geomspace": [0.02, 0.04]}, ["[start, stop, num]"]),
    ("logspace", "suites.adversarial[0].dogs", {"logspace": [0.02, 0.04, 3]}, ["'logspace'", "geomspace or linspace"]),
    ("linspace_out_of_range", "suites.noisy[0].rates", {"linspace": [0.0, 1.0, 3]}, ["1.0", "[0, 1)"]),
    ("noise_rate_one", "suites.noisy[0].rates[1]", 1.0, ["1.0", "[0, 1)"]),
    ("variant_method", "suites.variants[0].runs[0].method", "sam", ["'sam'", "none, fixed, awd, adadecay"]),
    ("variant_awd_zero", "suites.variants[0].runs[4].value", 0.0, ["0.0", "> 0"]),
    ("variant_value_negative", "suites.variants[0].runs[0].value", -1e-4, ["-0.0001", "> 0"]),
    ("variant_optimizer", "suites.variants[0].runs[0].optimizer", "adamw", ["'adamw'", "sgd, asam"]),
    ("variant_epochs_zero", "suites.variants[0].runs[0].epochs", 0, ["got 0", ">= 1"]),
    ("variant_name_duplicate", "suites.variants[0].runs[1].name", "λ_wd=0.015 SGD",
     ["'λ_wd=0.015 SGD'", "unique"]),
    ("lr_sens_dog_zero", "suites.lr_sensitivity[0].dog", 0, ["got 0", "> 0"]),
    ("lr_sens_wd_negative", "suites.lr_sensitivity[0].wd", -0.1, ["-0.1", "> 0"]),
    ("n_images_zero", "suites.underfit[0].n_images", 0, ["got 0", ">= 1"]),
    ("study_train_typo", "suites.natural[0].train", {"epoch": 3}, ["'epoch'", "did you mean 'epochs'"]),
    ("suites_not_list", "suites.natural", {"dataset": "digits"}, ["list of natural studies"]),
    # --- the rest of the reliability issue's list: every bound, type, empty and duplicate grid of every suite
    ("lr_zero", "train.lr", 0, ["got 0", "> 0"]),
    ("lr_string", "train.lr", "0.1", ["'0.1'", "number"]),
    ("lr_inf", "train.lr", float("inf"), ["inf", "finite"]),
    ("batch_size_zero", "train.batch_size", 0, ["got 0", ">= 1"]),
    ("batch_size_negative", "train.batch_size", -128, ["-128", ">= 1"]),
    ("batch_size_float", "train.batch_size", 128.0, ["128.0", "integer"]),
    ("epochs_negative", "train.epochs", -3, ["-3", ">= 1"]),
    ("epochs_string", "train.epochs", "10", ["'10'", "integer"]),
    ("nesterov_string", "train.nesterov", "yes", ["'yes'", "true or false"]),
    ("deterministic_int", "train.deterministic", 1, ["got 1", "true or false"]),
    ("awd_ema_zero", "train.awd_ema", 0.0, ["0.0", "(0, 1]"]),
    ("asam_rho_zero", "train.asam_rho", 0, ["got 0", "> 0"]),
    ("train_seed_float", "train.seed", 0.5, ["0.5", "integer"]),
    ("study_model_unknown", "suites.underfit[0].train.model", "resnet18", ["'resnet18'", "did you mean 'resnet50'"]),
    ("study_optimizer_unknown", "suites.underfit[0].train.optimizer", "adam", ["'adam'", "sgd, asam"]),
    ("eps_zero", "adversarial.eps", 0.0, ["0.0", "(0, 1]"]),
    ("eps_negative", "adversarial.eps", -0.03, ["-0.03", "(0, 1]"]),
    ("step_size_over_one", "adversarial.step_size", 2.0, ["2.0", "(0, 1]"]),
    ("val_fraction_zero", "data.val_fraction", 0.0, ["0.0", "(0, 1)"]),
    ("download_string", "data.download", "no", ["'no'", "true or false"]),
    ("aa_batch_size_zero", "autoattack.batch_size", 0, ["got 0", ">= 1"]),
    ("aa_block_size_zero", "autoattack.block_size", 0, ["got 0", ">= 1"]),
    ("noise_rate_negative", "suites.noisy[0].rates[0]", -0.1, ["-0.1", "[0, 1)"]),
    ("noisy_wd_negative", "suites.noisy[0].wds[0]", -5e-4, ["-0.0005", "> 0"]),
    # a fixed λ of 0 is method none: TrainConfig refuses it, so params do too, before anything is submitted
    ("grid_wd_zero", "suites.grid[0].wds[0]", 0.0, ["got 0.0", "> 0", "method none"]),
    ("methods_and_shorthand", "suites.adversarial[0].methods", {"fixed": [1e-3]}, ["either methods or wds/dogs"]),
    ("methods_unknown", "suites.noisy[0]", {"dataset": "digits", "rates": [0.0], "methods": {"fixd": [1e-3]}},
     ["'fixd'", "did you mean 'fixed'", "top-level methods section"]),
    ("methods_empty", "suites.grid[0]", {"dataset": "digits", "name": "g", "lrs": [0.1], "methods": {}}, ["empty"]),
    ("methods_value", "suites.underfit[0]", {"dataset": "digits", "n_images": 4, "methods": {"awd": [0.1, 0.0]}},
     ["methods.awd[1]", "got 0.0", "> 0"]),
    ("plugin_path", "methods", {"sgdw": "examples.sgdw.SGDW"}, ["package.module:Class", "'examples.sgdw.SGDW'"]),
    ("plugin_builtin_name", "methods", {"awd": "examples.sgdw:SGDW"}, ["not a built-in method"]),
    ("noisy_dog_zero", "suites.noisy[0].dogs[0]", 0.0, ["0.0", "> 0"]),
    ("prune_amount_zero", "prune.amounts[0]", 0.0, ["0.0", "(0, 1)"]),
    ("prune_amount_negative", "prune.amounts[0]", -0.5, ["-0.5", "(0, 1)"]),
    ("prune_amounts_empty", "prune.amounts", [], ["empty grid"]),
    ("prune_amount_duplicate", "prune.amounts[1]", 0.5, ["duplicate grid value 0.5", "same as prune.amounts[0]"]),
    ("grid_wds_empty", "suites.grid[0].wds", [], ["empty grid"]),
    ("adversarial_dogs_empty", "suites.adversarial[0].dogs", [], ["empty grid"]),
    ("noisy_rates_empty", "suites.noisy[0].rates", [], ["empty grid"]),
    ("lr_sens_lrs_empty", "suites.lr_sensitivity[0].lrs", [], ["empty grid"]),
    ("grid_wd_exact_duplicate", "suites.grid[0].wds[2]", 5e-5, ["duplicate grid value 5e-05"]),
    ("adversarial_dog_duplicate", "suites.adversarial[0].dogs", [0.02, 0.02], ["duplicate grid value 0.02"]),
    ("noisy_rate_duplicate", "suites.noisy[0].rates[1]", 0.0, ["duplicate grid value 0.0"]),
    ("lr_sens_lr_duplicate", "suites.lr_sensitivity[0].lrs[1]", 0.01, ["duplicate grid value 0.01"]),
    ("grid_lr_string", "suites.grid[0].lrs[0]", "1e-2", ["'1e-2'", "number"]),
    ("grid_not_a_list", "suites.grid[0].lrs", 0.1, ["got 0.1", "list of numbers or {geomspace|linspace"]),
    ("linspace_num_zero", "suites.noisy[0].rates", {"linspace": [0.0, 0.4, 0]}, ["got 0", ">= 1"]),
    ("seed_string", "suites.natural[0].seeds[0]", "0", ["'0'", "integer"]),
    ("seed_negative", "suites.natural[0].seeds[0]", -1, ["-1", ">= 0"]),
    ("seed_bool", "suites.natural[0].seeds[0]", True, ["true", "boolean"]),
    ("lr_sens_seed_float", "suites.lr_sensitivity[0].seeds[0]", 0.5, ["0.5", "integer"]),
    ("unknown_dataset_no_close_match", "suites.grid[0].dataset", "mnist", ["'mnist'", "digits, cifar10, cifar100"]),
    ("unknown_section", "trian", {"lr": 0.1}, ["'trian'", "did you mean 'train'"]),
    ("unknown_suite", "suites.natrual", [], ["'natrual'", "did you mean 'natural'"]),
]


@pytest.mark.reliability
@pytest.mark.parametrize("path,value,expected", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_input_is_reported_with_key_value_and_rule(raw, path, value, expected):
    lines = error_lines(mutate(raw, path, value))
    hits = [ln for ln in lines if ln.startswith(f"params.yaml: {path}") and all(s in ln for s in expected)]
    assert hits, f"no line for {path} containing {expected}: {lines}"


@pytest.mark.reliability
@pytest.mark.parametrize("path,missing", [
    ("train", "train"),
    ("train.lr", "lr"),
    ("suites.underfit[0].wd", "wd"),
    ("suites.variants[0].runs[0].name", "name"),
    ("suites.natural[0].plateau", "plateau"),
])
def test_missing_required_key_is_named(raw, path, missing):
    parent = path.rsplit(".", 1)[0] if "." in path else "<top level>"
    lines = error_lines(mutate(raw, path, DELETE))
    assert any(ln.startswith(f"params.yaml: {parent}:") and f"missing required key(s): {missing}" in ln
               for ln in lines), lines


@pytest.mark.reliability
def test_cross_field_rules(raw):
    d = mutate(raw, "train.nesterov", True)
    d = mutate(d, "train.momentum", 0.0)
    assert any("train.nesterov" in ln and "momentum > 0" in ln for ln in error_lines(d))

    d = mutate(raw, "suites.grid", [raw["suites"]["grid"][0]] * 2)
    assert any("suites.grid[1].name" in ln and "'tiny'" in ln for ln in error_lines(d))

    d = mutate(raw, "suites.variants[0].runs[2].train", {"optimizer": "sgd"})
    assert any("runs[2].train.optimizer" in ln and "set it once" in ln for ln in error_lines(d))

    d = mutate(raw, "suites.variants[0].runs[1]", {"name": "x", "method": "fixed"})
    assert any("runs[1]" in ln and "missing required key(s): value" in ln for ln in error_lines(d))


@pytest.mark.reliability
def test_did_you_mean_for_unknown_keys(raw):
    d = mutate(raw, "train.lrr", 0.1)
    d = mutate(d, "suites.naturall", d["suites"].pop("natural"))
    lines = error_lines(d)
    assert any(ln.startswith("params.yaml: train.lrr:") and "did you mean 'lr'?" in ln for ln in lines), lines
    assert any(ln.startswith("params.yaml: suites.naturall:") and "did you mean 'natural'?" in ln for ln in lines)


@pytest.mark.reliability
def test_misplaced_keys_say_where_they_belong(raw):
    lines = error_lines(mutate(raw, "executor", {"kind": "slurm"}))
    assert any(ln.startswith("params.yaml: executor:") and "executor.yaml" in ln and "$AWD_EXECUTOR" in ln
               for ln in lines)
    lines = error_lines(mutate(raw, "train.wd", 5e-4))
    assert any("train.wd" in ln and "per study" in ln for ln in lines)
    lines = error_lines(mutate(raw, "train.eps", 0.03))
    assert any("train.eps" in ln and "adversarial section" in ln for ln in lines)


@pytest.mark.reliability
def test_all_errors_are_collected_one_per_line(raw):
    d = mutate(raw, "train.lr", -1.0)
    d = mutate(d, "autoattack.version", "fast")
    d = mutate(d, "suites.adversarial[0].dogs", [0.02, 0.03, -0.1])
    d = mutate(d, "suites.underfit[0].n_images", 0)
    lines = error_lines(d, source="cfg.yaml")
    assert len(lines) == 4
    assert all(ln.startswith("cfg.yaml: ") for ln in lines)
    for key in ("train.lr", "autoattack.version", "suites.adversarial[0].dogs[2]", "suites.underfit[0].n_images"):
        assert sum(f" {key}:" in ln for ln in lines) == 1, (key, lines)


@pytest.mark.reliability
def test_top_level_must_be_a_mapping(tmp_path):
    f = tmp_path / "p.yaml"
    for text, what in (("- a\n- b\n", "got list"), ("", "empty file")):
        f.write_text(text)
        with pytest.raises(ParamsError, match=f"{f}: <top level>: the file must be a mapping.*{what}"):
            load_params(f)


@pytest.mark.reliability
def test_malformed_yaml_gives_line_and_column(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("data:\n  root: x\ntrain:\n  lr: 0.1\n   epochs: 8\n")
    with pytest.raises(ParamsError) as exc:
        load_params(f)
    assert str(exc.value).startswith(f"{f}:5:10: invalid YAML")
    assert "line 5, column 10" in str(exc.value)


@pytest.mark.reliability
@pytest.mark.parametrize("text,where,what", [
    ("train:\n\tlr: 0.1\n", "2:1", "found character '\\t' that cannot start any token"),
    ("suites:\n  grid:\n    - lrs: [0.1, 0.2\n      wds: [1]\n", "4:10", "expected ',' or ']'"),
    ("train:\n  model: \"tiny\n  lr: 0.1\n", "4:1", "while scanning a quoted scalar"),
    ("train:\n  model: a: b\n", "2:11", "mapping values are not allowed here"),
], ids=["tab_indent", "unclosed_bracket", "unclosed_quote", "colon_in_value"])
def test_more_malformed_yaml_gives_line_and_column(tmp_path, text, where, what):
    f = tmp_path / "p.yaml"
    f.write_text(text)
    with pytest.raises(ParamsError) as exc:
        load_params(f)
    line, col = where.split(":")
    assert str(exc.value).startswith(f"{f}:{where}: invalid YAML") and what in str(exc.value)
    assert f"(line {line}, column {col})" in str(exc.value)


@pytest.mark.reliability
def test_duplicate_yaml_key_is_an_error(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("train:\n  lr: 0.1\n  lr: 0.2\n")
    with pytest.raises(ParamsError, match=r"p.yaml:3:3: .*duplicate key 'lr' \(first at line 2\)"):
        load_params(f)


@pytest.mark.reliability
def test_missing_file():
    with pytest.raises(ParamsError, match="nope.yaml: no such file"):
        load_params("nope.yaml")


def test_omitted_sections_take_defaults(raw):
    d = {k: v for k, v in raw.items() if k not in ("data", "adversarial", "autoattack", "prune")}
    d["train"] = {"model": "tiny", "epochs": 2, "batch_size": 32, "lr": 0.1}
    d["suites"] = {"grid": raw["suites"]["grid"]}
    p = validate(d)
    assert p.data.val_fraction == 0.1 and p.adversarial.train_steps == 7 and p.autoattack.n_test is None
    assert p.prune.amounts == (0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
    assert p.train["momentum"] == 0.9 and p.train["deterministic"] is True
    assert p.suites.natural == () and [s for s, _, _ in p.studies()] == ["grid"]


# --- run configs ------------------------------------------------------------------------------------------------


def test_base_run_config_has_every_run_config_key(raw):
    p = validate(raw)
    for suite, _, study in p.studies():
        cfg = base_run_config(p, study, adversarial=suite in ("adversarial", "variants"))
        assert tuple(cfg) == RUN_CONFIG_KEYS
    natural = base_run_config(p, p.suites.natural[0], adversarial=False)
    assert (natural["wd_method"], natural["wd"], natural["dog"], natural["noise_rate"]) == ("none", 0.0, 0.0, 0.0)
    assert natural["adversarial"] is False
    adv = base_run_config(p, p.suites.adversarial[0], adversarial=True)
    study_epochs = raw["suites"]["adversarial"][0].get("train", {}).get("epochs", raw["train"]["epochs"])
    assert adv["adversarial"] is True and adv["eps"] == raw["adversarial"]["eps"] and adv["epochs"] == study_epochs


def test_adversarial_params_do_not_change_natural_runs(raw):
    a = validate(raw)
    b = validate(mutate(mutate(raw, "adversarial.eps", 0.1), "adversarial.train_steps", 3))
    assert base_run_config(a, a.suites.natural[0], adversarial=False) == \
        base_run_config(b, b.suites.natural[0], adversarial=False)
    assert base_run_config(a, a.suites.adversarial[0], adversarial=True)["eps"] != \
        base_run_config(b, b.suites.adversarial[0], adversarial=True)["eps"]


def test_study_overrides_and_model_kw_reset(raw):
    d = mutate(raw, "train.model_kw", {"width": 4})
    d = mutate(d, "suites.underfit[0].train", {"model": "resnet32", "lr": 0.01})
    d = mutate(d, "suites.grid[0].train", {"epochs": 3})
    p = validate(d)
    under = resolve_train(p, p.suites.underfit[0])
    assert under["model"] == "resnet32" and under["model_kw"] == {} and under["lr"] == 0.01
    grid = resolve_train(p, p.suites.grid[0])
    assert grid["model_kw"] == {"width": 4} and grid["epochs"] == 3
    assert grid["dataset"] == "digits" and grid["val_fraction"] == 0.1 and grid["split_seed"] == 0
    grid["model_kw"]["width"] = 99  # a returned config is the caller's to mutate
    assert p.train["model_kw"] == {"width": 4}


def test_variant_runs_carry_effective_optimizer_and_epochs(raw):
    p = load_params(PAPER)
    [study] = p.suites.variants
    by_name = {r.name: r for r in study.runs}
    asam = by_name["DoG=0.022 ASAM 100ep"]
    assert (asam.optimizer, asam.epochs, asam.value) == ("asam", 100, 0.022)
    cfg = base_run_config(p, study, adversarial=True, overrides=asam.train)
    assert (cfg["optimizer"], cfg["epochs"], cfg["asam_rho"]) == ("asam", 100, 1.0)

    d = mutate(raw, "suites.variants[0].runs", [{"name": "plain", "method": "none"}])
    d = mutate(d, "suites.variants[0].train", {"epochs": 5, "optimizer": "asam"})
    [run] = validate(d).suites.variants[0].runs
    assert (run.optimizer, run.epochs, run.value, run.train) == ("asam", 5, 0.0, {})


@pytest.mark.parametrize("config", [EMBEDDED, PAPER], ids=["embedded", "paper"])
def test_library_accepts_every_base_run_config(config):
    try:
        from awd.train_config import TrainConfig
    except ImportError:
        pytest.skip("awd.train_config not importable yet")
    p = load_params(config)
    for suite, _, study in p.studies():
        runs = study.runs if suite == "variants" else [None]
        for run in runs:
            cfg = base_run_config(p, study, adversarial=suite in ("adversarial", "variants"),
                                  overrides=run.train if run else None)
            TrainConfig.from_dict(dict(cfg, wd_method="fixed", wd=5e-4))


def test_to_dict_is_plain_json(raw):
    import json

    d = mutate(raw, "suites.adversarial[0].dogs", {"geomspace": [0.04, 0.16, 3]})
    out = json.loads(json.dumps(to_dict(validate(d))))
    assert out["suites"]["adversarial"][0]["dogs"] == [0.04, 0.08, 0.16]


# --- data on disk -----------------------------------------------------------------------------------------------

CIFAR10 = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]


def _cifar_params(raw, tmp_path, download=False):
    d = mutate(raw, "suites.grid[0].dataset", "cifar10")
    d = mutate(d, "suites.underfit[0].dataset", "cifar100")
    d = mutate(d, "data", {"root": str(tmp_path), "download": download})
    return validate(d)


@pytest.mark.reliability
def test_check_data_missing_folders(raw, tmp_path):
    with pytest.raises(ParamsError) as exc:
        check_data(_cifar_params(raw, tmp_path))
    msg = str(exc.value)
    assert f"{tmp_path / 'cifar-10-batches-py'} does not exist (used by suites.grid[0])" in msg
    assert f"{tmp_path / 'cifar-100-python'} does not exist (used by suites.underfit[0])" in msg
    assert "data.download: true" in msg


@pytest.mark.reliability
def test_check_data_incomplete_folder_names_missing_files(raw, tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name in CIFAR10:
        if name not in ("data_batch_3", "batches.meta"):
            (folder / name).write_bytes(b"x")
    c100 = tmp_path / "cifar-100-python"
    c100.mkdir()
    for name in ("train", "test", "meta"):
        (c100 / name).write_bytes(b"x")
    with pytest.raises(ParamsError) as exc:
        check_data(_cifar_params(raw, tmp_path))
    [line] = str(exc.value).splitlines()
    assert f"{folder} is incomplete: missing data_batch_3, batches.meta" in line


def test_check_data_passes_when_complete_or_downloading(raw, tmp_path):
    check_data(_cifar_params(raw, tmp_path, download=True))  # nothing on disk, but download is on
    check_data(validate(raw))  # digits needs nothing
    for sub, names in (("cifar-10-batches-py", CIFAR10), ("cifar-100-python", ["train", "test", "meta"])):
        (tmp_path / sub).mkdir()
        for name in names:
            (tmp_path / sub / name).write_bytes(b"x")
    check_data(_cifar_params(raw, tmp_path))


@pytest.mark.reliability
def test_check_data_relative_root_uses_base(raw, tmp_path):
    p = validate(mutate(mutate(raw, "suites.grid[0].dataset", "cifar100"), "data", {"root": "raw"}))
    with pytest.raises(ParamsError, match=re.escape(str(tmp_path / "raw" / "cifar-100-python"))):
        check_data(p, base=tmp_path)


# --- one definition of a run config -----------------------------------------------------------------------------


def test_params_sections_take_their_fields_from_train_config():
    from awd.train_config import TrainConfig
    from pipeline.params import TRAIN_REQUIRED, DataParams, TrainOverrides, TrainSection

    for section in (TrainSection, TrainOverrides, DataParams):
        for name, field in section.model_fields.items():
            if name in ("root", "download"):
                continue
            ours = TrainConfig.model_fields[name]
            assert field.metadata == ours.metadata, name  # the same type, range and rule objects
            if section is TrainSection and name not in TRAIN_REQUIRED:
                assert field.get_default(call_default_factory=True) == ours.get_default(call_default_factory=True)
    assert set(TrainSection.model_fields) | {"dataset", "val_fraction", "split_seed", "noise_rate", "noise_seed",
                                              "wd_method", "wd", "dog", "adversarial", "eps", "step_size",
                                              "train_steps", "val_steps", "val_from_fraction", "bn_mode"} == set(TrainConfig.model_fields)


@pytest.mark.parametrize("key,ok,bad", [
    ("awd_ema", 1.0, 0.0),  # λ̄ ← (1−ema)·λ̄ + ema·λ: 1 is no averaging, 0 never moves λ̄ (awd.weight_decay agrees)
    ("eps", 1.0, 1.5),  # an L∞ radius on pixels in [0, 1]
    ("dog", 0.0, -0.1),  # 0 when the method is not AWD
])
def test_run_config_ranges(key, ok, bad):
    from awd.train_config import TrainConfig

    TrainConfig.from_dict({key: ok})
    with pytest.raises(ValueError, match=f"train config: {key}: must be"):
        TrainConfig.from_dict({key: bad})


def test_adversarial_training_needs_a_positive_radius():
    from awd.train_config import TrainConfig

    TrainConfig.from_dict({"adversarial": False, "eps": 0.0, "step_size": 0.0})  # a natural run's neutral values
    with pytest.raises(ValueError, match=r"eps: must be in \(0, 1\] for adversarial training, got 0.0"):
        TrainConfig.from_dict({"adversarial": True, "eps": 0.0})


def test_yaml_is_read_as_dvc_reads_it(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text(EMBEDDED.read_text().replace("download: false", "download: no"))  # YAML 1.2: a string
    with pytest.raises(ParamsError, match=r"data.download: must be true or false, got 'no'"):
        load_params(f)


def test_train_config_reports_every_bad_key_at_once():
    from awd.train_config import TrainConfig

    with pytest.raises(ValueError) as exc:
        TrainConfig.from_dict({"lr": -1, "epochs": 0, "lrr": 1, "wd_method": "awd", "dog": 0.0})
    lines = str(exc.value).splitlines()
    assert lines[:3] == ["train config: epochs: must be >= 1, got 0", "train config: lr: must be > 0, got -1",
                         "train config: lrr: unknown key 'lrr' (did you mean 'lr'?); allowed: " +
                         ", ".join(TrainConfig.model_fields)], lines


