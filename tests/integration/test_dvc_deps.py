"""dvc.yaml lists, for every stage, every project file its command can run: the driver's import closure and the
closure of every unit function it hands to jobs. A missing file would let `dvc repro` skip a stage whose code changed."""

from __future__ import annotations

import ast
import re
import shlex
from pathlib import Path

import pytest
import yaml

from jobs.keys import PROJECT_PACKAGES, code_closure

ROOT = Path(__file__).resolve().parents[2]
FN = re.compile(r"^((?:{})(?:\.\w+)*):\w+$".format("|".join(PROJECT_PACKAGES)))
STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def stage_closure(module: str) -> set[Path]:
    """Files `python -m module` runs: its imports, and the unit functions ("pkg.mod:fn" strings) it submits."""
    files: dict[str, Path] = {}
    todo = [module]
    while todo:
        new = code_closure(todo.pop(), ROOT)
        for name, path in new.items():
            if name in files:
                continue
            files[name] = path
            for node in ast.walk(ast.parse(path.read_bytes())):
                if isinstance(node, ast.Constant) and isinstance(node.value, str) and FN.match(node.value):
                    todo.append(FN.match(node.value).group(1))
    return {p.relative_to(ROOT) for p in files.values()}


def covered(rel: Path, deps: list[str]) -> bool:
    return any(rel == Path(d) or Path(d) in rel.parents for d in deps)


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_stage_deps_cover_the_code_its_command_runs(stage):
    argv = shlex.split(STAGES[stage]["cmd"])
    assert argv[:2] == ["python", "-m"], f"{stage}: cmd {STAGES[stage]['cmd']!r} is not `python -m module`"
    deps = [d if isinstance(d, str) else next(iter(d)) for d in STAGES[stage].get("deps", [])]
    missing = sorted(str(f) for f in stage_closure(argv[2]) if not covered(f, deps))
    assert not missing, f"dvc.yaml stage {stage!r} runs {missing} but does not list them in deps"


def test_the_check_sees_unit_functions_and_lazy_imports():
    files = {str(f) for f in stage_closure("pipeline.attack")}
    # the unit function named in pipeline/plan.py ("pkg.mod:fn"), and what it imports lazily
    assert {"pipeline/plan.py", "pipeline/units/autoattack.py", "awd/autoattack.py", "pipeline/suites.py"} <= files
    prepare = {str(f) for f in stage_closure("pipeline.prepare")}  # builds no units: no unit function is followed
    assert "pipeline/units/data.py" in prepare and not {"pipeline/units/autoattack.py", "awd/prune.py"} & prepare
