"""Submission a scheduler accepts: the queued-jobs cap, submit-limit refusals waited out, sbatch errors backed off.

A fake SLURM executor stands in for sbatch (the real cluster's QOS limits: tests/slurm/test_slurm_qos.py): it queues the
jobs it accepts and runs one each time the driver waits, so what the driver keeps queued can be counted exactly.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

import jobs.driver as submit_mod
import jobs.job as job_mod
import jobs.unit_driver as loop
from jobs import ExecutorConfig, RunStore, Unit, run_units, unit_key
from jobs.driver import run_units_report
from tests.integration.test_submit_local import make_units, runs

TESTS = Path(__file__).resolve().parents[1]


class FakeJob:
    def __init__(self, job_id: str, folder: Path):
        self.job_id = job_id
        self.paths = type("Paths", (), {"stdout": folder / f"{job_id}.out", "stderr": folder / f"{job_id}.err"})()


class FakeSlurm:
    def __init__(self, limit=None, errors=()):
        self.queued, self.peak, self.refused, self.accepted = [], 0, 0, 0
        self.limit, self.errors = limit, list(errors)

    def make_executor(self, cfg, log_dir):
        self.log_dir = Path(log_dir)
        self.mem_asked = getattr(self, "mem_asked", []) + [cfg.mem_gb]
        self.nice = cfg.extra.get("nice")
        return self

    def submit_array(self, batches):
        if self.errors:
            raise RuntimeError(self.errors.pop(0))
        if self.limit is not None and len(self.queued) + self.holding() + len(batches) > self.limit:
            self.refused += 1  # what sbatch says over MaxSubmitJobsPerUser; an array is refused whole
            raise RuntimeError("sbatch: error: QOSMaxSubmitJobPerUserLimit\nsbatch: error: Batch job submission "
                               "failed: Job violates accounting/QOS policy (job submit limit, user's size and/or time "
                               "limits)")
        jobs = []
        for batch in batches:
            self.accepted += 1
            self.order = getattr(self, "order", []) + [(u.label, self.nice) for u in batch.units]
            self.events = getattr(self, "events", []) + [("submit", u.label, u.handoff_s) for u in batch.units]
            jobs.append(FakeJob(str(90000 + self.accepted), self.log_dir))
            self.queued.append(batch)
            self.batches = getattr(self, "batches", []) + [batch.units]
        self.peak = max(self.peak, len(self.queued))
        return jobs

    def hand_over(self, store, units):
        """A job holding its GPU for a hand-off stays in the queue (and under the limits) until the driver's word."""
        self.events = getattr(self, "events", []) + [("hand_over", u.label, u.handoff_s) for u in units]
        if units:
            self.held = getattr(self, "held", []) + [(store, units)]
        return False

    def holding(self):
        self.held = [(st, us) for st, us in getattr(self, "held", []) if not all(st.handed_off(u.kind, u.key) for u in us)]
        return len(self.held)

    def run_one(self, seconds):
        if self.queued:
            try:
                self.queued.pop(0)()  # the job: runs its units in this process
            except job_mod.UnitError:
                pass  # a job whose unit failed exits non-zero; the unit's error.txt says why


@pytest.fixture
def fake(monkeypatch, use_backend):
    monkeypatch.syspath_prepend(str(TESTS))

    def install(submit_limit=None, **kwargs):
        slurm = FakeSlurm(**kwargs)
        use_backend("slurm", slurm.make_executor, submit_limit=submit_limit)
        monkeypatch.setattr(loop, "_sleep", slurm.run_one)
        monkeypatch.setattr(loop, "SUBMIT_BACKOFF_S", (0.0, 0.0))
        # jobs run inside the driver's wait here: one that held its GPU for a hand-off would wait for itself
        monkeypatch.setattr(job_mod, "hand_over", slurm.hand_over)
        return slurm

    return install


SLURM = ExecutorConfig(kind="slurm", poll_s=0.01)


def test_max_queued_caps_what_is_queued_and_submits_more_as_jobs_end(tmp_path, fake):
    slurm = fake()
    units = make_units(tmp_path, range(7))
    out = run_units(units, RunStore(tmp_path / "runs"), ExecutorConfig(kind="slurm", poll_s=0.01, max_queued=3),
                    desc="toy", stream=io.StringIO())
    assert sorted(r["double"] for r in out.values()) == [0, 2, 4, 6, 8, 10, 12]
    assert slurm.peak == 3 and slurm.accepted == 7 and [runs(tmp_path, x) for x in range(7)] == [1] * 7


