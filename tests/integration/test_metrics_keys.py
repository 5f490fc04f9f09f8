"""results/metrics.json and results/headline.json: ASCII snake_case keys a DVC user can sort and filter, a headline
of at most 30 keys that `dvc metrics show|diff` and `dvc exp show` print, the full file still diffable on request."""

from __future__ import annotations

import csv
import io
import json

import pytest
import yaml

from pipeline.aggregate import aggregate
from pipeline.report.metric_keys import (
    HEADLINE_MAX_KEYS,
    KEY,
    NOT_SHOWN,
    MetricsKeyError,
    bad_keys,
    count_keys,
    dvc_metrics,
    headline,
    level_key,
    number_key,
)
from tests.e2e_util import ROOT, run
from tests.unit.test_aggregate import build_full


def joined(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}.{k}" if prefix else k
        out.update(joined(v, key) if isinstance(v, dict) else {key: v})
    return out


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("keys")
    params, arts, art = build_full(tmp, with_images=False)
    out = tmp / "results"
    m = aggregate(params, arts, out)
    return out, m, art


def test_every_key_of_a_rendered_aggregate_matches_the_dvc_key_pattern(rendered):
    out, m, _ = rendered
    full = json.loads((out / "metrics.json").read_text())
    head = json.loads((out / "headline.json").read_text())
    assert full == m
    for d in (full, head):
        keys = joined(d)
        assert [k for k in keys if not KEY.fullmatch(k)] == []
        assert keys and all(k.isascii() for k in keys)
    # the report's labels as keys: T3's selections, T2's paired rows, Table 4's run names, the grid's axes
    keys = joined(full)
    assert keys["t3.cifar10.by_val.awd_minus_fixed.autoattack"] == pytest.approx(13.0)
    assert keys["t3.cifar10.by_test.fixed.autoattack"] == pytest.approx(45.0)
    assert "t2.cifar10.awd_minus_fixed.weight_norm" in keys
    assert "t4.cifar100.adadecay_lambda_0p002.autoattack" in keys and "t4.cifar100.dog_0p022_asam.autoattack" in keys
    assert "grid.digits.tiny.fixed.lr_0p01.wd_0p00005.val_acc" in keys and "f12.cifar100.awd.lr_0p1.weight_norm" in keys
    assert "noisy.digits.rate_0p2.fixed_0p0005.test_acc" in keys
    # an interval is two numbers DVC shows and compares (it drops lists)
    assert keys["claims.higher_autoattack.cifar10.ci_low"] == pytest.approx(13.0)
    assert not [k for k, v in keys.items() if isinstance(v, list) and not k.startswith("environment.")]


def test_headline_is_the_claims_and_counters_each_a_key_of_metrics_json(rendered):
    out, m, _ = rendered
    head = json.loads((out / "headline.json").read_text())
    keys, full = joined(head), joined(m)
    assert 0 < len(keys) <= HEADLINE_MAX_KEYS
    left_out = keys.pop(NOT_SHOWN, 0)  # the one headline key of its own: how many claim rows did not fit
    assert all(full[k] == v for k, v in keys.items())  # the same key, the same value in both files
    assert keys["claims.higher_autoattack.cifar10.verdict"] == "holds"
    assert keys["claims.lr_sensitivity.cifar100.estimate"] == pytest.approx(-50.0)
    assert keys["runs_diverged"] == 0 and keys["units_failed"] == 0
    claim_datasets = {k.rsplit(".", 1)[0] for k in full if k.startswith("claims.") and k.endswith(".verdict")}
    shown = {k.rsplit(".", 1)[0] for k in keys if k.startswith("claims.")}
    assert shown <= claim_datasets and len(shown) + left_out == len(claim_datasets)
    assert {k.rsplit(".", 1)[1] for k in keys if k.startswith("claims.")} == {"verdict", "estimate"}


def test_number_keys_read_back_as_the_same_value():
    cases = {"0.01": "0p01", "5e-05": "0p00005", "1e-2": "0p01", "0.015": "0p015", "15e-3": "0p015", "1": "1",
             "1.0": "1", "100": "100", "1e6": "1000000", "-0.2": "m0p2", "0": "0", "0.0": "0"}
    for text, want in cases.items():
        assert number_key(text) == want, text
        assert float(want.replace("p", ".").replace("m", "-")) == float(text)


