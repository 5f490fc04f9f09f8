"""End to end: a user's weight-decay method added through params alone (issue 16's must-holds).

With the example plugin (examples/sgdw.py) named in params, `dvc repro` trains exactly its new units and its rows
appear in the tables and figures of the suites that list it; removing it removes its rows and retrains nothing; a
plugin that does not implement the interface, or names a missing module, is refused before anything is submitted.
"""

from __future__ import annotations

import copy
import json
import shutil

import pandas as pd
import pytest

from tests.e2e_util import ROOT, reduced_params, run, write_params

pytestmark = pytest.mark.e2e

KINDS = ("train", "autoattack", "prune")
SGDW = [1.0e-3]


def base_params() -> dict:
    """The reduced embedded default cut to the suites the plugin joins (adversarial: T3/F3 + AutoAttack;
    lr_sensitivity: T6/F12/F5 + pruning) and one that does not list it (noisy)."""
    p = reduced_params()
    p["suites"] = {k: p["suites"][k] for k in ("adversarial", "noisy", "lr_sensitivity")}
    return p


def with_sgdw(p: dict, path: str = "examples.sgdw:SGDW", name: str = "sgdw") -> dict:
    p = copy.deepcopy(p)
    p["methods"] = {name: path}
    adv = p["suites"]["adversarial"][0]
    adv["methods"] = {"fixed": adv.pop("wds"), "awd": adv.pop("dogs"), name: SGDW}
    lrs = p["suites"]["lr_sensitivity"][0]
    lrs["methods"] = {"fixed": [lrs.pop("wd")], "awd": [lrs.pop("dog")], name: SGDW}
    return p


def entries(repo) -> dict[str, set[str]]:
    return {kind: {p.name for p in (repo / "runs" / kind).glob("*/*") if (p / "manifest.json").exists()}
            for kind in KINDS}


def read(repo, rel):
    return json.loads((repo / rel).read_text())


def methods_in(repo, rel) -> set[str]:
    return set(pd.read_csv(repo / rel)["method"].dropna())


@pytest.fixture(scope="module")
def repo(warm_repo):
    repo = warm_repo  # the session's cold repro (tests/e2e/conftest.py), copied: base_params' units are all stored
    write_params(repo, base_params())
    shutil.copytree(ROOT / "examples", repo / "examples", ignore=shutil.ignore_patterns("__pycache__"))
    run(repo, "git", "add", "-A")
    run(repo, "git", "commit", "-qm", "examples")
    run(repo, "dvc", "repro")
    return repo


def test_naming_the_plugin_in_params_trains_exactly_its_units_and_shows_its_rows(repo):
    before = entries(repo)
    assert all(before.values()), before
    old_runs = {r["key"] for r in read(repo, "artifacts/train/runs.json")}
    write_params(repo, with_sgdw(base_params()))
    out = run(repo, "dvc", "repro")
    runs = read(repo, "artifacts/train/runs.json")
    plugin = [r for r in runs if r["label"].get("method") == "sgdw"]
    assert sorted((r["suite"], r["label"]["value"]) for r in plugin) == [("adversarial", 1e-3),
                                                                         ("lr_sensitivity", 1e-3)]
    assert all(r["status"] == "done" and r["config"]["wd_method"] == "examples.sgdw:SGDW" for r in plugin), plugin
    after = entries(repo)
    # the built-in runs (rewritten as `methods:` lists) keep their keys; the new train units are the plugin's
    assert {r["key"] for r in runs if r["label"].get("method") != "sgdw"} == old_runs
    assert after["train"] - before["train"] == {r["key"] for r in plugin}, out.stdout[-3000:]
    assert before["train"] <= after["train"] and before["autoattack"] <= after["autoattack"]
    assert len(after["prune"]) > len(before["prune"]) and len(after["autoattack"]) > len(before["autoattack"])
    # its rows in the tables and figures of the suites that list it, none elsewhere
    for rel in ("results/tables/T3.csv", "results/tables/T6.csv", "results/tables/F12.csv", "results/plots/F3.csv",
                "results/plots/F5.csv"):
        assert "sgdw" in methods_in(repo, rel), rel
    assert "sgdw" not in methods_in(repo, "results/plots/F4.csv")
    readme = (repo / "results" / "README.md").read_text()
    assert "AWD vs sgdw: higher AutoAttack accuracy" in readme and "λ_SGDW" in readme
    # the job imported the plugin from its code snapshot
    snap = [p for p in (repo / "runs" / "_code").glob("u*/*/*/examples/sgdw.py")]  # _code/u<uid>/<xx>/<digest>/
    assert len(snap) == 1 and snap[0].read_bytes() == (repo / "examples" / "sgdw.py").read_bytes()


def test_removing_the_plugin_removes_its_rows_and_retrains_nothing(repo):
    before = entries(repo)
    write_params(repo, base_params())
    run(repo, "dvc", "repro")
    assert entries(repo) == before
    assert not [r for r in read(repo, "artifacts/train/runs.json") if r["label"].get("method") == "sgdw"]
    for rel in ("results/tables/T3.csv", "results/tables/T6.csv", "results/plots/F3.csv"):
        assert "sgdw" not in methods_in(repo, rel), rel
    assert "sgdw" not in (repo / "results" / "README.md").read_text()


@pytest.mark.parametrize("path, message", [
    ("nosuchpkg.methods:Mine", "method 'mine' (nosuchpkg.methods:Mine): module 'nosuchpkg' not found"),
    ("examples.half:Half", "method 'mine' (examples.half:Half): missing apply_(), state_dict(), load_state_dict()"),
])
def test_a_plugin_that_cannot_be_used_is_refused_before_anything_is_submitted(repo, path, message):
    (repo / "examples" / "half.py").write_text(
        "class Half:\n    name, param, param_label, sweep = 'half', 'wd', 'λ', 'log'\n\n    def dog(self):\n"
        "        return 0\n")
    before = entries(repo)
    logs = set((repo / "runs" / "_logs").rglob("*"))
    write_params(repo, with_sgdw(base_params(), path, "mine"))
    out = run(repo, "dvc", "repro", check=False)
    assert out.returncode != 0
    assert "suites.adversarial[0].methods.mine" in out.stderr and message in out.stderr, out.stderr[-3000:]
    assert entries(repo) == before and set((repo / "runs" / "_logs").rglob("*")) == logs  # nothing submitted
    write_params(repo, base_params())
