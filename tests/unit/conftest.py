"""The unit tier starts no process: a test that needs one belongs in tests/integration (or e2e, slurm)."""

import subprocess

import pytest


class _NoProcess(subprocess.Popen):
    def __init__(self, args, *a, **kw):
        raise AssertionError(f"a unit test started a process ({args!r}): move it to tests/integration/")


@pytest.fixture(autouse=True)
def _no_processes(monkeypatch):
    monkeypatch.setattr(subprocess, "Popen", _NoProcess)
