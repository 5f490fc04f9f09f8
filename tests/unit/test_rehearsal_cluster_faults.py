"""The rehearsal's cluster faults without a cluster: --faults parsing, the seeded schedule, the restarts a fault
forces (not lost work), and the driver's line quoted without its progress bar."""

from __future__ import annotations

import pytest

from pipeline.rehearsal import cluster_faults
from pipeline.rehearsal.run import check_args, parse_args
from pipeline.rehearsal.store_facts import lost_work


def faults(*argv: str) -> dict:
    return check_args(parse_args(["--params", "params.yaml", *argv]))


def test_all_names_every_fault_and_a_list_adds_cluster_faults_to_a_preset():
    everything = faults("--faults", "all")
    assert all(everything[k] for k in cluster_faults.NAMES) and everything["kill_driver"]
    some = faults("--faults", "survivable,slurmctld,node_down")
    assert some["slurmctld"] and some["node_down"] and not some["store_full"] and not some["slurmdbd"]
    assert some["timeout"] == 0.006 and some["diverge"] == 0.0 and some["kill_driver"]
    assert not any(faults("--faults", "none")[k] for k in cluster_faults.NAMES)


def test_an_unknown_fault_is_named_with_what_is_allowed():
    with pytest.raises(SystemExit, match=r"unknown 'disk'; allowed: presets all, survivable, none or faults .*store_full"):
        faults("--faults", "survivable,disk")


def test_cluster_faults_need_the_local_cluster(tmp_path):
    executor = tmp_path / "executor.yaml"
    executor.write_text("kind: slurm\n")
    with pytest.raises(SystemExit, match="node_down: cluster faults need the local rehearsal cluster"):
        faults("--executor", str(executor), "--faults", "survivable,node_down")
    assert not any(faults("--executor", str(executor), "--faults", "all")[k] for k in cluster_faults.NAMES)


def test_the_schedule_is_seeded_and_gives_each_fault_its_own_slot():
    at = cluster_faults.schedule(list(cluster_faults.NAMES), 0)
    assert at == cluster_faults.schedule(list(cluster_faults.NAMES), 0) != cluster_faults.schedule(
        list(cluster_faults.NAMES), 1)
    ordered = sorted(at.values())
    assert 0.15 <= ordered[0] and ordered[-1] < 0.85 and all(b - a > 0.05 for a, b in zip(ordered, ordered[1:]))


def _attempt(start, last, frm, to, ended=False):
    return {"start": start, "last_t": last, "from_step": frm, "to_step": to, "ended": ended, "fault": None}


def test_a_restart_inside_a_fault_window_is_forced_and_one_outside_is_lost():
    unit = {"attempts": [_attempt(0, 10, 0, 4), _attempt(30, 50, 4, 10, ended=True)]}
    assert lost_work(unit, [(12, 25)]) == {"repeated_steps": 0, "extra_starts": 0}
    assert lost_work(unit, [(60, 70)])["extra_starts"] == 1  # the window opened after the restart: not its cause
    assert lost_work(unit)["extra_starts"] == 1
    redone = {"attempts": [_attempt(0, 10, 0, 4), _attempt(30, 50, 2, 10, ended=True)]}
    assert lost_work(redone, [(12, 25)])["repeated_steps"] == 2


def test_a_finished_attempt_whose_result_a_full_store_refused_is_forced_and_one_kept_before_it_is_lost():
    """A CI rehearsal's unit ended inside the full store's window, its commit refused; the next driver ran it again
    (from its last checkpoint) once space was freed: forced by the fault. Ended before the window: a duplicate."""
    unit = {"attempts": [_attempt(0, 40, 0, 10, ended=True), _attempt(130, 130, 10, 10, ended=True)]}
    assert lost_work(unit, [(30, 120)]) == {"repeated_steps": 0, "extra_starts": 0}
    assert lost_work(unit, [(45, 120)])["extra_starts"] == 1
    assert lost_work(unit)["extra_starts"] == 1


def test_the_quoted_line_drops_the_progress_bar_it_was_written_over():
    log = ("train:  40%|####  | 8/20 [00:10, running=3]" + " " * 40 + "slurmctld unreachable since 12:00:01 (x); "
           "waiting\rtrain: 50%\nslurmctld answers again after 20s; submitting again\n")
    _, survived, missed, rows = cluster_faults.report(
        [{"name": "slurmctld", "at_train_fraction": 0.3, "start": 100.0, "end": 160.0}], ["slurmctld", "slurmdbd"],
        [log], 40.0, 2.0, True, 0)
    assert rows[0]["user_saw"] == "slurmctld unreachable since 12:00:01 (x); waiting" and rows[0]["lines_said"] == 2
    assert rows[0]["from_h"] == 0.5 and rows[0]["lasted_h"] == 0.5 and survived == {"slurmctld": 1}
    assert missed == ["slurmdbd"]


def test_the_shared_profile_needs_the_local_cluster_and_some_load(tmp_path):
    executor = tmp_path / "executor.yaml"
    executor.write_text("kind: slurm\n")
    with pytest.raises(SystemExit, match="--profile shared needs the local rehearsal cluster"):
        faults("--profile", "shared", "--executor", str(executor))
    with pytest.raises(SystemExit, match="--others-load > 0"):
        faults("--profile", "shared", "--others-load", "0")


def test_granted_gpus_are_averaged_per_bucket_of_simulated_hours():
    from pipeline.rehearsal.shared import granted

    times = [0.0, 30.0, 60.0, 90.0, 120.0]  # wall s; at 0.5 min per GPU-h one simulated hour is 30 s
    series = {"train": [4, 4, 2, 0, 0], "attack": [0, 2, 2, 2, 0]}
    assert granted(series, times, 0.0, 0.5) == [{"from_h": 0.0, "mean_gpus": 5.0}, {"from_h": 2.0, "mean_gpus": 3.0},
                                                 {"from_h": 4.0, "mean_gpus": 0.0}]


def test_a_store_that_fills_before_its_filler_is_created_is_full_as_meant(tmp_path, monkeypatch):
    """The running jobs can take the margin left by the remount before the filler file is opened (ENOSPC at open:
    a CI rehearsal died on it); the fault is then injected all the same."""
    import builtins
    import errno
    import subprocess

    monkeypatch.setattr(subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(a, 0, "", ""))
    real_open = builtins.open

    def full(path, *a, **k):
        if str(path).endswith(".rehearsal-filler"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_open(path, *a, **k)

    monkeypatch.setattr(builtins, "open", full)
    said = []
    inj = cluster_faults.Injector(["store_full"], 0, {}, tmp_path, {}, lambda *a: None, said.append)
    inj.poll(1.0)
    assert inj.active is not None and inj.active["name"] == "store_full" and "store_bytes" in inj.active
    assert said == ["rehearsal: injected store_full at 100% of training units done"]
