"""bench/ stands alone: its modules import the project's packages and each other, never tests/, and patch no
sys.path (they run as `python -m bench.<name>` from the repository root)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_bench_imports_no_tests_and_patches_no_sys_path():
    problems = []
    for path in sorted((ROOT / "bench").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            problems += [f"{path.name}: imports {n}" for n in names if n.split(".")[0] in ("tests", "conftest")]
            if isinstance(node, ast.Attribute) and node.attr == "path" and getattr(node.value, "id", "") == "sys":
                problems.append(f"{path.name}:{node.lineno}: uses sys.path")
    assert not problems, problems
