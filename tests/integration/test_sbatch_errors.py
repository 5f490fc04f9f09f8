"""sbatch's errors classified (jobs/sbatch_errors.py) and what the driver does with each: a submit limit is waited
out, a slow controller backed off, a refused request fails the stage at once with sbatch's words and the key to change.
The driver runs against a scheduler stand-in that answers as sbatch does (tests/integration/test_submit_limits.py's FakeSlurm);
tests/slurm/test_cluster_check_slurm.py checks the words of the real one."""

from __future__ import annotations

import io

import pytest

import jobs.driver as submit_mod
from jobs import ExecutorConfig, RunStore
from jobs.records import job_record
from jobs.sbatch_errors import FIX, RETRY, WAIT, classify
from tests.integration.test_submit_limits import fake  # noqa: F401  (the fixture)
from tests.integration.test_submit_local import make_units, runs

FAILED = "sbatch: error: Batch job submission failed: "


@pytest.mark.parametrize("text, action, first_key", [
    ("sbatch: error: invalid partition specified: gpuu\n" + FAILED + "Invalid partition name specified", FIX,
     "partition"),
    (FAILED + "Invalid account or account/partition combination specified", FIX, "account"),
    (FAILED + "Invalid qos specification", FIX, "qos"),
    (FAILED + "Job's QOS not permitted to use this partition (gpu allows normal not high)", FIX, "qos"),
    ("sbatch: error: Invalid generic resource (gres) specification", FIX, "gres"),
    (FAILED + "Invalid Trackable RESource (TRES) specification", FIX, "gres"),
    (FAILED + "Invalid feature specification", FIX, "constraint"),
    (FAILED + "Requested time limit is invalid (missing or exceeds some limit)", FIX, "timeout_min"),
    (FAILED + "Requested node configuration is not available", FIX, "partition"),
    (FAILED + "Memory required by task is not available", FIX, "mem_gb"),
    ("sbatch: unrecognized option '--exclusiv'\nTry \"sbatch --help\" for more information", FIX, "extra"),
    ("sbatch: error: QOSMaxSubmitJobPerUserLimit\n" + FAILED + "Job violates accounting/QOS policy (job submit "
     "limit, user's size and/or time limits)", WAIT, None),
    (FAILED + "Socket timed out on send/recv operation", RETRY, None),
    ("sbatch: error: Batch job submission failed: Unable to contact slurm controller (connect failure)", RETRY, None),
    ("Command '['timeout', '-k', '5', '60', 'sbatch', 'x.sh']' returned non-zero exit status 124.", RETRY, None),
    (FAILED + "Unexpected message received", RETRY, None),  # unknown: backed off, never fatal
])
def test_sbatch_errors_are_classified_with_the_key_that_decides_them(text, action, first_key):
    verdict = classify(text)
    assert verdict.action == action
    assert (verdict.keys[0] if verdict.keys else None) == first_key
    assert verdict.words in text or all(part in text for part in verdict.words.split(" / "))


def test_a_refused_request_fails_the_stage_at_once_naming_the_key_and_nothing_is_left_claimed(tmp_path, fake):
    slurm = fake(errors=[FAILED + "Invalid qos specification"])
    store = RunStore(tmp_path / "runs")
    units = make_units(tmp_path, range(3))
    cfg = ExecutorConfig(kind="slurm", poll_s=0.01, qos="hihg")
    with pytest.raises(submit_mod.SubmitRejected) as info:
        submit_mod.run_units_report(units, store, cfg, desc="toy", stream=io.StringIO())
    message = str(info.value)
    assert message.startswith("toy: sbatch refused the request: " + FAILED + "Invalid qos specification; change "
                              "`qos`, `partition` in ExecutorConfig")
    assert message.endswith("nothing more was submitted")
    assert slurm.accepted == 0 and [runs(tmp_path, x) for x in range(3)] == [0, 0, 0]
    assert all(job_record(store, u.kind, u.key) is None for u in units)  # claims released: a rerun submits them


def test_a_refusal_names_the_profile_key_and_the_jobs_already_running(tmp_path, fake):
    """The first array (train) is accepted, the second (autoattack, its own partition) refused: the stage stops
    at once, names profiles.autoattack.partition and says the accepted job keeps running."""
    slurm = fake()
    real_submit = slurm.submit_array

    def refuse_autoattack(batches):
        if batches[0].units[0].kind == "autoattack":
            raise RuntimeError("sbatch: error: invalid partition specified: gpu-aa\n" + FAILED + "Invalid partition "
                               "name specified")
        return real_submit(batches)

    slurm.submit_array = refuse_autoattack
    train = make_units(tmp_path, [1])
    attack = [type(u)("autoattack", u.key, u.fn, u.config, label="aa") for u in make_units(tmp_path, [2])]
    cfg = ExecutorConfig(kind="slurm", poll_s=0.01, partition="gpu", profiles={"autoattack": {"partition": "gpu-aa"}})
    with pytest.raises(submit_mod.SubmitRejected) as info:
        submit_mod.run_units_report(train + attack, RunStore(tmp_path / "runs"), cfg, desc="toy",
                                    stream=io.StringIO())
    assert "change `profiles.autoattack.partition` in ExecutorConfig" in str(info.value)
    assert "Invalid partition name specified" in str(info.value)
    assert "(1 jobs submitted before keep running: the next run re-attaches to them)" in str(info.value)


def test_an_unknown_sbatch_error_is_still_backed_off_and_retried(tmp_path, fake):
    fake(errors=[FAILED + "Unexpected message received"])
    stream = io.StringIO()
    out = submit_mod.run_units(make_units(tmp_path, range(2)), RunStore(tmp_path / "runs"),
                               ExecutorConfig(kind="slurm", poll_s=0.01), desc="toy", stream=stream)
    assert len(out) == 2 and "Unexpected message received; retrying in 0s" in stream.getvalue()
