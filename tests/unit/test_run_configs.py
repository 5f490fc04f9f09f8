"""The runs and run configs params produce: unchanged by refactors of the schema (a committed fixture), the same
whether a study lists `methods:` or the wds/dogs (wd/dog) shorthands, and a plugin method's runs beside them."""

from __future__ import annotations

import copy
import json

import pytest
import yaml

from pipeline.params import ParamsError, load_params, validate
from pipeline.suites import independent_runs
from tests.run_config_digest import FIXTURE, ROOT, digests

FILES = ("params.yaml", "configs/paper.yaml")
SHORT = {"wds": "fixed", "dogs": "awd", "wd": "fixed", "dog": "awd"}


@pytest.mark.parametrize("name", FILES)
def test_runs_and_configs_match_the_fixture(name):
    fixture = json.loads(FIXTURE.read_text())[name]
    assert digests(ROOT / name) == fixture, (
        f"the runs of {name} differ from tests/fixtures/run_configs.json; if they changed on purpose (a new grid "
        "value), rewrite the fixture: python -m tests.run_config_digest")


def _as_methods(raw: dict) -> dict:
    """The same params with every shorthand written as `methods: {fixed: [...], awd: [...]}`."""
    out = copy.deepcopy(raw)
    for suite, studies in out["suites"].items():
        for study in studies or ():
            if suite in ("natural", "variants"):
                continue
            methods = {}
            for key, method in SHORT.items():
                if key in study:
                    value = study.pop(key)
                    methods[method] = value if isinstance(value, (list, dict)) else [value]
            study["methods"] = methods
    return out


def _runs(params):
    return [(s.suite, s.study, s.dataset, s.label, s.config) for s in independent_runs(params)]


@pytest.mark.parametrize("name", FILES)
def test_methods_form_gives_the_same_runs_as_the_shorthands(name):
    raw = yaml.safe_load((ROOT / name).read_text())
    short, generic = load_params(ROOT / name), validate(_as_methods(raw))
    assert _runs(generic) == _runs(short)
    assert generic.suites.adversarial[0].wds == short.suites.adversarial[0].wds  # the shorthands mirror methods
    assert generic.suites.underfit[0].dog == short.suites.underfit[0].dog


def test_plugin_method_runs_carry_its_class_path_and_value():
    raw = _as_methods(yaml.safe_load((ROOT / "params.yaml").read_text()))
    raw["methods"] = {"sgdw": "examples.sgdw:SGDW"}
    raw["suites"]["adversarial"][0]["methods"]["sgdw"] = {"geomspace": [1e-3, 1e-2, 3]}
    raw["suites"]["underfit"][0]["methods"]["sgdw"] = [5e-3]
    before = _runs(load_params(ROOT / "params.yaml"))
    after = independent_runs(validate(raw))
    plugin = [s for s in after if s.label.get("method") == "sgdw"]
    assert sorted({(s.suite, s.label["value"]) for s in plugin}) == [  # a set: the underfit study has seeds
        ("adversarial", 0.001), ("adversarial", 0.00316228), ("adversarial", 0.01), ("underfit", 0.005)]
    for s in plugin:
        assert (s.config["wd_method"], s.config["wd"], s.config["dog"]) == ("examples.sgdw:SGDW", s.label["value"], 0)
    assert [r for r in _runs_of(after) if r[3].get("method") != "sgdw"] == before  # nobody else's runs change


def _runs_of(specs):
    return [(s.suite, s.study, s.dataset, s.label, s.config) for s in specs]


def test_an_unnamed_plugin_and_both_forms_are_refused_with_every_error():
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["suites"]["adversarial"][0]["methods"] = {"sgdw": [1e-3]}  # beside wds/dogs, and sgdw is not named
    raw["suites"]["noisy"][0] = {"dataset": "digits", "rates": [0.0], "methods": {"sgdw": [1e-3]}}
    with pytest.raises(ParamsError) as exc:
        validate(raw)
    lines = str(exc.value).splitlines()
    assert any(ln.startswith("params.yaml: suites.adversarial[0].methods: give either methods or wds/dogs")
               for ln in lines), lines
    assert any(ln.startswith("params.yaml: suites.noisy[0].methods.sgdw: unknown weight-decay method 'sgdw'")
               and "top-level methods section" in ln for ln in lines), lines
