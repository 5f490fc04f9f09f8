"""The README's layout table names what the tree holds: every path it names exists, and every top-level folder
of the repository (and every subpackage of jobs/ and pipeline/) is named in it."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GENERATED = {"artifacts", "runs", "build", "data", "pending", "awd_bench.egg-info"}  # outputs, not layout


def layout_paths() -> set[str]:
    text = (ROOT / "README.md").read_text()
    table = text.split("## Layout\n", 1)[1].split("\n## ", 1)[0]
    return {p.rstrip("/") for p in re.findall(r"`([^`\s]+)`", table)}


def test_every_path_the_layout_names_exists():
    missing = sorted(p for p in layout_paths() if not (ROOT / p).exists())
    assert not missing, f"README's layout names paths that do not exist: {missing}"


def test_every_top_level_folder_and_package_is_named():
    named = layout_paths()
    tracked = {p.name for p in ROOT.iterdir() if p.is_dir() and not p.name.startswith(".")} - GENERATED
    assert tracked <= named, sorted(tracked - named)
    packages = {f"{pkg}/{d.name}" for pkg in ("jobs", "pipeline") for d in (ROOT / pkg).iterdir()
                if (d / "__init__.py").exists()}
    tiers = {f"tests/{d.name}" for d in (ROOT / "tests").iterdir() if (d / "__init__.py").exists()}
    text = (ROOT / "README.md").read_text().split("## Layout\n", 1)[1].split("\n## ", 1)[0]
    unnamed = sorted(p for p in packages if f"`{p}/`" not in text)
    unnamed += sorted(t for t in tiers if f"`{t}/`" not in text)
    assert not unnamed, f"README's layout does not name: {unnamed}"
