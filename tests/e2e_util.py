"""A throwaway git + DVC copy of the project with a reduced params file, for end-to-end `dvc repro` tests."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
COPIED = ("awd", "jobs", "pipeline", "pending", "dvc.yaml", "params.yaml", "pyproject.toml", ".dvcignore")


@functools.cache
def _embedded() -> str:
    # read once per session: the e2e tier's repos (one cold repro, copied) and each test's edits of it must start
    # from the same params even if params.yaml is edited while the tests run
    return (ROOT / "params.yaml").read_text()


def reduced_params() -> dict:
    """The embedded default, cut to the smallest DAG that still builds every table."""
    p = yaml.safe_load(_embedded())
    p["train"]["epochs"] = 2
    p["autoattack"].update(n_test=20, shards=2, batch_size=10, block_size=10)
    p["prune"]["amounts"] = [0.5, 0.9]
    s = p["suites"]
    s["natural"][0].update(seeds=[0])
    s["grid"][0].update(lrs=[0.05, 0.1], wds=[5.0e-4])
    s["grid"][0].pop("dogs", None)  # the tests count the runs an edited grid cell retrains
    s["adversarial"][0].update(wds=[1.5e-2], dogs=[0.08], best_seeds=[], train={"epochs": 1})
    # a Table 4 row reusing the sweep's run, and a re-tuned one (two values)
    runs = s["variants"][0]["runs"]
    s["variants"][0]["runs"] = [r for r in runs if r.get("from_sweep")][:1] + [r for r in runs if "values" in r][:1]
    s["variants"][0]["train"] = {"epochs": 1}
    s["noisy"][0].update(rates=[0.0, 0.4], wds=[5.0e-4], dogs=[0.02])
    s["lr_sensitivity"][0].update(lrs=[0.1], seeds=[0])
    return p


def write_params(repo: Path, params: dict) -> None:
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def make_repo(tmp: Path, params: dict | None = None, executor: str = "local") -> Path:
    repo = tmp / "repo"
    repo.mkdir()
    for name in COPIED:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, repo / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, repo / name)
    write_params(repo, params or reduced_params())
    (repo / ".gitignore").write_text("/runs/\n/data/\n/executor.yaml\n__pycache__/\n")
    (repo / "executor.yaml").write_text(f"kind: {executor}\n")
    run(repo, "git", "init", "-q")
    run(repo, "git", "config", "user.email", "t@example.com")
    run(repo, "git", "config", "user.name", "t")
    run(repo, "dvc", "init", "-q")
    run(repo, "dvc", "config", "core.analytics", "false")
    run(repo, "git", "add", "-A")
    run(repo, "git", "commit", "-qm", "init")
    return repo


def env() -> dict:
    e = dict(os.environ)
    e["PATH"] = f"{VENV_BIN}{os.pathsep}{e['PATH']}"
    e["PYTHONPATH"] = ""
    e["DVC_NO_ANALYTICS"] = "1"
    e.pop("AWD_STORE", None)
    return e


def run(repo: Path, *cmd: str, check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess:
    exe = cmd[0] if cmd[0] == "git" else str(VENV_BIN / cmd[0]) if (VENV_BIN / cmd[0]).exists() else cmd[0]
    proc = subprocess.run([exe, *cmd[1:]], cwd=repo, env=env(), capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


def train_entries(repo: Path) -> set[str]:
    root = repo / "runs" / "train"
    return {p.name for p in root.glob("*/*") if (p / "manifest.json").exists()} if root.exists() else set()