def test_labels_of_the_earlier_format_give_the_same_keys():
    """results/ written before the change convert without their artifacts: old key -> new key is a function."""
    raw = {  # the report's labels, as pipeline.report.readme.metrics nests them
        "T3": {"digits": {"val PGD-20 (ours)": {"awd − fixed": {"autoattack": -1.5}},
                          "test AutoAttack (paper's)": {"awd": {"nat_acc": 99.2}}}},
        "T4": {"digits": {"λ_wd=0.015 SGD": {"autoattack": 58.6}, "DoG=0.08 ASAM": {"nat_acc": 98.1},
                          "AdaDecay*": {"nat_acc": 98.0}, "λ_wd=0.00281* ASAM 100ep": {"nat_acc": 97.0}}},
        "F12": {"digits": {"awd": {"0.1": {"weight_norm": 9.5}, "1": {"weight_norm": 7.0}}}},
        "grid": {"cifar10": {"wrn28-10": {"fixed": {"lr=0.01,wd=5e-05": {"val_acc": 90.0},
                                                    "lr=0.01,wd=0.0005": {"val_acc": 91.0}}}}},
        "noisy": {"digits": {"rate=0.2": {"fixed=0.005": {"test_acc": 86.7}}}},
        "claims": {"pruning": {"cifar10 (study 1)": {"ci": [-59.3, 37.8], "verdict": "inconclusive"}}},
        "dog_estimate": {"digits": {"seed0": {"plateau_epoch_1based": 29}}},
    }
    earlier = {  # the same numbers as the previous renderer wrote them (results/metrics.json before this change)
        "T3": {"digits": {"val PGD-20 (ours)": {"awd − fixed": {"autoattack": -1.5}},
                          "test AutoAttack (paper's)": {"awd": {"nat_acc": 99.2}}}},
        "T4": {"digits": {"λ_wd_15e-3 SGD": {"autoattack": 58.6}, "DoG_8e-2 ASAM": {"nat_acc": 98.1},
                          "AdaDecay*": {"nat_acc": 98.0}, "λ_wd_281e-5* ASAM 100ep": {"nat_acc": 97.0}}},
        "F12": {"digits": {"awd": {"lr_1e-1": {"weight_norm": 9.5}, "lr_1": {"weight_norm": 7.0}}}},
        "grid": {"cifar10": {"wrn28-10": {"fixed": {"lr_1e-2": {"wd_5e-5": {"val_acc": 90.0},
                                                                "wd_5e-4": {"val_acc": 91.0}}}}}},
        "noisy": {"digits": {"rate_2e-1": {"fixed_5e-3": {"test_acc": 86.7}}}},
        "claims": {"pruning": {"cifar10 (study 1)": {"ci": [-59.3, 37.8], "verdict": "inconclusive"}}},
        "dog_estimate": {"digits": {"seed0": {"plateau_epoch_1based": 29}}},
    }
    new = dvc_metrics(raw)
    assert dvc_metrics(earlier) == new
    assert dvc_metrics(new) == new  # idempotent: today's keys are their own keys
    assert joined(new) == {
        "t3.digits.by_val.awd_minus_fixed.autoattack": -1.5, "t3.digits.by_test.awd.nat_acc": 99.2,
        "t4.digits.wd_0p015_sgd.autoattack": 58.6, "t4.digits.dog_0p08_asam.nat_acc": 98.1,
        "t4.digits.adadecay.nat_acc": 98.0, "t4.digits.wd_0p00281_asam_100ep.nat_acc": 97.0,
        "f12.digits.awd.lr_0p1.weight_norm": 9.5, "f12.digits.awd.lr_1.weight_norm": 7.0,
        "grid.cifar10.wrn28_10.fixed.lr_0p01.wd_0p00005.val_acc": 90.0,
        "grid.cifar10.wrn28_10.fixed.lr_0p01.wd_0p0005.val_acc": 91.0,
        "noisy.digits.rate_0p2.fixed_0p005.test_acc": 86.7,
        "claims.pruning.cifar10_study_1.ci_low": -59.3, "claims.pruning.cifar10_study_1.ci_high": 37.8,
        "claims.pruning.cifar10_study_1.verdict": "inconclusive",
        "dog_estimate.digits.seed0.plateau_epoch_1based": 29,
    }


def test_a_rendered_aggregate_is_a_fixed_point_of_the_conversion(rendered):
    _, m, _ = rendered
    assert dvc_metrics(m) == m


def test_committed_results_carry_the_keys_and_headline_the_renderer_writes():
    full = json.loads((ROOT / "results" / "metrics.json").read_text())
    head = json.loads((ROOT / "results" / "headline.json").read_text())
    assert bad_keys(full) == [] and bad_keys(head) == []
    assert dvc_metrics(full) == full
    assert head == headline(full)
    assert count_keys(head) <= HEADLINE_MAX_KEYS


