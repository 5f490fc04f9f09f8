"""Finding 7: params and executor files that exhausted memory, time or the stack (a 40-byte geomspace asking for
10^12 floats, a 1 KB YAML alias bomb, 100,000 nested `[`) are refused with a clear error, quickly and small.

Each input is written to a file and read by a fresh interpreter the way the command line reads it (`awd-bench check`
for params, a stage's `exit_status` around `load_executor_config` for executor.yaml). The child times the call
itself (start-up excluded) and its peak RSS comes from `wait4`; the baseline is a child that imports the same modules
and stops there. No second user is needed: these live here because they are part of the same audit.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from jobs.bounded_yaml import LIMITS
from pipeline.limits import MAX_GRID_POINTS

REPO = Path(__file__).resolve().parents[2]
MAX_SECONDS = 1.0  # for the refusal itself, measured inside the child
MAX_EXTRA_MB = 200  # peak RSS over the baseline child's
CHILD_AS_BYTES = 4 << 30  # a regression fails with MemoryError instead of swapping a shared machine

BASE_PARAMS = """\
train: {model: tiny, epochs: 1, batch_size: 8, lr: 0.1}
suites:
  grid:
    - {dataset: digits, name: g, lrs: LRS, wds: [0.0005]}
"""

# The measured call, behind the imports shared with the baseline (which stops at the marker).
PARAMS_CHILD = """\
import json, sys, time
import pipeline.cli, pipeline.common, pipeline.params
#MEASURE
path, timing = sys.argv[1:3]  # awd-bench's main replaces sys.argv
t = time.perf_counter()
status = pipeline.cli.main(["check", path])
json.dump({"seconds": time.perf_counter() - t}, open(timing, "w"))
sys.exit(status)
"""
VALIDATE_CHILD = """\
import json, sys, time
import pipeline.cli, pipeline.common, pipeline.params
#MEASURE
raw = {"train": {"model": "tiny", "epochs": 1, "batch_size": 8, "lr": 0.1},
       "suites": {"adversarial": [{"dataset": "digits", "wds": [0.0005], "dogs": [0.02],
                                   "best_seeds": list(range(1, int(sys.argv[1]) + 1))}]}}
t = time.perf_counter()
try:
    pipeline.params.validate(raw, source="api")
    status = 0
except pipeline.params.ParamsError as e:
    print(e, file=sys.stderr)
    status = 2
json.dump({"seconds": time.perf_counter() - t}, open(sys.argv[2], "w"))
sys.exit(status)
"""
EXECUTOR_CHILD = """\
import json, sys, time
import jobs.executors, pipeline.common
#MEASURE
t = time.perf_counter()
status = pipeline.common.exit_status(lambda: jobs.executors.load_executor_config(sys.argv[1]) and 0)
json.dump({"seconds": time.perf_counter() - t}, open(sys.argv[2], "w"))
sys.exit(status)
"""


@dataclass(frozen=True)
class Run:
    status: int
    stderr: str
    seconds: float | None  # of the measured call; None for a baseline
    peak_mb: float


# Runs the child and reports its exit status and peak RSS (`/usr/bin/time -v` in a few lines). A child forked from
# pytest itself would report pytest's own RSS (hundreds of MB with torch loaded): the pages a fork copies count
# towards the child's peak until it execs, so the fork happens in this small interpreter instead.
SPAWNER = """\
import json, os, resource, sys
pid = os.fork()
if pid == 0:
    resource.setrlimit(resource.RLIMIT_AS, (int(sys.argv[1]),) * 2)  # a regression fails, not the machine
    resource.setrlimit(resource.RLIMIT_CPU, (int(sys.argv[2]),) * 2)
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
    os.execv(sys.argv[3], sys.argv[3:])
