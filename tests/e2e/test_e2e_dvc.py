"""End to end: `dvc repro` of the reduced embedded default in a throwaway git + DVC repo."""

from __future__ import annotations

import json
import re

import pytest

from tests.e2e_util import reduced_params, run, train_entries, write_params

pytestmark = pytest.mark.e2e

TABLES = ("T2", "T3", "T4", "T5", "T6", "F12")
# every figure of the paper has its section; the reduced default draws these (F8-F11 would repeat F4-F6 there: each
# section says so and links its plot data instead)
SECTIONS = [f"F{i}" for i in range(1, 12)]
FIGURES = {"F1", "F2", "F3", "F4", "F5", "F6", "F7"}
VERDICTS = {"holds", "does not hold", "inconclusive", "not testable here"}


@pytest.fixture(scope="module")
def repo(warm_repo):
    return warm_repo  # the session's cold repro (tests/e2e/conftest.py), copied


def test_cold_repro_builds_every_table_and_plot(repo):
    for table in TABLES:
        assert (repo / "results" / "tables" / f"{table}.md").stat().st_size > 0, table
        assert (repo / "results" / "tables" / f"{table}.csv").exists(), table
    report = (repo / "results" / "README.md").read_text()
    linked = re.findall(r"!\[(F\d+)\]\(plots/(F\d+)\.png\)", report)
    assert {f for f, _ in linked} >= FIGURES, sorted(linked)
    for name, _ in linked:  # every figure the report shows is a real PNG beside its vector PDF and its data
        assert (repo / "results" / "plots" / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        assert (repo / "results" / "plots" / f"{name}.pdf").read_bytes()[:5] == b"%PDF-", name
    assert all(f"### {name}" in report for name in SECTIONS) and "### T3" in report
    metrics = json.loads((repo / "results" / "metrics.json").read_text())
    assert {"claims", "t2", "t3", "t4", "t5", "grid", "noisy", "lr_sensitivity"} <= set(metrics), sorted(metrics)
    verdicts = [row["verdict"] for per_dataset in metrics["claims"].values() for row in per_dataset.values()]
    assert verdicts and set(verdicts) <= VERDICTS, metrics["claims"]
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
