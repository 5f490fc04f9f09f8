"""The front door and the documentation site: a short README, reference pages that match the code, the quick
commands of the getting-started page run exactly as written, and every number the README and the docs quote
equal to the generated file it comes from."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
RUN_MARK = "<!-- run-in-tests -->"


def reference_module():
    spec = importlib.util.spec_from_file_location("docs_reference", DOCS / "hooks" / "reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def quick_commands() -> list[str]:
    """The command lines of the block that follows RUN_MARK in getting-started.md."""
    text = (DOCS / "getting-started.md").read_text()
    block = text.split(RUN_MARK, 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    return [line for line in block.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def cold_repro_minutes() -> int:
    """The newest cold `dvc repro` of the embedded default in results/bench.md, in whole minutes."""
    sections = (ROOT / "results" / "bench.md").read_text().split("\n## Orchestration: cold and no-op dvc repro\n")
    assert len(sections) > 1, "results/bench.md has no cold dvc repro measurement"
    row = re.search(r"^\| cold `dvc repro` \(empty run store\) \| ([\d.]+) \|", sections[-1], re.M)
    return round(float(row.group(1)) / 60)


def test_readme_is_a_short_front_door():
    lines = README.read_text().splitlines()
    assert len(lines) <= 150, len(lines)
    assert max(map(len, lines)) <= 200
    head = "\n".join(lines[:30])
    assert "make repro" in head and "make test" in head  # the two commands come first
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", README.read_text()):
        if "://" not in target:
            assert (ROOT / target).exists(), f"README links to a missing file: {target}"


def test_readme_numbers_come_from_the_files_the_pipeline_writes():
    text = README.read_text()
    minutes = cold_repro_minutes()
    for page in (text, (DOCS / "getting-started.md").read_text()):
        stated = [int(m) for m in re.findall(r"\*\*(\d+) min\*\*", page)]  # the cold repro's time, in bold
        assert stated and set(stated) == {minutes}, (stated, minutes)
    # the claims rows: each claim's verdict is the one the report the pipeline wrote gives it
    report = (ROOT / "results" / "README.md").read_text().splitlines()
    rows = re.findall(r"^\| ([^|]+?) \| (\w+) \| \*\*([\w ]+)\*\* \|$", text, re.M)
    assert len(rows) >= 3, rows
    for claim, dataset, verdict in rows:  # the report's dataset cell adds the scale, its verdict cell the reason
        line = next((r for r in report if r.startswith(f"| {claim} | {dataset} (")), None)
        assert line is not None and f"| **{verdict}**" in line, (claim, verdict, line)
    figure = re.search(r"!\[[^\]]*\]\((results/plots/F\d+\.png)\)", text)
    assert figure and (ROOT / figure.group(1)).is_file()


def test_rehearsal_figures_in_the_docs_are_the_last_rehearsals():
    r = json.loads((ROOT / "results" / "rehearsal.json").read_text())
    page = (DOCS / "rehearsal.md").read_text()
    units = r["units"]
    for text in (f"**{r['gpu_hours']:.0f} GPU-hours**", f"{units['train']['done']} training runs",
                 f"{units['autoattack']['done']} AutoAttack blocks", f"{units['prune']['done']} pruning evaluations",
                 f"**{r['makespan_h']:.2f} h**", f"**{r['lower_bound_h']:.2f} h**", f"**{r['efficiency']:.3f}**",
                 f"**{r['boundary_idle_gpu_h']:.1f} GPU-h**", f"**{r['lost']}** units lost",
                 f"on {r['gpus']} GPU slots at {r['minutes_per_gpu_hour']:g} wall minutes per GPU-hour"):
        assert text in page, text
    assert r["exit_status"] == 0 and r["tables_complete"]


def test_reference_pages_match_the_code_and_every_named_test_exists():
    ref = reference_module()
    assert ref.stale() == [], "run `make docs` (python docs/hooks/reference.py --write)"
    named = ref.test_refs()
    assert sum(map(len, named.values())) >= 20  # the guarantees link their tests
    config = (DOCS / "reference" / "configuration.md").read_text()
    from jobs.executors import ExecutorConfig
    from pipeline.params import Params, TrainSection

    for model in (Params, TrainSection):
        for key in model.model_fields:
            assert f"`{key}`" in config, key
    for key in ExecutorConfig.model_fields:
        assert f"| `{key}` |" in config, key


def test_a_test_the_docs_name_must_exist(tmp_path):
    ref = reference_module()
    (tmp_path / "page.md").write_text("Checked by `tests/unit/test_store.py::test_no_such_test`.\n")
    with pytest.raises(ValueError, match="test_no_such_test"):
        ref.tests_page(tmp_path)


def test_getting_started_quick_commands_run_as_written():
    commands = quick_commands()
    assert [c.split()[:2] for c in commands] == [[".venv/bin/awd-bench", "check"]] * 2 + \
        [[".venv/bin/awd-bench", "dry-run"], [".venv/bin/awd-bench", "diff"]]
    before = sorted(p.name for p in ROOT.iterdir())
    env = dict(os.environ, PYTHONPATH=str(ROOT))  # this checkout's code, whatever the venv's editable install
    env.pop("AWD_STORE", None)
    outputs = []
    for command in commands:
        proc = subprocess.run(["bash", "-c", command], cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=300)
        assert proc.returncode == 0, f"{command}\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
        outputs.append(proc.stdout + proc.stderr)
    assert "params.yaml: ok" in outputs[0] and "configs/paper.yaml: ok" in outputs[1]
    assert "nothing was submitted" in outputs[2] and "GPU-hours" in outputs[2]
    assert outputs[3].startswith("# Results diff: HEAD")
    assert sorted(p.name for p in ROOT.iterdir()) == before  # they wrote nothing (no runs/, no artifacts/)
