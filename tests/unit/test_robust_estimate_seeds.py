"""Issue 22's options: a cheaper robust estimate (autoattack version custom + attacks) and the noisy / underfit
suites' seeds. Each is validated with a clear error and changes unit keys only where it changes the work."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from pipeline.params import ParamsError, validate
from pipeline.plan import Planner
from pipeline.suites import independent_runs
from pipeline.train import unit_for

ROOT = Path(__file__).resolve().parents[2]


def raw(name="configs/paper.yaml") -> dict:
    return yaml.safe_load((ROOT / name).read_text())


def _errors(d: dict) -> str:
    with pytest.raises(ParamsError) as exc:
        validate(d)
    return str(exc.value)


def _aa(**kw) -> dict:
    d = raw()
    d["autoattack"] = {k: v for k, v in {**d["autoattack"], **kw}.items() if v is not None}
    return d


def test_attack_names_match_the_library():
    from awd.autoattack import AA_ATTACKS, AA_VERSIONS
    from pipeline.params.sections import AUTOATTACK_ATTACKS, AUTOATTACK_VERSIONS

    assert AUTOATTACK_ATTACKS == AA_ATTACKS and AUTOATTACK_VERSIONS == AA_VERSIONS


@pytest.mark.parametrize("kw, expected", [
    ({"version": "custom"}, ["autoattack.attacks", "version: custom needs attacks", "apgd-ce"]),
    ({"version": "custom", "attacks": []}, ["autoattack.attacks", "version: custom needs attacks"]),
    ({"attacks": ["apgd-ce"]}, ["autoattack.attacks", "only read with version: custom", "'standard'"]),
    ({"version": "custom", "attacks": ["apgd-ce", "pgd"]}, ["autoattack.attacks[1]", "'pgd'", "apgd-t"]),
    ({"version": "custom", "attacks": ["apgd-t", "apgd-t"]}, ["autoattack.attacks", "duplicate"]),
    ({"version": "fast"}, ["autoattack.version", "'fast'", "custom"]),
])
def test_bad_robust_estimate_is_named_with_allowed_values(kw, expected):
    text = _errors(_aa(**kw))
    for piece in expected:
        assert piece in text, (piece, text)


def test_custom_attacks_enter_the_keys_and_the_estimate_name_only_when_custom():
    standard = validate(_aa())
    assert standard.autoattack.estimate() == "AutoAttack standard"
    custom = validate(_aa(version="custom", attacks=["apgd-ce", "apgd-t"]))
    assert custom.autoattack.estimate() == "AutoAttack custom (apgd-ce + apgd-t)"
    spec = next(s for s in independent_runs(standard) if s.suite == "adversarial")
    rec = {"key": "k" * 64, "suite": spec.suite, "dataset": spec.dataset, "label": spec.label, "config": spec.config}
    import pipeline.plan as plan

    orig = plan.test_size
    plan.test_size = lambda *a: 1000  # no data on disk: the block layout alone
    try:
        s_units, c_units = (Planner(p).attack_units(rec) for p in (standard, custom))
    finally:
        plan.test_size = orig
    assert all("attacks" not in u.config for u in s_units)
    assert all(u.config["attacks"] == ["apgd-ce", "apgd-t"] for u in c_units)
    assert {u.key for u in s_units}.isdisjoint(u.key for u in c_units)


def _runs(d: dict, suite: str):
    params = validate(d)
    return params, [s for s in independent_runs(params) if s.suite == suite]


@pytest.mark.parametrize("suite", ["noisy", "underfit"])
def test_seeds_multiply_the_runs_and_leave_the_unset_keys_alone(suite):
    d = raw("params.yaml")
    d["suites"][suite][0].pop("seeds", None)
    params, before = _runs(d, suite)
    assert all("seed" not in s.label for s in before)
    d2 = copy.deepcopy(d)
    d2["suites"][suite][0]["seeds"] = [0, 1, 2]
    params2, after = _runs(d2, suite)
    assert len(after) == 3 * len(before)
    assert sorted({s.label["seed"] for s in after}) == [0, 1, 2]
    assert all(s.config["seed"] == s.label["seed"] for s in after)
    # seed 0 is the train section's seed: those runs are the runs of before, key for key
    assert {unit_for(s, params).key for s in before} == {unit_for(s, params2).key for s in after if s.label["seed"] == 0}


@pytest.mark.parametrize("seeds, expected", [([], "empty"), ([1, 1], "duplicate"), ([-1], ">= 0")])
def test_bad_suite_seeds_are_named(seeds, expected):
    d = raw("params.yaml")
    d["suites"]["noisy"][0]["seeds"] = seeds
    text = _errors(d)
    assert "suites.noisy[0].seeds" in text and expected in text.lower(), text
