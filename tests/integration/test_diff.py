"""`awd-bench diff` on a small git repository holding two versions of the renderer's table CSVs."""

from __future__ import annotations

import subprocess

import pytest

from pipeline.diff import DiffError, diff_markdown, main, resolve

HEAD = "dataset,selection,method,λ_wd / DoG,metric,ours,ours_std,ci_low,ci_high,n,paper,paper_std,diff,note\n"
OLD = HEAD + ("digits,val,fixed,0.015,autoattack,60.0,1.0,58.0,62.0,3,22.53,,,x\n"
              "digits,val,awd,0.08,autoattack,57.0,1.0,55.0,59.0,3,27.15,,,x\n"
              "digits,val,awd,0.08,nat_acc,98.0,0.5,97.0,99.0,3,61.39,,,x\n")
NEW = HEAD + ("digits,val,fixed,0.015,autoattack,60.0,1.0,58.0,62.0,3,22.53,,,x\n"  # unchanged
              "digits,val,awd,0.04,autoattack,65.0,1.0,63.0,67.0,3,27.15,,,x\n"  # another best DoG, higher
              "digits,val,awd,0.04,val_robust_acc,70.0,1.0,68.0,72.0,3,,,,x\n")  # a new row; nat_acc is gone


def git(repo, *args):
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout


@pytest.fixture()
def repo(tmp_path, monkeypatch):
    tables = tmp_path / "results" / "tables"
    tables.mkdir(parents=True)
    git(tmp_path, "init", "-q")
    git(tmp_path, "config", "user.email", "t@example.com")
    git(tmp_path, "config", "user.name", "t")
    (tables / "T3.csv").write_text(OLD)
    (tables / "T3.md").write_text("# T3: Adversarial training\n")
    git(tmp_path, "add", "-A")
    git(tmp_path, "commit", "-qm", "old")
    (tables / "T3.csv").write_text(NEW)
    git(tmp_path, "commit", "-qam", "new")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def section(text, tid):
    return text.split(f"## {tid}")[1].split("\n## ")[0]


def test_only_changed_rows_with_both_sides_intervals_and_the_paper(repo):
    t3 = section(diff_markdown(resolve("HEAD~1", repo), resolve("HEAD", repo)), "T3")
    assert "| digits | val | fixed | autoattack |" not in t3  # the same numbers on both sides
    row = next(line for line in t3.splitlines() if "| awd | autoattack |" in line)
    assert "57 ± 1 [55, 59] (n=3) @ 0.08" in row and "65 ± 1 [63, 67] (n=3) @ 0.04" in row
    assert "+8 (95% CIs disjoint)" in row and row.endswith("| 27.15 |")
    assert "| awd | nat_acc |" in t3 and "removed" in t3
    assert "| awd | val_robust_acc | — |" in t3 and "added" in t3
    assert "3 of 4 rows changed." in t3
    assert "In neither revision" in section(diff_markdown(resolve("HEAD~1", repo), resolve("HEAD", repo)), "T2")


def test_all_rows_and_workspace_default(repo, capsys, tmp_path):
    assert main(["HEAD~1", "HEAD", "--all", "--out", str(tmp_path / "d.md")]) == 0
    out = capsys.readouterr().out
    assert "| digits | val | fixed | autoattack |" in section(out, "T3")
    assert (tmp_path / "d.md").read_text() == out
    assert main([]) == 0  # HEAD vs the workspace, which is HEAD
    assert "No cell changed (3 rows)" in section(capsys.readouterr().out, "T3")


def test_dvc_experiment_names_and_bad_revisions(repo):
    old = git(repo, "rev-parse", "HEAD~1").strip()
    git(repo, "update-ref", f"refs/exps/{old[:2]}/{old[2:]}/lucky-dogs", old)  # how `dvc exp` stores one
    assert resolve("lucky-dogs", repo).sha == old
    with pytest.raises(DiffError, match="neither a git revision .* nor a `dvc exp` name"):
        resolve("nope", repo)
    assert main(["nope"]) == 2
