"""What the fault tests (tests/slurm/test_faults_*.py) share: a driver run in its own process on tiny units
(tests/jobfns.py's `record`), its log to read while the fault lasts, and `outage()`, which holds a lock against
another fault test and puts the cluster back whatever happens (slurmctld and slurmdbd running, the node resumed):
other sessions use the same cluster."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import subprocess
import sys
import typing as tp
from pathlib import Path

from tests.slurm_util import REPO, wait_until

SCRIPT = REPO / "scripts" / "local-slurm.sh"
TESTS = REPO / "tests"
LOCK = Path("/tmp/awd-slurm-faults.lock")

DRIVER = """
import json, sys
from jobs import ExecutorConfig, Unit, unit_key
from jobs.backends import slurm
from jobs.driver import run_units
from pipeline.common import exit_status

spec = json.loads(sys.argv[1])
slurm.SlurmBackend.lost_grace_s = spec.get("grace_s", 5.0)  # the shared-filesystem lag a real cluster has: none here
units = [Unit("toy", unit_key("toy", {"x": x, "tag": spec["tag"]}, "c0de"), "jobfns:record",
              {"x": x, "counter": f"{spec['dir']}/count-{x}.txt", "started": f"{spec['dir']}/started-{x}",
               **spec["config"]}, label=f"x={x}") for x in range(spec["n"])]
cfg = ExecutorConfig(kind="slurm", cpus_per_task=1, timeout_min=5, poll_s=1, check_gpus=False, **spec["cfg"])

def main():
    out = run_units(units, spec["store"], cfg, desc="faults")
    print("RESULTS " + json.dumps(out, sort_keys=True))

sys.exit(exit_status(main))
"""


def env() -> dict[str, str]:
    # the jobs import jobfns by name (sbatch passes the environment on); heartbeats every 2 s
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), str(REPO)]), "AWD_HEARTBEAT_S": "2"}


class Driver:
    """`run_units` on `n` units in a process of its own; `log` is its stdout and stderr together."""

    def __init__(self, tmp: Path, store: Path, n: int, tag: str, cfg: dict | None = None, **config: tp.Any):
        self.tmp, self.log = tmp, tmp / f"driver-{tag}.log"
        spec = {"n": n, "tag": tag, "dir": str(tmp), "store": str(store), "cfg": cfg or {}, "config": config}
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen([sys.executable, "-c", DRIVER, json.dumps(spec)], cwd=REPO, env=env(),
                                         stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def says(self, words: str, timeout: float) -> str:
        """Waits until the log holds `words` and returns that line."""
        def found() -> str | None:
            return next((line for line in self.text().splitlines() if words in line), None)

        try:
            return wait_until(found, timeout, interval=0.5, what=f"the driver to say {words!r}")
        except TimeoutError:
            raise AssertionError(f"the driver never said {words!r}; its log:\n{self.text()}") from None

    def wait(self, timeout: float) -> tuple[int, dict]:
        """Exit status and results (empty when it failed)."""
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError(f"the driver did not finish in {timeout}s; its log:\n{self.text()}") from None
        line = next((ln for ln in self.text().splitlines() if ln.startswith("RESULTS ")), None)
        return rc, json.loads(line[len("RESULTS "):]) if line else {}

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)

    def started(self, x: int) -> bool:
        return (self.tmp / f"started-{x}").exists()

    def runs(self, x: int) -> int:
        path = self.tmp / f"count-{x}.txt"
        return len(path.read_text().splitlines()) if path.exists() else 0


def local_slurm(*args: str) -> None:
    subprocess.run([str(SCRIPT), *args], check=True, capture_output=True, text=True, timeout=120)


def node_state(node: str) -> str:
    return subprocess.run(["sinfo", "-h", "-n", node, "-o", "%T"], capture_output=True, text=True,
                          timeout=30).stdout.strip()


def foreign_jobs(store: Path) -> list[str]:
    """Queued or running jobs not started from under `store`'s folder (another session's)."""
    out = subprocess.run(["squeue", "-h", "-o", "%i|%Z"], capture_output=True, text=True, timeout=30).stdout
    return [line.split("|")[0] for line in out.splitlines()
            if "|" in line and not Path(line.split("|", 1)[1]).is_relative_to(REPO)]


def cancel_under(store: Path) -> None:
    """scancel the jobs whose logs are under `store` (what a failing test leaves)."""
    out = subprocess.run(["squeue", "-h", "-o", "%i|%o"], capture_output=True, text=True, timeout=30).stdout
    ids = [line.split("|")[0] for line in out.splitlines() if str(store) in line]
    if ids:
        subprocess.run(["scancel", *ids], capture_output=True, timeout=30)


@contextlib.contextmanager
def outage(node: str | None = None) -> tp.Iterator[None]:
    """One fault test at a time; afterwards slurmctld and slurmdbd run again and `node` is resumed, pass or fail."""
    with open(LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            local_slurm("resume", "slurmdbd")
            local_slurm("resume", "slurmctld")
            if node is not None and node_state(node).rstrip("*~#") in ("down", "drained", "draining"):
                subprocess.run(["scontrol", "update", f"nodename={node}", "state=resume"], capture_output=True,
                               timeout=30)
