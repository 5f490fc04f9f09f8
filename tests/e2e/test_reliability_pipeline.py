"""Reliability under `dvc repro` (local executor) in a throwaway git + DVC repo: faults and bad input at the level
a user meets them. The tests run in order on one repo, each leaving it in a good state for the next:

1. one diverging grid cell of 3 (lr=1e6 -> NaN loss): the other 2 are stored, the stage fails naming the run and
   its log, the next `dvc repro` retries only it, and with the value fixed the repro completes without retraining
   the others;
2. a bad params.yaml / malformed YAML: refused with the message, before any job, runs/ and results/ byte-for-byte
   unchanged;
3. a bad executor.yaml: the same;
4. two `dvc repro` at once: the second is refused by DVC's locks ("... is busy, it is being blocked by: (PID n):
   dvc repro", or "Unable to acquire lock"), or both finish; either way every unit trains once;
5. damaged store entries (truncated model.pt, same-size edits of metrics.json and result.json): detected by the
   manifest checksums and exactly those units recomputed, to the same weights and metrics.
Executions are counted from the job logs ("unit ... (train/<key>): start" per attempt).
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import time
from pathlib import Path

import pytest
import torch

from tests.e2e_util import VENV_BIN, env, make_repo, reduced_params, run, train_entries, write_params

pytestmark = [pytest.mark.reliability, pytest.mark.e2e]

DIVERGES = 1.0e6


def params_with(lrs) -> dict:
    p = reduced_params()
    p["train"].update(epochs=1, model_kw={"width": 4})
    p["suites"] = {"grid": [dict(p["suites"]["grid"][0], lrs=list(lrs), wds=[5.0e-4])]}
    return p


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    return make_repo(tmp_path_factory.mktemp("reliability"), params_with([0.05, 0.1, DIVERGES]))


def starts(repo: Path) -> dict[str, int]:
    """How many times each train unit was started, from every job log in the store."""
    counts: dict[str, int] = {}
    for log in (repo / "runs" / "_logs").rglob("*"):
        if log.is_file():
            for line in log.read_text(errors="replace").splitlines():
                if "(train/" in line and line.endswith("): start"):
                    key = line.rsplit("(train/", 1)[1].split(")")[0]
                    counts[key] = counts.get(key, 0) + 1
    return counts


def keys_by_lr(repo: Path) -> dict[float, str]:
    """lr -> train key, from config.json of every entry (done or not)."""
    out = {}
    for cfg in (repo / "runs" / "train").glob("*/*/config.json"):
        out[json.loads(cfg.read_text())["lr"]] = cfg.parent.name
    return out


def tree_hash(root: Path) -> dict[str, str]:
    """path -> sha256 (or the link target) of every file under root; {} if it does not exist."""
    if not root.exists():
        return {}
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def snapshot(repo: Path) -> dict:
    return {"runs": tree_hash(repo / "runs"), "results": tree_hash(repo / "results")}


def repro(repo: Path, *args: str) -> subprocess.CompletedProcess:
    return run(repo, "dvc", "repro", *args, check=False)


def test_1_one_diverging_cell_is_a_result_never_retried_and_fixing_it_retrains_nothing_else(repo):
    first = repro(repo)
    err = first.stdout + first.stderr
    assert first.returncode == 0, err[-3000:]
    keys = keys_by_lr(repo)
    bad = keys[DIVERGES]
    assert "train: 3 runs (3 distinct) recorded in artifacts/train/runs.json; 1 diverged" in err, err[-3000:]
    assert "Traceback" not in err and "FAILED" not in err
    # stored as done, with the epoch and the (absent) last finite metrics
    assert train_entries(repo) == {keys[0.05], keys[0.1], bad}
    metrics = json.loads((repo / "runs" / "train" / bad[:2] / bad / "result.json").read_text())
    assert metrics["diverged"] is True and metrics["diverged_epoch"] == 1 and metrics["last_finite"] is None
    (rec,) = [r for r in json.loads((repo / "artifacts" / "train" / "runs.json").read_text()) if r["key"] == bad]
    assert rec["status"] == "diverged"
    assert "diverged: grid digits" in (repo / "results" / "README.md").read_text()
    assert starts(repo) == {keys[0.05]: 1, keys[0.1]: 1, bad: 1}

    second = repro(repo)  # deterministic: never retried
    assert second.returncode == 0 and starts(repo) == {keys[0.05]: 1, keys[0.1]: 1, bad: 1}

    write_params(repo, params_with([0.05, 0.1, 0.2]))  # a sane learning rate instead
    fixed = repro(repo)
    assert fixed.returncode == 0, (fixed.stdout + fixed.stderr)[-3000:]
    keys = keys_by_lr(repo)
    assert starts(repo) == {keys[0.05]: 1, keys[0.1]: 1, keys[0.2]: 1, bad: 1}
    assert "diverged" not in (repo / "results" / "README.md").read_text()
    run(repo, "git", "add", "-A")
    run(repo, "git", "commit", "-qm", "results")


@pytest.mark.parametrize("case", ["invalid values", "malformed YAML"])
def test_2_bad_params_are_refused_before_any_job_and_change_nothing(repo, case):
    good = (repo / "params.yaml").read_text()
    before = snapshot(repo)
    if case == "invalid values":
        p = params_with([0.05, 0.1, 0.2])
        p["train"].update(lr=-0.1, batch_size=0)
        p["suites"]["grid"][0]["wds"] = [5.0e-4, 5.0e-4]
        write_params(repo, p)
    else:
        (repo / "params.yaml").write_text(good.replace("lrs:", "lrs: [0.05,", 1))
    try:
        res = repro(repo)
        out = res.stdout + res.stderr
        assert res.returncode != 0
        if case == "invalid values":
            assert "ERROR: params.yaml: " in out, out[-3000:]
            for line in ("params.yaml: train.lr: must be > 0, got -0.1",
                         "params.yaml: train.batch_size: must be >= 1, got 0",
                         "params.yaml: suites.grid[0].wds[1]: duplicate grid value 0.0005"):
                assert line in out, out[-3000:]
            assert "Traceback" not in out
        else:
            # DVC reads params.yaml before any stage runs, and says where the YAML breaks
            assert "ERROR: unable to read: 'params.yaml'" in out and re.search(r"line \d+, column \d+", out), out
        assert snapshot(repo) == before  # no job, no store entry, no log, no result touched
    finally:
        (repo / "params.yaml").write_text(good)


def test_3_bad_executor_yaml_is_refused_before_any_job_and_changes_nothing(repo):
    before = snapshot(repo)
    write_params(repo, params_with([0.05, 0.1, 0.2, 0.4]))  # a new cell: there is something to submit
    (repo / "executor.yaml").write_text("kind: slrum\n")
    try:
        res = repro(repo)
        out = res.stdout + res.stderr
        assert res.returncode != 0
        assert "ERROR: executor.yaml: kind: unknown executor kind 'slrum' (did you mean 'slurm'?)" in out, out[-3000:]
        assert "Traceback" not in out
        assert snapshot(repo) == before
    finally:
        (repo / "executor.yaml").write_text("kind: local\n")


def test_4_two_repros_at_once_never_train_a_unit_twice(repo):
    """The params of test 3 (one new cell, lr=0.4) are still in place: the first repro trains it."""
    before = starts(repo)
    first = subprocess.Popen([str(VENV_BIN / "dvc"), "repro"], cwd=repo, env=env(), stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 600  # a safety limit only
        while 0.4 not in keys_by_lr(repo) or keys_by_lr(repo)[0.4] not in starts(repo):
            assert first.poll() is None, first.stdout.read()
            assert time.time() < deadline, "the first repro never started its job"
            time.sleep(0.2)
        second = repro(repo)  # while the first one's job trains
        out_first = first.communicate(timeout=900)[0]
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 0, out_first[-3000:]
    if second.returncode != 0:  # refused by DVC's own locks, with their message naming the running repro
        msg = second.stdout + second.stderr
        busy = re.search(r"is busy, it is being blocked by:\s+\(PID (\d+)\): \S*dvc repro", msg)
        assert "Unable to acquire lock" in msg or (busy and int(busy.group(1)) == first.pid), (first.pid, msg)
    new = keys_by_lr(repo)[0.4]
    assert starts(repo) == {**before, new: 1}  # every unit trained exactly once
    assert new in train_entries(repo)
    assert repro(repo).returncode == 0 and starts(repo) == {**before, new: 1}


def test_5_damaged_store_entries_are_detected_and_exactly_they_are_recomputed(repo):
    keys = keys_by_lr(repo)
    entry = {lr: repo / "runs" / "train" / keys[lr][:2] / keys[lr] for lr in (0.05, 0.1, 0.2, 0.4)}
    weights = {lr: torch.load(entry[lr] / "model.pt", weights_only=True) for lr in entry}
    records = {r["key"]: r for r in json.loads((repo / "artifacts" / "train" / "runs.json").read_text())}
    before = starts(repo)

    model = entry[0.05] / "model.pt"
    with open(model, "r+b") as f:
        f.truncate(model.stat().st_size - 100)
    metrics = entry[0.1] / "metrics.json"
    text = metrics.read_text()
    metrics.write_text(text.replace('"best_epoch": 1', '"best_epoch": 7'))  # same size, wrong value
    result = entry[0.2] / "result.json"
    text = result.read_text()
    result.write_text(text.replace('"epochs_run": 1', '"epochs_run": 9'))
    assert metrics.read_text() != text and result.stat().st_size == len(text)

    res = repro(repo, "--force", "--single-item", "train")  # the stage rerun
    assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
    damaged = {keys[0.05], keys[0.1], keys[0.2]}
    assert starts(repo) == {k: n + (k in damaged) for k, n in before.items()}  # exactly those, once each
    reasons = sorted(p.read_text() for p in (repo / "runs" / "_quarantine" / "train").glob("*/reason.txt"))
    assert len(reasons) == 3
    assert any("model.pt has" in r and keys[0.05] in r for r in reasons)
    assert any("metrics.json sha256 differs" in r and keys[0.1] in r for r in reasons)
    assert any("result.json sha256 differs" in r and keys[0.2] in r for r in reasons)
    for lr in entry:  # recomputed to the same weights and metrics: nothing damaged was used
        again = torch.load(entry[lr] / "model.pt", weights_only=True)
        assert all(torch.equal(again[k], weights[lr][k]) for k in weights[lr])
    after = {r["key"]: r for r in json.loads((repo / "artifacts" / "train" / "runs.json").read_text())}
    drop = lambda m: {k: v for k, v in m.items() if k != "seconds"}  # noqa: E731
    assert {k: drop(r["metrics"]) for k, r in after.items()} == {k: drop(r["metrics"]) for k, r in records.items()}
