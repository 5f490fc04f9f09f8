"""The params CLI and a stage's exit on bad params, as subprocesses (the checks themselves: tests/unit/test_params.py)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EMBEDDED = ROOT / "params.yaml"
PAPER = ROOT / "configs" / "paper.yaml"


def test_pipeline_params_does_not_import_torch():
    code = "import sys, pipeline.params; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0


@pytest.mark.reliability
def test_cli_reports_ok_and_errors(tmp_path):
    ok = subprocess.run([sys.executable, "-m", "pipeline.params", str(PAPER)], cwd=ROOT, capture_output=True,
                        text=True)
    assert ok.returncode == 0 and "ok" in ok.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text(EMBEDDED.read_text().replace("lr: 0.1", "lr: -0.1", 1))
    res = subprocess.run([sys.executable, "-m", "pipeline.params", str(bad)], cwd=ROOT, capture_output=True,
                         text=True)
    assert res.returncode == 2 and "train.lr: must be > 0, got -0.1" in res.stderr


@pytest.mark.reliability
def test_a_stage_ends_with_exit_2_and_the_message_on_bad_params(tmp_path):
    bad = tmp_path / "bad.yaml"
    text = re.sub(r"^(  epochs: )\d+", r"\g<1>0", EMBEDDED.read_text(), count=1, flags=re.M)  # train.epochs
    bad.write_text(text.replace("lr: 0.1", "lr: -0.1", 1))
    res = subprocess.run([sys.executable, "-m", "pipeline.prepare", "--params", str(bad)], cwd=ROOT,
                         capture_output=True, text=True)
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    assert f"ERROR: {bad}: train.epochs: must be >= 1, got 0\n{bad}: train.lr: must be > 0, got -0.1" in res.stderr
