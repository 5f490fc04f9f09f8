"""End to end on the reduced embedded default: a campaign with a diverging cell, a training job SIGKILLed once and a
pruning unit that keeps failing finishes every table in one `dvc repro` (exit 0); the next plain `dvc repro` retries
exactly the failed units; then a repro changes nothing.

Faults are injected into the throwaway copy's code (not the project's): marker files decide when they fire, so unit
keys stay the same across the repros.
"""

from __future__ import annotations

import json
import shutil
import textwrap

import pytest

from tests.e2e_util import make_repo, reduced_params, run, train_entries

pytestmark = pytest.mark.e2e

ABSURD_LR = 1.0e6


def inject_faults(repo):
    kill, fail = repo / "KILL_ONE_TRAINING_JOB", repo / "FAIL_PRUNING"
    with open(repo / "awd" / "train.py", "a") as f:
        f.write(textwrap.dedent(f"""

            # test-only fault: the first job that starts epoch 2 of an lr=0.05 run (epoch 1 checkpointed) is SIGKILLed
            def _killed_once(self, _real=_Run.train_epoch):
                if self.cfg.lr == 0.05 and self.epoch == 1 and Path({str(kill)!r}).exists():
                    Path({str(kill)!r}).unlink()
                    os.kill(os.getpid(), 9)
                return _real(self)


            _Run.train_epoch = _killed_once
            """))
    with open(repo / "awd" / "prune.py", "a") as f:
        f.write(textwrap.dedent(f"""

            def _failing(model, amount, _real=global_l1):
                from pathlib import Path
                if Path({str(fail)!r}).exists():
                    raise RuntimeError("injected pruning failure")
                return _real(model, amount)


            global_l1 = _failing
            """))
    kill.touch()
    fail.touch()
    return kill, fail


@pytest.fixture(scope="module")
def campaign(tmp_path_factory):
    params = reduced_params()
    params["suites"]["grid"][0].update(lrs=[0.05, ABSURD_LR])
    params["suites"]["lr_sensitivity"][0].update(lrs=[0.1, ABSURD_LR])
    repo = make_repo(tmp_path_factory.mktemp("e2e-failures"), params)
    (repo / "executor.yaml").write_text("kind: local\nmax_retries: 1\npoll_s: 0.5\n")
    kill, fail = inject_faults(repo)
    run(repo, "git", "add", "-A")
    run(repo, "git", "commit", "-qm", "faults")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AWD_CHECKPOINT_EVERY_S", "0")  # the SIGKILLed job must have checkpointed its epoch 1
        first = run(repo, "dvc", "repro")  # raises unless exit 0
    return repo, kill, fail, first


def read(repo, path):
    return json.loads((repo / path).read_text())


def test_divergence_is_a_result_marked_in_tables_and_skipped_downstream(campaign):
    repo, *_ = campaign
    runs = read(repo, "artifacts/train/runs.json")
    diverged = [r for r in runs if r["config"]["lr"] == ABSURD_LR]
    assert diverged and all(r["status"] == "diverged" for r in diverged), diverged
    assert all(r["metrics"]["diverged"] and r["metrics"]["diverged_epoch"] >= 1 for r in diverged)
    assert all(r["status"] in ("done", "diverged") for r in runs)
    for r in diverged:  # done in the store: never retried
        assert (repo / "runs" / "train" / r["key"][:2] / r["key"] / "manifest.json").exists()
    pruned = read(repo, "artifacts/prune/results.json")
    skipped = [p for p in pruned if p.get("skipped")]
    assert skipped and {p["skipped"] for p in skipped} == {"model diverged"}
    assert {p["key"] for p in skipped} == {r["key"] for r in diverged if r["suite"] == "lr_sensitivity"}
    f12 = (repo / "results" / "tables" / "F12.md").read_text()
    assert "diverged: lr_sensitivity digits" in f12 and "not retried" in f12, f12
    assert "| digits | 1e+06 | fixed |" in f12 and "diverged (see below)" in f12, f12  # the row itself is marked
    assert "diverged: grid digits" in (repo / "results" / "README.md").read_text()
    assert read(repo, "results/metrics.json")["runs_diverged"] == len(diverged)


