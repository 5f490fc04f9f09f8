"""Entry points own error handling and logging: library code installs no hook and configures no logging."""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from jobs.console import configure_logging
from jobs.store import StoreError
from pipeline.common import exit_status, stage_args


def test_stage_args_installs_no_global_hook(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["stage", "--params", "p.yaml"])
    before = sys.excepthook
    assert stage_args("a stage").params == "p.yaml"
    assert sys.excepthook is before


def test_expected_failure_is_one_error_line_and_status_1(capsys):
    def main():
        raise StoreError("store: train/ab is damaged: model.pt has 3 bytes, manifest says 4")

    assert exit_status(main) == 1
    err = capsys.readouterr().err
    assert err == "ERROR: store: train/ab is damaged: model.pt has 3 bytes, manifest says 4\n"


def test_unexpected_failure_keeps_its_traceback_and_ctrl_c_is_130(capsys):
    with pytest.raises(ZeroDivisionError):
        exit_status(lambda: 1 / 0)

    def interrupted():
        raise KeyboardInterrupt

    assert exit_status(interrupted) == 130 and capsys.readouterr().err == "interrupted\n"
    assert exit_status(lambda: None) == 0 and exit_status(lambda: 3) == 3


@pytest.fixture()
def restore_loggers():
    saved = {name: (logging.getLogger(name).level, list(logging.getLogger(name).handlers))
             for name in ("awd", "jobs", "pipeline")}
    yield
    for name, (level, handlers) in saved.items():
        logging.getLogger(name).setLevel(level)
        logging.getLogger(name).handlers[:] = handlers


def test_library_messages_reach_stderr_as_bare_lines_once(capsys, monkeypatch, restore_loggers):
    monkeypatch.setenv("AWD_LOG_LEVEL", "INFO")
    configure_logging()
    configure_logging()  # idempotent: still one line per message
    logging.getLogger("jobs.store").info("moved %s", "train/ab")
    logging.getLogger("awd.train").debug("not shown at INFO")
    logging.getLogger("some.other.lib").info("not ours: Python's default (warnings and up)")
    assert capsys.readouterr().err == "moved train/ab\n"
    with pytest.raises(ValueError, match="AWD_LOG_LEVEL: unknown log level 'loud'"):
        configure_logging("loud")


def test_make_clean_keeps_the_run_store_and_says_how_to_remove_it(tmp_path):
    shutil.copy(Path(__file__).resolve().parents[2] / "Makefile", tmp_path / "Makefile")
    (tmp_path / "artifacts" / "train").mkdir(parents=True)
    entry = tmp_path / "runs" / "train" / "ab" / ("ab" * 32)
    entry.mkdir(parents=True)
    (entry / "manifest.json").write_text("{}")
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "README.md").write_text("committed report")
    env = {"PATH": "/usr/bin:/bin"}
    out = subprocess.run(["make", "clean"], cwd=tmp_path, env=env, capture_output=True, text=True, check=True).stdout
    assert not (tmp_path / "artifacts").exists()
    assert (entry / "manifest.json").exists() and (tmp_path / "results" / "README.md").exists()
    assert "kept the run store runs/: 1 trained models" in out and "rm -rf runs" in out