def test_submit_limit_refusal_means_wait_and_submit_later(tmp_path, fake):
    slurm = fake(limit=2)
    units = make_units(tmp_path, range(6))
    stream = io.StringIO()
    out = run_units(units, RunStore(tmp_path / "runs"), SLURM, desc="toy", stream=stream)
    assert len(out) == 6 and slurm.accepted == 6 and slurm.peak <= 2 and slurm.refused >= 1
    text = stream.getvalue()
    assert "toy: the scheduler refused 6 more jobs (submit limit): sbatch: error: Batch job submission failed" in text
    assert "waiting for running jobs to end" in text


def test_a_submit_limit_read_from_sacctmgr_is_never_crossed_nor_probed(tmp_path, fake, monkeypatch):
    slurm = fake(limit=2, submit_limit=2)
    stream = io.StringIO()
    out = run_units(make_units(tmp_path, range(6)), RunStore(tmp_path / "runs"), SLURM, desc="toy", stream=stream)
    assert len(out) == 6 and slurm.accepted == 6 and slurm.peak == 2 and slurm.refused == 0
    assert "toy: the scheduler accepts at most 2 jobs of this user at once (sacctmgr)" in stream.getvalue()


def test_longest_chains_start_first_and_shorter_ones_are_niced(tmp_path, fake):
    """Order and --nice follow a unit's chain (its estimate + the work that waits on it), not its estimate alone:
    a short sweep run whose extra seed follows outranks a longer run that nothing waits on."""
    slurm = fake()
    units = make_units(tmp_path, range(4))
    for unit, (estimate_h, tail_h) in zip(units, [(1.0, 0.0), (3.0, 0.0), (2.0, 2.5), (0.01, 0.0)]):
        unit.estimate_s, unit.tail_s = estimate_h * 3600, tail_h * 3600
    run_units(units, RunStore(tmp_path / "runs"), SLURM, desc="toy", stream=io.StringIO())
    assert slurm.order == [("x=2", 0), ("x=1", 90), ("x=0", 210), ("x=3", 255)]  # minutes shorter, in 15-min steps
    # a user's own `extra: {nice: ...}` wins; chain_priority: false asks for none
    for cfg, nice in ((SLURM.replace(extra={"nice": 7}), 7), (SLURM.replace(chain_priority=False), None)):
        slurm = fake()
        more = make_units(tmp_path, range(10, 12))
        more[0].tail_s = 3600.0
        run_units(more, RunStore(tmp_path / f"runs{nice}"), cfg, desc="toy", stream=io.StringIO())
        assert {n for _, n in slurm.order} == {nice}


def test_the_head_of_the_longest_chain_keeps_its_gpu_until_its_follow_up_is_submitted(tmp_path, fake, monkeypatch):
    """A sweep run whose end makes an extra seed ready holds its GPU (a bounded time: 2 % of its estimate) until the
    driver has submitted the extra seed, so that the scheduler gives the GPU to it and not to a job queued before;
    a unit on a shorter chain, or one nothing waits on, ends at once."""
    slurm = fake()
    head, short = make_units(tmp_path, range(2))
    head.estimate_s, head.tail_s = 3600.0, 7200.0  # chain 3 h: the campaign's longest
    short.estimate_s, short.tail_s = 3600.0, 600.0  # something waits on it, but its chain is 2 h shorter
    (seed,) = make_units(tmp_path, [9])
    seed.estimate_s = 7200.0
    store = RunStore(tmp_path / "runs")
    real_hand_off = RunStore.hand_off

    def hand_off(self, kind, key):
        slurm.events.append(("hand_off", key))
        real_hand_off(self, kind, key)

    monkeypatch.setattr(RunStore, "hand_off", hand_off)
    report = run_units_report([head, short], store, SLURM, desc="toy", stream=io.StringIO(),
                              follow=lambda unit, result: [seed] if unit.key == head.key and result else [])
    assert not report.failures and len(report.results) == 3
    assert ("submit", "x=0", 72.0) in slurm.events and ("submit", "x=1", 0.0) in slurm.events
    assert ("hand_over", "x=0", 72.0) in slurm.events and ("hand_over", "x=1", 0.0) not in slurm.events
    assert [e for e in slurm.events if e[0] == "hand_off"] == [("hand_off", head.key)]
    # the word to the held job comes once the follow-up is submitted, never before
    assert slurm.events.index(("submit", "x=9", 0.0)) < slurm.events.index(("hand_off", head.key))
    assert store.handed_off("toy", head.key) and not store.handed_off("toy", short.key)