def test_failures_do_not_block_tables_and_say_how_to_retry(campaign):
    repo, kill, fail, first = campaign
    for table in ("T2", "T3", "T4", "T5", "T6", "F12"):
        assert (repo / "results" / "tables" / f"{table}.md").exists(), table
    pruned = read(repo, "artifacts/prune/results.json")
    failed = [p for p in pruned if p.get("status") == "failed" and not p.get("skipped")]
    assert failed and all(p["retries"] == 1 and "injected pruning failure" in p["error"] for p in failed)
    assert "failed: prune of lr_sensitivity" in (repo / "results" / "tables" / "T6.md").read_text()
    n = len({p["key"] for p in failed})  # the prunable models that did not diverge: every one fails
    assert f"prune: {n} of {n} units FAILED after their retries" in first.stderr, first.stderr[-3000:]
    assert "run `dvc repro` again to retry exactly those units" in first.stderr
    # the SIGKILLed training job was resubmitted: each unit it held (a local job holds several) has one recorded
    # attempt, and the one it was running resumed from its epoch-1 checkpoint
    assert not kill.exists()
    retried = sorted((repo / "runs" / "train").glob("*/*/attempts.json"))
    assert retried
    for path in retried:
        (attempt,) = json.loads(path.read_text())
        assert attempt["retry"] is True and "without committing a result" in attempt["cause"], attempt
        assert json.loads((path.parent / "manifest.json").read_text())["meta"]["failed_attempts"] == [attempt]
    assert len({json.loads(p.read_text())[0]["job_id"] for p in retried}) == 1
    assert any("resumed from epoch 1" in p.read_text() for p in (repo / "runs" / "_logs").glob("*/train/*_log.*"))


def test_next_repro_retries_exactly_the_failed_units_then_is_a_noop(campaign):
    repo, kill, fail, _ = campaign
    trained = train_entries(repo)
    fail.unlink()
    out = run(repo, "dvc", "repro")
    assert train_entries(repo) == trained  # nothing trained again
    pruned = read(repo, "artifacts/prune/results.json")
    assert not [p for p in pruned if p.get("status") == "failed"], pruned
    assert "failed" not in (repo / "results" / "tables" / "T6.md").read_text()
    assert read(repo, "results/metrics.json")["units_failed"] == 0
    assert "FAILED" not in out.stderr

    lock = (repo / "dvc.lock").read_bytes()
    results = {p.name: p.read_bytes() for p in (repo / "results" / "tables").iterdir()}
    again = run(repo, "dvc", "repro")
    assert "Running stage 'aggregate'" not in again.stdout, again.stdout[-3000:]
    assert (repo / "dvc.lock").read_bytes() == lock and train_entries(repo) == trained
    assert {p.name: p.read_bytes() for p in (repo / "results" / "tables").iterdir()} == results


def test_retried_training_run_gives_the_same_tables_as_an_uninterrupted_one(campaign):
    repo, *_ = campaign
    tables = {p.name: p.read_bytes() for p in (repo / "results" / "tables").iterdir()}
    # the run the kill interrupted, resumed from its epoch-1 checkpoint (its job-mates reran from the start)
    retried = [p.parent for p in (repo / "runs" / "train").glob("*/*/attempts.json")
               if json.loads((p.parent / "config.json").read_text())["lr"] == 0.05]
    assert retried
    for entry in retried:
        shutil.rmtree(entry)  # recomputed without the kill (its marker is gone)
    # `make repro` finds the entries the store lost (pipeline/pending.py); DVC alone hashes no file of the store
    run(repo, "python", "-m", "pipeline.repro")
    assert all((e / "manifest.json").exists() and not (e / "attempts.json").exists() for e in retried)
    assert {p.name: p.read_bytes() for p in (repo / "results" / "tables").iterdir()} == tables


def store_entries(repo, kind):
    return {p.name for p in (repo / "runs" / kind).glob("*/*") if (p / "manifest.json").exists()}


def test_exp_run_temp_uses_the_workspace_store_and_executor(campaign):
    repo, *_ = campaign
    run(repo, "git", "add", "-A")
    run(repo, "git", "commit", "-qm", "results", check=False)
    trained, pruned = train_entries(repo), store_entries(repo, "prune")
    out = run(repo, "dvc", "exp", "run", "--temp", "-S", "prune.amounts=[0.3]")
    assert train_entries(repo) == trained, out.stdout[-3000:]  # found in the workspace's store, not retrained
    prunable = [r for r in read(repo, "artifacts/train/runs.json")
                if r["suite"] == "lr_sensitivity" and r["status"] == "done"]
    assert len(store_entries(repo, "prune") - pruned) == len(prunable) > 0  # the new sweeps, in the workspace store


def test_exp_run_temp_without_executor_settings_refuses(campaign):
    repo, *_ = campaign
    settings = (repo / "executor.yaml").read_text()
    (repo / "executor.yaml").unlink()
    try:
        out = run(repo, "dvc", "exp", "run", "--temp", "-S", "prune.amounts=[0.4]", check=False)
    finally:
        (repo / "executor.yaml").write_text(settings)
    text = out.stdout + out.stderr
    assert out.returncode != 0 and "Refusing to run the units on this machine by default" in text, text[-3000:]
    assert f"create {repo / 'executor.yaml'}" in text
