"""End to end: `dvc repro` of the reduced embedded default in a throwaway git + DVC repo."""

from __future__ import annotations

import json

import pytest

from tests.e2e_util import make_repo, reduced_params, run, train_entries, write_params

pytestmark = pytest.mark.e2e

TABLES = ("T2", "T3", "T4", "T5", "T6", "F12")


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    repo = make_repo(tmp_path_factory.mktemp("e2e"))
    run(repo, "dvc", "repro")
    return repo


def test_cold_repro_builds_every_table_and_plot(repo):
    for table in TABLES:
        assert (repo / "results" / "tables" / f"{table}.md").stat().st_size > 0, table
        assert (repo / "results" / "tables" / f"{table}.csv").exists(), table
    assert list((repo / "results" / "plots").glob("*.png"))
    report = (repo / "results" / "README.md").read_text()
    assert "T3" in report and "F3" in report
    metrics = json.loads((repo / "results" / "metrics.json").read_text())
    assert metrics
    runs = json.loads((repo / "artifacts" / "train" / "runs.json").read_text())
    assert {r["suite"] for r in runs} == {"natural", "grid", "adversarial", "variants", "noisy", "lr_sensitivity",
                                         "underfit"}
    attacked = json.loads((repo / "artifacts" / "attack" / "results.json").read_text())
    assert attacked and all(r["n"] == 20 and 0 <= r["robust_acc"] <= r["clean_acc"] for r in attacked)


def test_second_repro_is_a_noop(repo):
    before, lock = train_entries(repo), (repo / "dvc.lock").read_bytes()
    out = run(repo, "dvc", "repro").stdout
    # nothing pending in the run store (pending/*.txt as the stages wrote them): no stage runs, not even a driver
    assert "Stage 'prepare' didn't change, skipping" in out and "Stage 'aggregate' didn't change, skipping" in out
    assert "Running stage" not in out, out[-3000:]
    assert train_entries(repo) == before and (repo / "dvc.lock").read_bytes() == lock
    assert run(repo, "dvc", "status").stdout.strip() == "Data and pipelines are up to date."


def test_one_edited_grid_value_trains_exactly_one_run_and_metrics_diff_shows_it(repo):
    run(repo, "git", "add", "-A")
    run(repo, "git", "commit", "-qm", "results")
    before = train_entries(repo)
    params = reduced_params()
    params["suites"]["grid"][0]["wds"] = [5.0e-4]
    params["suites"]["grid"][0]["lrs"] = [0.05, 0.2]  # 0.1 -> 0.2: one new cell
    write_params(repo, params)
    out = run(repo, "dvc", "repro")
    new = train_entries(repo) - before
    assert len(new) == 1, (new, out.stdout[-3000:])
    # every cell is in metrics.json, which is not a DVC metrics file (headline.json is): compared on request
    diff = run(repo, "dvc", "metrics", "diff", "--targets", "results/metrics.json").stdout
    # the new cell and the dropped one, one key level per grid axis (metrics.json keys hold no '.')
    assert "grid.digits.tiny.fixed.lr_0p2.wd_0p0005.val_acc" in diff, diff
    assert "grid.digits.tiny.fixed.lr_0p1.wd_0p0005.val_acc" in diff, diff
    assert "lr_0p05" not in diff, diff  # unchanged cells are not reported


def test_dvc_exp_run_set_param_reruns_only_what_depends_on_it(repo):
    run(repo, "git", "add", "-A")
    run(repo, "git", "commit", "-qm", "edited grid")
    before = train_entries(repo)
    out = run(repo, "dvc", "exp", "run", "-S", "prune.amounts=[0.5,0.8]")
    # only what depends on prune.amounts runs: train's deps are unchanged, so nothing is trained again
    assert "Running stage 'prune'" in out.stdout and "Stage 'prepare' didn't change" in out.stdout, out.stdout[-2000:]
    assert "Stage 'train' didn't change" in out.stdout, out.stdout[-2000:]
    assert train_entries(repo) == before
    pruned = json.loads((repo / "artifacts" / "prune" / "results.json").read_text())
    assert sorted({r["amount"] for r in pruned}) == [0.0, 0.5, 0.8]
    assert "prune.amounts" in run(repo, "dvc", "exp", "show", "--csv").stdout