def test_a_restarted_driver_tells_the_jobs_its_killed_predecessor_left_holding_their_gpu(tmp_path, fake):
    """A unit found done whose job may still wait for a killed driver's word gets it from the next driver, once; a
    unit on a shorter chain, or an entry of another member, gets none."""
    fake()
    head, short = make_units(tmp_path, range(2))
    head.estimate_s, head.tail_s, short.estimate_s = 3600.0, 7200.0, 3600.0
    store = RunStore(tmp_path / "runs")
    for unit in (head, short):
        store.workdir(unit.kind, unit.key)
        store.commit(unit.kind, unit.key, {"double": 0})
    report = run_units_report([head, short], store, SLURM, desc="toy", stream=io.StringIO(),
                              follow=lambda unit, result: [])  # a stage with a flow, as the train stage's
    assert len(report.results) == 2 and store.handed_off("toy", head.key) and not store.handed_off("toy", short.key)


def test_a_job_holding_its_gpu_for_a_hand_off_still_counts_against_the_submit_limit(tmp_path, fake):
    slurm = fake(limit=2, submit_limit=2)
    head, other = make_units(tmp_path, range(2))
    head.estimate_s, head.tail_s, other.estimate_s = 3600.0, 7200.0, 3600.0
    (seed,) = make_units(tmp_path, [9])
    report = run_units_report([head, other], RunStore(tmp_path / "runs"), SLURM, desc="toy", stream=io.StringIO(),
                              follow=lambda unit, result: [seed] if unit.key == head.key and result else [])
    assert len(report.results) == 3 and ("hand_over", "x=0", 72.0) in slurm.events
    assert slurm.refused == 0  # the limit read from sacctmgr is never crossed, held jobs included


def test_short_units_share_jobs_while_more_wait_than_the_queue_takes_and_not_at_the_tail(tmp_path, fake):
    slurm = fake()
    units = make_units(tmp_path, range(7))
    for unit in units:
        unit.estimate_s = 300.0  # an AutoAttack shard's few minutes: a job's start-up would be a tenth of it
    out = run_units(units, RunStore(tmp_path / "runs"), ExecutorConfig(kind="slurm", poll_s=0.01, max_queued=2),
                    desc="toy", stream=io.StringIO())
    assert len(out) == 7 and [runs(tmp_path, x) for x in range(7)] == [1] * 7
    # 900 s of work a job while more wait than the 2 the queue takes; the last one, with room to spare, alone
    assert [len(batch) for batch in slurm.batches] == [3, 3, 1]


def test_transient_sbatch_errors_are_retried_with_backoff(tmp_path, fake):
    fake(errors=["sbatch: error: Socket timed out on send/recv operation", "Command '['timeout', '-k', '5', "
          "'60', 'sbatch', 'x.sh']' returned non-zero exit status 124."])
    units = make_units(tmp_path, range(2))
    stream = io.StringIO()
    assert len(run_units(units, RunStore(tmp_path / "runs"), SLURM, desc="toy", stream=stream)) == 2
    assert stream.getvalue().count("toy: submitting 2 slurm jobs failed: ") == 2
    assert "Socket timed out" in stream.getvalue() and "retrying in 0s" in stream.getvalue()


def test_sbatch_failing_past_the_give_up_time_fails_the_units_not_the_driver(tmp_path, fake, monkeypatch):
    fake(errors=["sbatch: error: Batch job submission failed: Unexpected message received"] * 1000)
    monkeypatch.setattr(loop, "SUBMIT_GIVE_UP_S", 0.0)
    store = RunStore(tmp_path / "runs")
    report = submit_mod.run_units_report(make_units(tmp_path, range(3)), store, SLURM, desc="toy",
                                         stream=io.StringIO())
    assert report.results == {} and len(report.failures) == 3
    assert all("not submitted: toy: submitting 3 slurm jobs failed: sbatch: error: Batch job submission failed: "
               "Unexpected message received" in f.error
               for f in report.failures)


