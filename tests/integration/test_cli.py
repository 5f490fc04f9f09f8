"""`awd-bench`: every command parses its own command line (`--help` shows its usage), a user's mistake (a missing
file, a bad option, dvc not installed, not the project's environment) is one line and a documented exit status,
never a traceback, and `awd-bench check` resolves plugin methods as `python -m pipeline.params` does."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline import cli

ROOT = Path(__file__).resolve().parents[2]
AWD_BENCH = Path(sys.executable).parent / "awd-bench"  # the console script of this environment
DOCS_EXIT = ROOT / "docs" / "getting-started.md"


def run(args: list[str], cwd: Path = ROOT, exe: list[str] | None = None, **env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AWD_EXECUTOR", "AWD_STORE"))}
    return subprocess.run([*(exe or [str(AWD_BENCH)]), *args], cwd=cwd, env={**base, **env}, capture_output=True,
                          text=True, timeout=300)


@pytest.fixture()
def cli_globals(monkeypatch):
    """cli.main sets sys.argv, sys.path and PATH as a fresh process would; this test process gets them back."""
    monkeypatch.setattr(sys, "argv", list(sys.argv))
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setenv("PATH", os.environ.get("PATH", ""))


@pytest.mark.parametrize("name", sorted(cli.COMMANDS))
def test_every_command_answers_help_with_its_own_usage(name, capsys, cli_globals):
    with pytest.raises(SystemExit) as done:
        cli.main([name, "--help"])
    assert done.value.code in (0, None)
    out = capsys.readouterr().out
    assert out.startswith(f"usage: awd-bench {name} "), out[:300]


def test_the_command_list_and_the_issue_examples_through_the_console_script():
    top = run(["--help"])
    assert top.returncode == 0 and all(f"  {name} " in top.stdout for name in cli.COMMANDS)
    assert "exit status:" in top.stdout and cli.EXIT_CODES in top.stdout
    for name in ("check", "status"):  # were `--help: no such file` and `usage: python -m jobs`
        proc = run([name, "--help"])
        assert proc.returncode == 0 and proc.stdout.startswith(f"usage: awd-bench {name} "), proc.stdout
    assert run(["status", "--help"], exe=[sys.executable, "-m", "jobs"]).stdout.startswith("usage: python -m jobs ")


def bad_cases(tmp: Path) -> list[tuple[list[str], dict, int, str]]:
    (tmp / "bad.yaml").write_text("train: [\n")
    return [
        (["check", "nope.yaml"], {}, 2, "nope.yaml: no such file"),
        (["check", str(tmp / "bad.yaml")], {}, 2, "invalid YAML"),
        (["check", "--dta"], {}, 2, "unrecognized arguments: --dta"),
        (["dry-run", "--params", "nope.yaml"], {}, 2, "ERROR: nope.yaml: no such file"),
        (["dry-run", "--params", str(tmp)], {}, 2, "Is a directory"),
        (["dry-run", "--tflops", "-1"], {}, 2, "--tflops must be > 0"),
        (["dry-run"], {"AWD_EXECUTOR_CONFIG": str(tmp / "none.yaml")}, 1, "none.yaml': no such file"),
        (["status", "--store", str(tmp / "none")], {}, 2, "ERROR: no run store at"),
        (["cancel", "--kind"], {}, 2, "expected one argument"),
        (["gc", "--keep-commits", "x"], {}, 2, "invalid int value: 'x'"),
        (["store", "sideways"], {}, 2, "invalid choice: 'sideways'"),
        (["nosuch"], {}, 2, "unknown command 'nosuch'"),
    ]


def test_a_mistake_is_one_line_and_a_documented_status_never_a_traceback(tmp_path):
    for args, env, status, says in bad_cases(tmp_path):
        proc = run(args, **env)
        assert (proc.returncode, "Traceback" in proc.stderr) == (status, False), (args, proc.stderr[-2000:])
        assert says in proc.stderr, (args, proc.stderr[-2000:])


def test_repro_runs_dvc_from_this_environment_without_it_on_path(tmp_path):
    """`awd-bench repro` with a bare PATH (no venv activated) finds dvc beside its own Python; in a directory that
    is no DVC project, dvc says so itself."""
    proc = run(["repro", "--dry"], cwd=tmp_path, PATH="/usr/bin:/bin")
    assert "No such file or directory: 'dvc'" not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode != 0 and "ERROR:" in proc.stderr  # dvc's own error: not a git/DVC repository


def test_without_dvc_or_outside_the_environment_it_says_what_to_do(tmp_path):
    """A Python that is not the project's environment (here: its interpreter seen from a folder without a venv,
    so none of the packages and no dvc beside it)."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "python").symlink_to(sys.executable)
    exe = [str(bindir / "python"), "-m", "pipeline.cli"]
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    no_dvc = run(["repro"], cwd=tmp_path, exe=exe, **env)
    assert no_dvc.returncode == 1 and "Traceback" not in no_dvc.stderr, no_dvc.stderr
    assert no_dvc.stderr.startswith("ERROR: dvc is not installed") and "make setup" in no_dvc.stderr
    assert run(["repro", "--help"], cwd=tmp_path, exe=exe, **env).stdout.startswith("usage: awd-bench repro ")
    bare = run(["check"], cwd=tmp_path, exe=exe, **env)
    assert bare.returncode == 1 and "Traceback" not in bare.stderr, bare.stderr
    assert bare.stderr.startswith(f"ERROR: {bindir / 'python'} has no module ") and "make setup" in bare.stderr


def test_check_and_python_m_pipeline_params_accept_the_same_method_paths(tmp_path):
    """The plugin example of docs/adding-a-method.md: `examples.sgdw:SGDW` resolves from the working directory with
    either command, and from neither elsewhere."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["methods"] = {"sgdw": "examples.sgdw:SGDW"}
    adv = params["suites"]["adversarial"][0]
    adv["methods"] = {"fixed": adv.pop("wds"), "awd": adv.pop("dogs"), "sgdw": [1.0e-3]}
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    for exe in ([str(AWD_BENCH), "check"], [sys.executable, "-m", "pipeline.params"]):
        here = run([str(path)], exe=exe)
        assert here.returncode == 0 and f"{path}: ok" in here.stdout, (exe, here.stderr)
        elsewhere = run([str(path)], cwd=tmp_path, exe=exe)
        assert elsewhere.returncode == 2 and "module 'examples' not found" in elsewhere.stderr, (exe, elsewhere)


def test_exit_codes_are_the_same_in_the_command_the_readme_and_the_docs():
    codes = dict(re.findall(r"^  (\d+) +(\S.*)$", cli.EXIT_CODES, re.M))
    assert set(codes) == {"0", "1", "2", "130"}
    table = dict(re.findall(r"^\| (\d+) \| (.+?) \|$", DOCS_EXIT.read_text(), re.M))
    assert set(table) == set(codes), table
    readme = re.search(r"exit status (.*?)\)\.", " ".join((ROOT / "README.md").read_text().split()))
    assert readme and re.findall(r"\*\*(\d+)\*\*", readme[1]) == ["0", "1", "2", "130"], readme
    assert "getting-started.md#commands-and-exit-status" in readme[1]