def test_two_labels_making_one_key_is_an_error_naming_both():
    with pytest.raises(MetricsKeyError, match=r"'wrn28-10' and 'wrn28_10' both become the key grid\.c10\.wrn28_10"):
        dvc_metrics({"grid": {"c10": {"wrn28-10": {"a": 1.0}, "wrn28_10": {"b": 2.0}}}})
    with pytest.raises(MetricsKeyError, match=r"'Fixed' and 'fixed' both become the key t2\.fixed"):
        dvc_metrics({"T2": {"Fixed": 1.0, "fixed": 2.0}})
    with pytest.raises(MetricsKeyError, match="label '数字' has no ASCII letter or digit"):
        level_key("数字")


def test_headline_keeps_to_its_budget_in_the_papers_order_and_counts_what_it_left_out():
    datasets = [f"ds{i}" for i in range(4)]
    claims = {c: {ds: {"verdict": "holds", "estimate": 1.0, "n": 3} for ds in datasets}
              for c in ("fits_fewer", "smaller_norm", "pruning", "label_noise", "lr_sensitivity", "higher_autoattack",
                        "pruning_vs_sgdw")}
    head = headline({"claims": claims, "runs_diverged": 1, "units_failed": 0, "grid": {"x": 1.0}})
    keys = joined(head)
    # 2 counters, NOT_SHOWN and 13 claim × dataset entries of 2 keys: 29 (a 14th entry would make 31); 24 in all
    assert len(keys) == 29 <= HEADLINE_MAX_KEYS
    assert head["runs_diverged"] == 1 and "grid" not in head and "pruning_vs_sgdw" not in head["claims"]
    assert head[NOT_SHOWN] == 24 - 13
    assert list(head["claims"]) == ["smaller_norm", "higher_autoattack", "lr_sensitivity", "pruning"]
    assert list(head["claims"]["pruning"]) == ["ds0"]
    small = headline({"claims": {"pruning": claims["pruning"]}, "runs_diverged": 0, "units_failed": 0})
    assert NOT_SHOWN not in small and count_keys(small) == 2 + 2 * len(datasets)


def aggregate_stage_outputs() -> tuple[list, list]:
    stage = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["aggregate"]
    return stage.get("outs", []), stage.get("metrics", [])


def test_dvc_prints_the_headline_and_diffs_the_full_file_on_request(tmp_path):
    """Two commits of a rendered aggregate in a git + DVC repo whose stage declares results/ as dvc.yaml does."""
    outs, metrics = aggregate_stage_outputs()
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"aggregate": {
        "cmd": "true", "outs": outs, "metrics": metrics}}}))
    for cmd in (("git", "init", "-q"), ("git", "config", "user.email", "t@example.com"),
                ("git", "config", "user.name", "t"), ("dvc", "init", "-q")):
        run(repo, *cmd)
    params, arts, art = build_full(tmp_path / "a", with_images=False)
    aggregate(params, arts, repo / "results")
    run(repo, "git", "add", "-A")
    run(repo, "git", "commit", "-qm", "A")
    # B: one grid cell better, one adversarial AWD run's AutoAttack accuracy lower (a claim's estimate moves)
    cell = next(r for r in art.runs if r["suite"] == "grid" and r["label"].get("lr") == 0.1
                and r["label"].get("wd") == 5e-4)
    cell["metrics"]["val_acc"] += 0.05
    attack = next(a for a in art.attacks if a["dataset"] == "cifar10" and a["robust_acc"] == 0.50)
    attack["robust_acc"] = 0.44
    art.write()
    aggregate(params, arts, repo / "results")
    run(repo, "git", "add", "-A")
    run(repo, "git", "commit", "-qm", "B")

    shown = json.loads(run(repo, "dvc", "metrics", "show", "--json").stdout)
    files = shown[""]["data"]
    assert list(files) == ["results/headline.json"], list(files)
    head = files["results/headline.json"]["data"]
    assert 0 < count_keys(head) <= HEADLINE_MAX_KEYS and bad_keys(head) == []

    diff = run(repo, "dvc", "metrics", "diff", "HEAD~1", "HEAD").stdout
    rows = [line for line in diff.splitlines()[1:] if line.strip()]
    assert rows and all(line.startswith("results/headline.json ") for line in rows), diff
    assert any("claims.higher_autoattack.cifar10.estimate" in line for line in rows), diff
    assert "grid." not in diff and len(rows) <= HEADLINE_MAX_KEYS

    cells = run(repo, "dvc", "metrics", "diff", "HEAD~1", "HEAD", "--targets", "results/metrics.json").stdout
    assert "grid.digits.tiny.fixed.lr_0p1.wd_0p0005.val_acc" in cells, cells
    assert "results/headline.json" not in cells

    table = list(csv.reader(io.StringIO(run(repo, "dvc", "exp", "show", "--csv").stdout)))
    columns = [c for c in table[0] if c not in ("Experiment", "rev", "typ", "Created", "parent", "State", "Executor")]
    assert sorted(columns) == sorted(joined(head)), columns