def test_scheduler_calls_have_a_timeout():
    import submitit

    from jobs.executors import _timed_sbatch, timed

    assert timed(["sacct", "-j", "1"]) == ["timeout", "-k", "5", "60", "sacct", "-j", "1"]
    with _timed_sbatch():
        cmd = submitit.slurm.slurm.SlurmExecutor._make_submission_command(None, Path("x.sh"))
    assert cmd[:4] == ["timeout", "-k", "5", "60"] and cmd[4] == "sbatch"
    loop.JobWatch()  # installs the sacct timeout on submitit's shared watcher
    watcher = submitit.SlurmJob.watcher
    watcher.register_job("424242")
    try:
        assert watcher._make_command()[:5] == ["timeout", "-k", "5", "60", "sacct"]
    finally:
        watcher._registered.discard("424242")


def out_of_memory_once(config, workdir, store):
    marker = Path(config["marker"])
    if marker.exists():
        marker.unlink()
        raise MemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    return {"ok": config["x"]}


def test_out_of_memory_retry_asks_for_more_memory_capped(tmp_path, fake):
    slurm = fake()
    marker = tmp_path / "oom"
    marker.touch()
    unit = Unit("toy", unit_key("toy", {"x": 1}, "c0de"), "integration.test_submit_limits:out_of_memory_once",
                {"x": 1, "marker": str(marker)}, label="x=1")
    cfg = ExecutorConfig(kind="slurm", poll_s=0.01, mem_gb=32, oom_mem_factor=1.5, max_mem_gb=40)
    stream = io.StringIO()
    assert run_units([unit], RunStore(tmp_path / "runs"), cfg, desc="toy", stream=stream) == {unit.key: {"ok": 1}}
    assert slurm.mem_asked == [32, 40]  # 32 x 1.5 = 48, capped at 40
    assert "attempt 2 of 3, mem 40 GB: out of memory: MemoryError: CUDA out of memory" in stream.getvalue()
    (attempt,) = RunStore(tmp_path / "runs").attempts("toy", unit.key)
    assert attempt["cause"].startswith("out of memory: MemoryError") and attempt["retry"] is True


def test_the_submit_lock_is_free_while_sbatch_runs_and_units_are_claimed(tmp_path, fake):
    import filelock

    slurm = fake()
    store = RunStore(tmp_path / "runs")
    units = make_units(tmp_path, range(2))
    seen = []
    real = slurm.submit_array

    def submit_array(batches):
        lock = filelock.FileLock(str(store.root / ".submit.lock"))
        lock.acquire(timeout=0)  # another driver could take the lock now: sbatch is not run under it
        lock.release()
        seen.extend(store.job_record("toy", u.key)["executor"] for u in units)  # ... and finds the units claimed
        return real(batches)

    slurm.submit_array = submit_array
    assert len(run_units(units, store, SLURM, desc="toy", stream=io.StringIO())) == 2
    assert seen == ["claim", "claim"]


def test_a_claim_by_a_live_driver_is_waited_for_and_an_abandoned_one_resubmitted(tmp_path, fake, monkeypatch):
    import subprocess
    import sys

    from jobs import store as store_mod

    slurm = fake()
    store = RunStore(tmp_path / "runs")
    live, dead = make_units(tmp_path, range(2))
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        with monkeypatch.context() as m:
            m.setattr(store_mod.os, "getpid", lambda: other.pid)
            store.claim(live.kind, live.key)  # claimed by another live driver on this host
        store.claim(dead.kind, dead.key)
        record = json.loads((store.path(dead.kind, dead.key) / "job.json").read_text())
        record["submitted_at"] -= store_mod.CLAIM_TTL_S + 1  # abandoned long ago
        (store.path(dead.kind, dead.key) / "job.json").write_text(json.dumps(record))

        def wait(seconds):  # the other driver's job lands and finishes the live claim's unit
            slurm.run_one(seconds)
            if store.job_record(live.kind, live.key)["executor"] == "claim":
                job_mod.execute_unit(store, live)

        monkeypatch.setattr(loop, "_sleep", wait)
        out = run_units([live, dead], store, SLURM, desc="toy", stream=io.StringIO())
    finally:
        other.kill()
        other.wait()
    assert sorted(out) == sorted([live.key, dead.key]) and slurm.accepted == 1  # only the abandoned one submitted
