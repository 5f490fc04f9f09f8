"""A per-user submit limit on the real local cluster: the driver waits it out, never crashes, never queues more.

The limit applies only to a dedicated user made for this test (`awdqos`, QOS `awdqos2` with MaxSubmitJobsPerUser=2):
root's jobs, and so the other tests, are untouched. SLURM enforces QOS limits only with
`AccountingStorageEnforce=limits,qos,...` in slurm.conf (scripts/local-slurm.sh writes it; it takes effect when
slurmctld restarts): without it this test skips, saying so.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from tests.slurm_util import REPO, slurm_cluster  # noqa: F401  (fixture)

pytestmark = pytest.mark.slurm

USER, QOS, LIMIT = "awdqos", "awdqos2", 2


def _out(*cmd: str) -> str:
    return subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=60).stdout


def enforced() -> str:
    """Why QOS limits are not enforced, or "" when they are."""
    line = next((ln for ln in _out("scontrol", "show", "config").splitlines()
                 if ln.startswith("AccountingStorageEnforce")), "")
    value = line.split("=", 1)[-1].strip()
    if "qos" not in value or "limits" not in value:
        return (f"slurmctld does not enforce QOS limits (AccountingStorageEnforce = {value!r}); restart the cluster "
                "with scripts/local-slurm.sh, whose slurm.conf sets AccountingStorageEnforce=limits,qos,associations")
    return ""


@pytest.fixture(scope="module")
def limited_user(slurm_cluster):  # noqa: F811
    why = enforced()
    if why:
        pytest.skip(why)
    if os.geteuid() != 0:
        pytest.skip("making the test user and its QOS needs root")
    try:
        pwd.getpwnam(USER)
    except KeyError:
        _out("useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", USER)
    account = _out("sacctmgr", "-n", "-P", "show", "assoc", "user=root", "format=account").split()[0]
    if QOS not in _out("sacctmgr", "-n", "-P", "show", "qos", "format=name").split():
        _out("sacctmgr", "-i", "add", "qos", QOS, f"MaxSubmitJobsPerUser={LIMIT}")
    if USER not in _out("sacctmgr", "-n", "-P", "show", "assoc", f"user={USER}", "format=user").split():
        _out("sacctmgr", "-i", "add", "user", USER, f"account={account}", f"qos={QOS}", f"defaultqos={QOS}")
    # slurmdbd pushes a new association to slurmctld asynchronously: until it arrives, the user's jobs are not limited
    for _ in range(60):
        if f"UserName={USER}(" in _out("scontrol", "show", "assoc_mgr", f"users={USER}", "flags=assoc"):
            break
        time.sleep(0.5)
    else:
        pytest.fail(f"slurmctld never received the association of user {USER!r} (scontrol show assoc_mgr)")
    return USER


DRIVER = textwrap.dedent("""
    import io, json, sys
    from jobs import ExecutorConfig, RunStore, Unit, unit_key
    from jobs.driver import run_units_report
    store, tmp = RunStore(sys.argv[1]), sys.argv[2]
    units = [Unit("toy", unit_key("toy", {"x": x}, "qos"), "tests.jobfns:record",
                  {"x": x, "counter": f"{tmp}/count-{x}.txt", "sleep_s": 3}, label=f"x={x}") for x in range(5)]
    cfg = ExecutorConfig(kind="slurm", cpus_per_task=1, timeout_min=10, poll_s=1)
    stream = io.StringIO()
    report = run_units_report(units, store, cfg, desc="qos", stream=stream)
    print(json.dumps({"done": len(report.results), "failed": [f.line() for f in report.failures],
                      "peak": report.peak_queued, "log": stream.getvalue()}))
""")


def _scheduler_peak(user: str, since: str) -> int:
    """The most jobs (array tasks) of `user` pending or running at once since `since`, from sacct's timestamps."""
    rows = _out("sacct", "-u", user, "-S", since, "-X", "-n", "-P", "-o", "jobid,submit,end").splitlines()
    events = []
    for row in rows:
        _, submit, end = row.split("|")
        events += [(submit, 1), (end if end not in ("", "Unknown") else "9999", -1)]
    peak = now = 0
    for _, step in sorted(events, key=lambda e: (e[0], e[1])):  # an end before a submit at the same second
        now += step
        peak = max(peak, now)
    return peak


@pytest.fixture
def reachable_interpreter():
    """The venv's interpreter often lives under a root-only home (pyenv in /root): let the test user traverse (o+x,
    no listing) the folders on its way for the test's duration, and restore their modes after."""
    changed = []
    for path in (Path(os.path.realpath(sys.executable)), Path(sys.prefix).resolve()):
        for folder in reversed(path.parents):
            mode = folder.stat().st_mode
            if not mode & 0o001:
                folder.chmod(mode | 0o001)
                changed.append((folder, mode))
    yield
    for folder, mode in reversed(changed):
        folder.chmod(mode)


@pytest.mark.parametrize("accounting", ["sacctmgr answers", "sacctmgr fails"])
def test_submit_limit_is_waited_out_and_never_exceeded(limited_user, reachable_interpreter, accounting):
    # pytest's tmp_path is under a root-only directory: the test user needs a folder it can reach and write
    tmp_path = Path(tempfile.mkdtemp(prefix="awd-qos-", dir="/tmp"))
    tmp_path.chmod(0o777)
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs").chmod(0o777)
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    path = os.environ["PATH"]
    if accounting == "sacctmgr fails":  # a site where the user cannot read the limits: sbatch's refusal tells
        shadow = tmp_path / "bin"
        shadow.mkdir()
        (shadow / "sacctmgr").write_text("#!/bin/sh\necho 'sacctmgr: error: access denied' >&2\nexit 1\n")
        (shadow / "sacctmgr").chmod(0o755)
        shadow.chmod(0o755)
        path = f"{shadow}:{path}"
    env = {"PATH": path, "PYTHONPATH": str(REPO), "HOME": str(tmp_path)}
    if os.environ.get("SLURM_CONF"):
        env["SLURM_CONF"] = os.environ["SLURM_CONF"]
    since = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(time.time() - 1))
    proc = subprocess.run(["runuser", "-u", limited_user, "--", "env", *(f"{k}={v}" for k, v in env.items()),
                           sys.executable, str(script), str(tmp_path / "runs"), str(tmp_path)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["done"] == 5 and out["failed"] == [], out
    assert out["peak"] >= 1, out
    # never more than the limit queued or running, as the scheduler saw it (the driver's own count may include jobs
    # that ended since it last polled)
    assert 1 <= _scheduler_peak(limited_user, since) <= LIMIT
    if accounting == "sacctmgr answers":
        # the limit is read before submitting: no array crosses it, none is refused
        assert f"accepts at most {LIMIT} jobs of this user at once" in out["log"], out["log"]
        assert "refused" not in out["log"], out["log"]
    else:
        # the first array (5 jobs) crossed the limit and was refused whole: waited out, never a crash
        assert "the scheduler refused 5 more jobs (submit limit)" in out["log"], out["log"]
        assert "QOSMaxSubmitJobPerUserLimit" in out["log"] or "job submit limit" in out["log"], out["log"]
    shutil.rmtree(tmp_path, ignore_errors=True)