_, status, usage = os.wait4(pid, 0)
print(json.dumps({"status": os.waitstatus_to_exitcode(status), "maxrss_kb": usage.ru_maxrss}))
"""


def _child(code: str, *args: str, cpu_seconds: int = 60) -> Run:
    """Runs `code` in a fresh interpreter: its exit status, stderr, the seconds it wrote and its peak RSS."""
    with tempfile.TemporaryDirectory() as tmp:
        timing = Path(tmp) / "timing.json"
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
        done = subprocess.run([sys.executable, "-I", "-S", "-c", SPAWNER, str(CHILD_AS_BYTES), str(cpu_seconds),
                               sys.executable, "-c", code, *args, str(timing)],
                              cwd=REPO, env=env, capture_output=True, text=True, timeout=cpu_seconds * 4)
        report = json.loads(done.stdout)
        seconds = json.loads(timing.read_text())["seconds"] if timing.exists() else None
        return Run(report["status"], done.stderr, seconds, report["maxrss_kb"] / 1024)


_BASELINES: dict[str, float] = {}


def _baseline_mb(code: str) -> float:
    """Peak RSS of a child that only imports what the measured one imports before its call."""
    head = code.split("#MEASURE")[0]
    if head not in _BASELINES:
        run = _child(head + "import sys\nsys.exit(0)\n", "-")
        assert run.status == 0, run.stderr
        _BASELINES[head] = run.peak_mb
    return _BASELINES[head]


def _refused(code: str, *args: str, status: int, says: tuple[str, ...]) -> Run:
    run = _child(code, *args)
    base = _baseline_mb(code)
    print(f"refused in {run.seconds}s, peak {run.peak_mb:.0f} MB (baseline {base:.0f} MB): {run.stderr.strip()[:300]}")
    assert run.status == status, f"exit {run.status}, expected {status}:\n{run.stderr[-3000:]}"
    assert "Traceback" not in run.stderr, run.stderr[-3000:]
    assert all(s in run.stderr for s in says), (says, run.stderr[-3000:])
    assert len(run.stderr) < 2000, "the error message repeats the input instead of naming it"
    assert run.seconds is not None and run.seconds < MAX_SECONDS, run.seconds
    assert run.peak_mb - base < MAX_EXTRA_MB, (run.peak_mb, base)
    return run


def _params_file(tmp_path: Path, lrs: str, **replace: str) -> Path:
    text = BASE_PARAMS.replace("LRS", lrs)
    for old, new in replace.items():
        text = text.replace(old, new)
    path = tmp_path / "params.yaml"
    path.write_text(text)
    return path


def _alias_bomb(name: str, levels: int, item: str = "x") -> list[str]:
    """Nodes `&<name>i [...]`, each of ten aliases to the one before: 10^levels leaves from about 40 * levels bytes."""
    rows = [f"&{name}0 [{', '.join([item] * 10)}]"]
    rows += [f"&{name}{i} [{', '.join([f'*{name}{i - 1}'] * 10)}]" for i in range(1, levels + 1)]
    return rows


def test_the_base_params_file_is_valid(tmp_path):
    """The inputs below differ from this valid file only by the bomb: what refuses them is the cap."""
    from pipeline.params import load_params

    assert load_params(_params_file(tmp_path, "{geomspace: [0.001, 1, 5]}")).suites.grid[0].lrs[-1] == 1.0
    assert load_params(_params_file(tmp_path, "{linspace: [0.001, 1, 1000]}")).suites.grid[0].lrs[0] == 0.001


def test_bomb_geomspace_num_1e12(tmp_path):
    path = _params_file(tmp_path, "{geomspace: [0.00001, 1, 1000000000000]}")
    _refused(PARAMS_CHILD, str(path), status=2,
             says=(f"{path}: suites.grid[0].lrs.geomspace[2]: geomspace of 1000000000000 values; a grid has at "
                   f"most {MAX_GRID_POINTS}",))


def test_bomb_linspace_1e5_values(tmp_path):
    path = _params_file(tmp_path, "{linspace: [0.001, 1, 100000]}")
    _refused(PARAMS_CHILD, str(path), status=2,
             says=(f"{path}: suites.grid[0].lrs.linspace[2]: linspace of 100000 values; a grid has at most "
                   f"{MAX_GRID_POINTS}",))


def test_bomb_best_seeds_2e5(tmp_path):
    seeds = ", ".join(map(str, range(1, 200_001)))
    path = _params_file(tmp_path, "[0.1]", **{"  grid:\n    - {dataset: digits, name: g, lrs: [0.1], wds: [0.0005]}":
                                             f"  adversarial:\n    - {{dataset: digits, wds: [0.0005], dogs: [0.02], "
                                             f"best_seeds: [{seeds}]}}"})
    assert "best_seeds" in path.read_text()
    _refused(PARAMS_CHILD, str(path), status=2, says=(f"{path}: file larger than {LIMITS.file_bytes} bytes",))
    # the same list handed to validate() by a caller, past the file reader
    _refused(VALIDATE_CHILD, "200000", status=2,
             says=(f"api: suites.adversarial[0].best_seeds: a list of 200000 entries; at most {LIMITS.items} allowed",))


def test_bomb_yaml_alias_in_model_kw(tmp_path):
    # a list that is no model keyword: the error message used to repr all 10^9 values of it
    bomb = f"[{', '.join(_alias_bomb('a', levels=9))}]"
    path = _params_file(tmp_path, "[0.1]", **{"model: tiny,": f"model: tiny, model_kw: {{a: {bomb}}},"})
    assert path.stat().st_size < 1000
    _refused(PARAMS_CHILD, str(path), status=2,
             says=(f"{path}: train.model_kw.a[", f"expands to more than {LIMITS.nodes} values (YAML aliases counted "
                   f"at every use); at most {LIMITS.nodes} allowed"))


def test_bomb_yaml_alias_in_executor_setup(tmp_path):
    # a mapping where the list of shell lines belongs: the error message used to repr all 10^8 values of it
    bomb = ", ".join(f"s{i}: {node}" for i, node in enumerate(_alias_bomb("s", levels=8, item="echo lol")))
    path = tmp_path / "executor.yaml"
    path.write_text(f"kind: local\nsetup: {{{bomb}}}\n")
    assert path.stat().st_size < 1000
    _refused(EXECUTOR_CHILD, str(path), status=1,
             says=(f"ERROR: executor config {path}: setup.s", f"expands to more than {LIMITS.nodes} values"))


@pytest.mark.parametrize("which", ["params", "executor"])
def test_bomb_yaml_100k_deep(tmp_path, which):
    deep = "[" * 100_000 + "]" * 100_000
    if which == "params":
        path = _params_file(tmp_path, "[0.1]", **{"model: tiny,": f"model: tiny, model_kw: {{a: {deep}}},"})
        code, status, key = PARAMS_CHILD, 2, f"{path}: train.model_kw.a"
    else:
        path = tmp_path / "executor.yaml"
        path.write_text(f"kind: local\nsetup: {deep}\n")
        code, status, key = EXECUTOR_CHILD, 1, f"ERROR: executor config {path}: setup"
    _refused(code, str(path), status=status, says=(key, f"nested more than {LIMITS.depth} levels deep"))
