"""`dvc status` tells the truth (issue 24): up to date after a complete repro, and changed exactly while code or
params changed, a unit failed, or the run store lacks an entry the last repro used (pipeline/pending.py).

One end-to-end sequence in a throwaway git + DVC repo (a cold repro takes minutes on 2 cores), plus the pieces that
need no repro: what .dvcignore keeps out of the deps' hashes, and how a stage's pending mark is noted.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest

from jobs.driver import Failure
from jobs.job import Unit
from jobs.store import RunStore
from pipeline import pending
from tests.e2e_util import ROOT, VENV_BIN, run, train_entries

UP_TO_DATE = "Data and pipelines are up to date."


def status(repo: Path) -> str:
    return run(repo, "dvc", "status").stdout


def changed_stages(text: str) -> set[str]:
    """The stage names `dvc status` lists (lines `name:` at the left margin)."""
    return {line[:-1] for line in text.splitlines() if line.endswith(":") and not line[0].isspace()}


def inject_pruning_fault(repo: Path) -> Path:
    """Pruning raises while the returned marker file exists (the copy's code only, added before any repro)."""
    marker = repo / "FAIL_PRUNING"
    with open(repo / "awd" / "prune.py", "a") as f:
        f.write(textwrap.dedent(f"""

            def _failing(model, amount, _real=global_l1):
                from pathlib import Path
                if Path({str(marker)!r}).exists():
                    raise RuntimeError("injected pruning failure")
                return _real(model, amount)


            global_l1 = _failing
            """))
    return marker


@pytest.mark.e2e
def test_status_is_up_to_date_after_a_repro_and_changed_exactly_while_something_is_pending(reproduced, tmp_path):
    """`make repro` on a repo whose code changed since its last repro (the shared reproduced repo, its pruning code
    edited: the prune units are new), then `dvc status` is up to date (bytecode written since or not); a comment edit
    in awd/ shows as modified code; an entry deleted from the store is found by `make repro`, whose retry of it
    fails: the tables are made and `dvc status` lists just that stage until the next plain `dvc repro` retries it,
    after which everything is up to date again and the marks are as git holds them."""
    repo = tmp_path / "repo"
    shutil.copytree(reproduced, repo, symlinks=True)
    marker = inject_pruning_fault(repo)
    (repo / "executor.yaml").write_text("kind: local\nmax_retries: 0\npoll_s: 0.5\n")
    run(repo, "git", "add", "-A")
    run(repo, "git", "commit", "-qm", "fault hook")

    # a fresh clone's `make repro`, then nothing is pending: up to date, and stays so whatever Python writes
    run(repo, "python", "-m", "pipeline.repro")
    assert status(repo).strip() == UP_TO_DATE
    run(repo, "python", "-m", "compileall", "-q", "awd", "jobs", "pipeline")
    assert list((repo / "jobs").glob("__pycache__/*.pyc"))
    assert status(repo).strip() == UP_TO_DATE
    run(repo, "git", "add", "-A")
    run(repo, "git", "commit", "-qm", "repro")
    noop = run(repo, "dvc", "repro").stdout
    assert "Running stage" not in noop and "up to date" in noop, noop[-2000:]

    # a comment edit in awd/: every stage whose deps hold awd/ is changed; rerunning them trains nothing
    trained = train_entries(repo)
    with open(repo / "awd" / "data.py", "a") as f:
        f.write("\n# a comment: keys unchanged, but the code DVC hashes did change\n")
    text = status(repo)
    assert {"train", "attack", "prune"} <= changed_stages(text) and "modified:           awd" in text, text
    run(repo, "dvc", "repro")
    assert train_entries(repo) == trained
    assert status(repo).strip() == UP_TO_DATE

    # the store loses an entry the last repro used: DVC cannot see it, `make repro` does (and recomputes it), and
    # this time the unit fails: every table is still made, and the stage stays changed until the unit is done
    units = json.loads((repo / "artifacts" / "prune" / "units.json").read_text())["prune"]
    shutil.rmtree(RunStore(repo / "runs").path("prune", units[0]))
    assert status(repo).strip() == UP_TO_DATE  # the store is no file of the repository
    marker.touch()
    out = run(repo, "python", "-m", "pipeline.repro")
    assert "pending: prune is changed for DVC" in out.stderr and "missing from the run store" in out.stderr
    assert "prune: 1 of" in out.stderr and "FAILED" in out.stderr, out.stderr[-3000:]
    assert "failed: prune of" in (repo / "results" / "tables" / "T6.md").read_text()
    text = status(repo)
    assert changed_stages(text) == {"prune"} and "modified:           pending/prune.txt" in text, text
    mark = (repo / "pending" / "prune.txt").read_text()
    assert "1 units FAILED" in mark and "injected pruning failure" in mark and pending.noted(mark), mark
    assert changed_stages(status(repo)) == {"prune"}  # asking again changes nothing

    # the next plain `dvc repro` retries exactly that unit; then nothing is pending and git sees the marks as cloned
    marker.unlink()
    out = run(repo, "dvc", "repro")
    assert "Running stage 'prune'" in out.stdout and "Running stage 'train'" not in out.stdout, out.stdout[-3000:]
    assert "FAILED" not in out.stderr and train_entries(repo) == trained
    assert "failed" not in (repo / "results" / "tables" / "T6.md").read_text()
    assert status(repo).strip() == UP_TO_DATE
    assert run(repo, "git", "status", "--porcelain", "--", "pending").stdout == ""


def test_dvcignore_keeps_bytecode_and_tool_caches_out_of_the_source_deps(tmp_path):
    paths = ["jobs/__pycache__/store.cpython-311.pyc", "awd/models/__pycache__/tiny.cpython-311.pyc",
             "awd/data.pyc", "pipeline/units/.mypy_cache/x.json", ".pytest_cache/v/x", "awd/.data.py.swp",
             "jobs/store.py~"]
    for cmd in (["git", "init", "-q"], [str(VENV_BIN / "dvc"), "init", "-q"]):
        subprocess.run(cmd, cwd=tmp_path, check=True, capture_output=True, timeout=120)
    shutil.copy2(ROOT / ".dvcignore", tmp_path / ".dvcignore")
    out = subprocess.run([str(VENV_BIN / "dvc"), "check-ignore", *paths, "jobs/store.py", "awd/models/tiny.py"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert sorted(out.stdout.split()) == sorted(paths), out.stdout + out.stderr


def test_a_mark_listing_failures_is_noted_once_and_a_clean_one_never(tmp_path):
    pending.write_mark("prune", [], root=tmp_path)
    assert (tmp_path / "pending" / "prune.txt").read_text() == pending.clean_text("prune")
    assert pending.note("prune", root=tmp_path) is None
    assert (tmp_path / "pending" / "prune.txt").read_text() == pending.clean_text("prune")

    unit = Unit("prune", "ab" * 32, "pipeline.units.prune:prune_unit", {}, label="prune lr=0.1")
    pending.write_mark("prune", [Failure(unit, "boom", "/logs/1.err", retries=1)], root=tmp_path)
    written = (tmp_path / "pending" / "prune.txt").read_text()
    assert written.startswith("prune: 1 units FAILED") and "boom; log: /logs/1.err" in written
    assert pending.note("prune", root=tmp_path).startswith("prune: 1 units FAILED")
    noted = (tmp_path / "pending" / "prune.txt").read_text()
    assert noted == written + pending.NOTED  # differs from what the stage's run recorded: DVC sees it changed
    assert pending.note("prune", root=tmp_path) is None and (tmp_path / "pending" / "prune.txt").read_text() == noted


def test_the_check_notes_a_clean_stage_whose_listed_entries_the_store_lacks(tmp_path):
    """Entries a stage's unit list names that the store does not hold done are written on that stage's mark, noted
    (DVC then sees the stage changed), once; the other stages' marks stay clean."""
    store = RunStore(tmp_path / "runs")
    keys = ["cd" * 32, "ef" * 32]
    work = store.path("prune", keys[0])
    work.mkdir(parents=True)
    (tmp_path / "artifacts" / "prune").mkdir(parents=True)
    (tmp_path / "artifacts" / "prune" / "units.json").write_text(json.dumps({"prune": keys}))
    for stage in pending.STAGES:
        pending.write_mark(stage, [], root=tmp_path)
    said: list[str] = []
    assert pending.check(tmp_path, store, say=said.append) == ["prune"]
    mark = (tmp_path / "pending" / "prune.txt").read_text()
    assert "2 entries its last run used are missing" in mark and "prune/cdcdcdcdcdcd" in mark, mark
    assert pending.noted(mark) and len(said) == 1 and said[0].startswith("pending: prune is changed for DVC")
    assert pending.check(tmp_path, store, say=said.append) == []  # noted once
    for stage in ("train", "attack"):
        assert (tmp_path / "pending" / f"{stage}.txt").read_text() == pending.clean_text(stage)


def test_the_marks_in_git_are_the_clean_ones():
    """A fresh clone's marks are what a complete repro writes, so its dvc.lock matches them."""
    for stage in pending.STAGES:
        assert (ROOT / "pending" / f"{stage}.txt").read_text() == pending.clean_text(stage), stage
