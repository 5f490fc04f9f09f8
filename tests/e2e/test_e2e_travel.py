"""Results that travel, end to end on the reduced embedded default: `awd-bench diff` between two commits, a campaign
shared through a DVC remote, a path, ssh or s3 one (fresh clone + `dvc pull` + `awd-bench store pull` + `dvc repro`
computes nothing and rebuilds results/ byte for byte), and `awd-bench gc`."""

from __future__ import annotations

import json
import os
import time

import pytest

from jobs.store import RunStore
from tests.e2e_util import reduced_params, run, write_params
from tests.services_util import services  # noqa: F401  (the fixture, for the ssh and s3 remotes)

pytestmark = pytest.mark.e2e


def cli(repo, *args, check=True):
    return run(repo, "python", "-m", "pipeline.cli", *args, check=check)


def entries(repo, kind=None):
    store = repo / "runs"
    return {(p.parent.parent.name, p.name) for p in store.glob("*/??/*") if (p / "manifest.json").exists()
            and not p.parent.parent.name.startswith("_") and (kind is None or p.parent.parent.name == kind)}


def files_under(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def repo(warm_repo):
    """Commit A (reduced default), then commit B: one more lr in the lr-sensitivity study, other pruning amounts."""
    repo = warm_repo  # the session's cold repro (tests/e2e/conftest.py), copied
    run(repo, "git", "add", "-A")
    run(repo, "git", "commit", "-qm", "A")
    a_entries = entries(repo)
    params = reduced_params()
    params["suites"]["lr_sensitivity"][0]["lrs"] = [0.05, 0.1]
    params["prune"]["amounts"] = [0.5, 0.8]
    write_params(repo, params)
    run(repo, "dvc", "repro")
    run(repo, "git", "add", "-A")
    run(repo, "git", "commit", "-qm", "B")
    return repo, a_entries


def test_diff_between_two_commits_shows_the_changed_cells(repo, tmp_path):
    repo, _ = repo
    out = cli(repo, "diff", "HEAD~1", "HEAD", "--out", str(tmp_path / "diff.md"),
              "--figures", str(tmp_path / "figs")).stdout
    assert out.startswith("# Results diff: HEAD~1 (")
    t6 = out.split("## T6")[1].split("\n## ")[0]
    # lr 0.05 is new (added rows); 90% pruning is gone and 80% is new; the 0.1 / 50% cells are the same runs
    assert "| digits | 0.05 | fixed | Nat | acc | — |" in t6 and "added" in t6, t6
    assert "| digits | 0.1 | fixed | 90% | acc |" in t6 and "removed" in t6, t6
    assert "| digits | 0.1 | fixed | 80% | acc | — |" in t6, t6
    assert "| digits | 0.1 | fixed | 50% |" not in t6, t6  # unchanged rows are left out
    assert "0.05" in out.split("## F12")[1]
    assert "No cell changed" in out.split("## T3")[1].split("\n## ")[0]  # the adversarial runs did not change
    assert (tmp_path / "diff.md").read_text() == out
    assert sorted(p.name for p in (tmp_path / "figs").glob("*.png")) == ["F11_diff.png", "F1_diff.png",
                                                                      "F5_diff.png", "F9_diff.png"]
    every = cli(repo, "diff", "HEAD~1", "HEAD", "--all").stdout
    assert "| digits | 0.1 | fixed | 50% |" in every.split("## T6")[1]
    # the workspace equals HEAD: nothing changed anywhere
    assert cli(repo, "diff").stdout.count("No cell changed") == 6
    bad = cli(repo, "diff", "no-such-rev", check=False)
    assert bad.returncode == 2 and "neither a git revision" in bad.stderr


def test_dvc_metrics_and_plots_read_the_nested_metrics_and_every_axis(repo, tmp_path):
    repo, _ = repo
    diff = run(repo, "dvc", "metrics", "diff", "HEAD~1", "HEAD", "--targets", "results/metrics.json").stdout
    assert "lr_sensitivity.digits.fixed.lr_0p05.test_acc" in diff, diff
    metrics = json.loads((repo / "results" / "metrics.json").read_text())
    assert metrics["grid"]["digits"]["tiny"]["fixed"]["lr_0p1"]["wd_0p0005"]["val_acc"] > 0
    run(repo, "dvc", "plots", "diff", "HEAD~1", "HEAD", "-o", str(tmp_path / "plots"))
    html = (tmp_path / "plots" / "index.html").read_text()
    assert '"rect"' in html and "wd_or_dog" in html  # F1/F9 are heat maps over lr x λ


@pytest.mark.parametrize("kind", ["path", pytest.param("ssh", marks=pytest.mark.services),
                                  pytest.param("s3", marks=pytest.mark.services)])
def test_fresh_clone_pull_and_repro_computes_nothing_and_rebuilds_results_byte_for_byte(repo, tmp_path, request, kind):
    """Through a path remote (committed as the default), and through an ssh and an S3 remote on the test servers
    (tests/services_util.py), added with `--local` on both sides with their credentials: the same pushed campaign,
    and no commit more for the gc test to count. The path clone also rebuilds results/ from the pulled artifacts
    (a forced aggregate); through every remote, nothing is recomputed and results/ equal the pushed ones."""
    repo, _ = repo
    if kind == "path":
        name, setup = "shared", []
        run(repo, "dvc", "remote", "add", "-d", name, str(tmp_path / "remote"))
        run(repo, "git", "commit", "-qam", "remote")
    else:
        services = request.getfixturevalue("services")
        where = f"{services.ssh_home}/campaign-{tmp_path.name}" if kind == "ssh" else f"{services.new_bucket()}/c"
        url, options = services.remote_config(kind, where)
        if kind == "ssh":
            request.addfinalizer(lambda: services.ssh(f"rm -rf {where}"))
        name = f"lab{kind}"
        setup = [("remote", "add", "--local", name, url),
                 *(("remote", "modify", "--local", name, option, value) for option, value in options.items())]
    for args in setup:
        run(repo, "dvc", *args)
    dvc_remote, store_remote = (("-r", name), ("--remote", name)) if setup else ((), ())
    run(repo, "dvc", "push", *dvc_remote)
    pushed = cli(repo, "store", "push", *store_remote).stdout
    assert "entries copied" in pushed and "/awd-store" in pushed, pushed
    assert "push: 0 entries copied" not in pushed, pushed
    assert "push: 0 entries copied" in cli(repo, "store", "push", *store_remote).stdout  # the second finds them

    clone = tmp_path / "clone"
    run(tmp_path, "git", "clone", "-q", str(repo), str(clone))
    (clone / "executor.yaml").write_text("kind: local\n")
    for args in setup:  # a collaborator's own credentials
        run(clone, "dvc", *args)
    run(clone, "dvc", "pull", *dvc_remote)
    pulled = cli(clone, "store", "pull", *store_remote).stdout
    assert entries(clone) == needed(repo), pulled  # exactly the units the current lists name
    # a damaged copy on the remote would be refused: every pulled entry verifies by sha256
    store = RunStore(clone / "runs")
    assert all(store.is_done(kind, key, verify=True) for kind, key in entries(clone))
    before = {e: (clone / "runs" / e[0] / e[1][:2] / e[1] / "manifest.json").read_bytes() for e in entries(clone)}
    out = run(clone, "dvc", "repro").stdout
    if kind == "path":  # rebuilt from the pulled artifacts once; the remotes' pulls are what the others check
        out += run(clone, "dvc", "repro", "-f", "-s", "aggregate").stdout
    after = {e: (clone / "runs" / e[0] / e[1][:2] / e[1] / "manifest.json").read_bytes() for e in entries(clone)}
    assert after == before, out[-3000:]  # nothing trained, attacked or pruned
    assert files_under(clone / "results") == files_under(repo / "results")


def needed(repo):
    keys = {("train", r["key"]) for r in json.loads((repo / "artifacts/train/runs.json").read_text())}
    keys |= {("autoattack", k) for k in json.loads((repo / "artifacts/attack/units.json").read_text())["autoattack"]}
    keys |= {("prune", k) for k in json.loads((repo / "artifacts/prune/units.json").read_text())["prune"]}
    return keys


def test_store_pull_refuses_a_remote_whose_dvc_plugin_is_missing(repo):
    repo, _ = repo
    run(repo, "dvc", "remote", "add", "gsr", "gs://bucket/path")
    out = cli(repo, "store", "pull", "--remote", "gsr", check=False)
    run(repo, "dvc", "remote", "remove", "gsr")
    assert out.returncode == 2 and "requires 'dvc-gs' to be installed" in out.stderr, out.stderr


def test_gc_lists_then_deletes_only_what_no_kept_commit_uses_and_never_a_live_entry(repo):
    repo, a_entries = repo
    store = RunStore(repo / "runs")
    orphan, live = "0f" * 32, "1e" * 32
    wd = store.workdir("train", orphan)
    (wd / "model.pt").write_bytes(b"x" * 4096)
    store.commit("train", orphan, {"acc": 1.0})
    store.beat("train", live, "12345")  # a job computing this unit beat a moment ago
    old_logs = repo / "runs" / "_logs" / "someone" / "old-stage"
    old_logs.mkdir(parents=True)
    (old_logs / "1_0_log.out").write_text("old\n")
    past = time.time() - 40 * 86400
    os.utime(old_logs / "1_0_log.out", (past, past))
    os.utime(old_logs, (past, past))
    a_only = a_entries - needed(repo)  # A's prune units (other amounts): only commit A uses them
    assert a_only and all(kind == "prune" for kind, _ in a_only)

    listed = cli(repo, "gc", "--keep-commits", "1").stdout
    assert f"train/{orphan}" in listed and "old-stage" in listed and live not in listed, listed
    assert all(key in listed for _, key in a_only), listed
    assert "nothing deleted" in listed and (wd / "model.pt").exists()

    kept2 = cli(repo, "gc", "--keep-commits", "3").stdout  # A is among the last 3 commits: its entries stay
    assert not any(key in kept2 for _, key in a_only) and f"train/{orphan}" in kept2, kept2

    before = entries(repo)
    cli(repo, "gc", "--keep-commits", "3", "--delete")
    assert entries(repo) == before - {("train", orphan)}
    assert not old_logs.exists() and store.path("train", live).exists()
    out = run(repo, "dvc", "repro").stdout  # what the params need is all still there
    assert entries(repo) == before - {("train", orphan)}, out[-3000:]
