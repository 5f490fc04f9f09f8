"""The dataflow through the real stages (`dvc repro` of the reduced embedded default, local executor): the train stage
submits every model's evaluations early under the keys the attack/prune stages collect, and an edit of the
`autoattack` params between the stages leaves the early units unused (the attack stage computes and collects the
edited ones, and nothing else)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time

import pytest

from tests.e2e_util import env, make_repo, reduced_params, run, write_params

pytestmark = pytest.mark.e2e

KEYS = textwrap.dedent("""
    import json, sys
    from pipeline.attack import units_for as attack_units
    from pipeline.prune import unit_for as prune_unit
    from pipeline.outcomes import usable
    from pipeline.params import load_params
    from pipeline.suites import ATTACKED_SUITES, PRUNED_SUITES
    from pipeline.trained_runs import trained_runs
    params = load_params("params.yaml")
    out = {"autoattack": sorted({u.key for r in filter(usable, trained_runs(ATTACKED_SUITES))
                                 for u in attack_units(r, params)}),
           "prune": sorted({prune_unit(r, params).key for r in filter(usable, trained_runs(PRUNED_SUITES))})}
    json.dump(out, sys.stdout)
""")


def stage_keys(repo) -> dict[str, list[str]]:
    """The evaluation keys the attack and prune stages compute from runs.json and params.yaml, as they run."""
    done = subprocess.run([sys.executable, "-c", KEYS], cwd=repo, env=env(), capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def entries(repo, kind: str, done: bool) -> set[str]:
    root = repo / "runs" / kind
    return {p.parent.name for p in root.glob("*/*/manifest.json")} if done else \
        {p.name for p in root.glob("*/*") if p.is_dir()}


def test_train_stage_submits_evaluations_early_and_an_autoattack_edit_leaves_them_unused(tmp_path):
    repo = make_repo(tmp_path)
    out = run(repo, "dvc", "repro", "train")
    # the train stage handed its models' evaluations on: their entries exist (running or done) once it returns
    assert entries(repo, "autoattack", done=False) and entries(repo, "prune", done=False), out.stderr[-3000:]
    early = stage_keys(repo)
    # every evaluation the later stages need was handed on by the train stage, under the same keys
    deadline = time.time() + 300  # a safety limit only: the early jobs finish on their own
    while not all(entries(repo, k, done=True) >= set(early[k]) for k in early) and time.time() < deadline:
        time.sleep(1.0)
    assert all(entries(repo, k, done=True) >= set(early[k]) for k in early), "early units missing"
    assert all(len(v) > 0 for v in early.values())

    params = reduced_params()
    params["autoattack"]["seed"] = 7  # edited after the train stage ran: new AutoAttack keys
    write_params(repo, params)
    out = run(repo, "dvc", "repro", "attack")
    edited = stage_keys(repo)["autoattack"]
    assert not set(edited) & set(early["autoattack"])
    assert entries(repo, "autoattack", done=True) >= set(edited)
    # what the stage collected is exactly the edited units' results, block by block
    results = json.loads((repo / "artifacts" / "attack" / "results.json").read_text())
    by_train: dict[str, list[dict]] = {}
    for key in edited:
        entry = next((repo / "runs" / "autoattack").glob(f"*/{key}"))
        config = json.loads((entry / "config.json").read_text())
        assert config["seed"] == 7
        by_train.setdefault(config["train_key"], []).append(json.loads((entry / "result.json").read_text()))
    for rec in (r for r in results if "correct" in r):
        blocks = sorted(by_train[rec["key"]], key=lambda b: b["start"])
        assert rec["correct"] == "".join(b["correct"] for b in blocks)
