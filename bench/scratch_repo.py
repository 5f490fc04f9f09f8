"""A throwaway git + DVC copy of the project, for timing `dvc repro` (bench/orchestration.py --part dvc).

The tests have their own (tests/e2e_util.py, with a reduced params file); the benchmarks stand alone.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
COPIED = ("awd", "jobs", "pipeline", "pending", "dvc.yaml", "params.yaml", "pyproject.toml", ".dvcignore")


def make_repo(tmp: Path, params_text: str | None = None, executor: str = "local", rev: str | None = None) -> Path:
    """`tmp/repo`: the project's code and DAG, `params_text` as params.yaml (default: the working tree's).
    With `rev`, the files come from that commit instead of the working tree (others' half-done edits stay out)."""
    repo = tmp / "repo"
    repo.mkdir()
    root = ROOT
    if rev is not None:
        root = tmp / "src"
        root.mkdir()
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, *COPIED], capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", str(root)], input=archive.stdout, check=True)
    for name in COPIED:
        src = root / name
        if src.is_dir():
            shutil.copytree(src, repo / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, repo / name)
    if params_text is not None:
        (repo / "params.yaml").write_text(params_text)
    (repo / ".gitignore").write_text("/runs/\n/data/\n/executor.yaml\n__pycache__/\n")
    (repo / "executor.yaml").write_text(f"kind: {executor}\n")
    for cmd in (("git", "init", "-q"), ("git", "config", "user.email", "bench@example.com"),
                ("git", "config", "user.name", "bench"), ("dvc", "init", "-q"),
                ("dvc", "config", "core.analytics", "false"), ("git", "add", "-A"), ("git", "commit", "-qm", "init")):
        run(repo, *cmd)
    return repo


def _env() -> dict:
    env = dict(os.environ, PATH=f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}", PYTHONPATH="", DVC_NO_ANALYTICS="1")
    env.pop("AWD_STORE", None)  # the copy's own runs/
    return env


def run(repo: Path, *cmd: str, timeout: float = 900) -> subprocess.CompletedProcess:
    """Runs `cmd` in the copy (dvc from this interpreter's venv); a failure raises with the output's tail."""
    exe = cmd[0] if cmd[0] == "git" or not (VENV_BIN / cmd[0]).exists() else str(VENV_BIN / cmd[0])
    proc = subprocess.run([exe, *cmd[1:]], cwd=repo, env=_env(), capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


def train_entries(repo: Path) -> set[str]:
    """Keys of the committed training runs in the copy's run store."""
    root = repo / "runs" / "train"
    return {p.name for p in root.glob("*/*") if (p / "manifest.json").exists()} if root.exists() else set()
