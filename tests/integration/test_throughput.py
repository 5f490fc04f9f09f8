"""Estimates that learn: a unit's measured throughput (jobs/throughput.py, pipeline/cost.py's cost models) sets the
--time, the ETA and the spending guard of the units of the same shape still to run."""

from __future__ import annotations

import io
import os
import stat
from pathlib import Path

import pytest

from jobs.driver import _Driver, run_units_report
from jobs.executors import ExecutorConfig
from jobs.job import Unit
from jobs.keys import keyed_config, unit_key
from jobs.placement import lines as placement_lines
from jobs.progress import Progress, format_duration
from jobs.store import RunStore
from jobs.throughput import ASSUMED, MEASURED, Book, Estimator
from pipeline.cost import TrainModel, train_flops
from pipeline.params import load_params
from pipeline.suites import independent_runs

ROOT = Path(__file__).resolve().parents[2]
FAKE_FN = "tests.integration.test_throughput:fake_train"


def fake_train(config: dict, workdir: Path, store) -> dict:
    """A training run that reports the epoch times it was told to (what awd.train returns: seconds, epochs_run)."""
    return {"seconds": float(config["_claim_s"]), "epochs_run": config["epochs"], "test_acc": 0.5}


def train_unit(seed: int, claim_s: float = 1.0) -> Unit:
    config = dict(independent_runs(load_params(ROOT / "params.yaml"))[0].config, seed=seed, _claim_s=claim_s)
    return Unit("train", unit_key("train", keyed_config(config), "test"), FAKE_FN, config, label=f"seed {seed}")


@pytest.fixture()
def quiet_scheduler(monkeypatch, use_backend):
    """The driver asks sacctmgr and sinfo about the cluster: not this test's question."""
    use_backend("slurm")
    monkeypatch.setattr("jobs.placement.partition_time_limit_min", lambda partition: None)


def slurm_cfg(unit: Unit, minutes: float) -> ExecutorConfig:
    """A cluster whose cost model says `minutes` for `unit`, and sizes --time from estimates."""
    tflops = train_flops(unit.config) / (minutes * 60) / 1e12
    return ExecutorConfig(kind="slurm", partition="gpu", gpus_per_node=1, time_safety_factor=1.5, tflops=tflops)


def test_a_measurement_three_times_the_cost_model_sets_the_next_units_time_and_eta(tmp_path, quiet_scheduler):
    store = RunStore(tmp_path / "store")
    a, b = train_unit(1), train_unit(2)
    cfg = slurm_cfg(b, 40)  # the cost model: 40 min per run
    driver = _Driver(store, cfg, "train", Progress(2, 0, "train", stream=io.StringIO()), poll_s=0)
    driver.add([a, b], pending={a.key, b.key})
    assert b.estimate_s == pytest.approx(2400) and driver.rates.sources[b.key].source == ASSUMED
    assert driver.unit_cfg(b).timeout_min == 120  # 40 min x 1.5 + 5 min start-up: the 2 h step
    eta, word = driver.etas()["train"]
    assert word == ASSUMED and eta == pytest.approx(2 * 2400)  # from the first minute, before anything ran

    # a's job commits: its epochs took 3x what the cost model said, on the cluster's GPU
    store.workdir(a.kind, a.key)
    store.commit(a.kind, a.key, {"seconds": 3 * 2400.0, "epochs_run": a.config["epochs"]},
                 meta={"seconds": 3 * 2400.0 + 30, "env": {"gpu": "NVIDIA Slow"}})
    driver.waiting.remove(a)
    driver.finish(a)  # what poll_active does when it sees the entry done

    assert b.estimate_s == pytest.approx(3 * 2400) and driver.rates.sources[b.key].source == MEASURED
    assert driver.unit_cfg(b).timeout_min == 240  # 120 min x 1.5 + 5: the 4 h step
    eta, word = driver.etas()["train"]
    assert word == MEASURED and eta == pytest.approx(3 * 2400)
    # a later stage, or a driver started again, begins where this one learnt
    fresh = Estimator(store.root, cfg).estimate(train_unit(3))
    assert fresh.source == MEASURED and fresh.seconds == pytest.approx(3 * 2400) and "NVIDIA Slow" in fresh.note
    line = placement_lines([b], cfg, driver.rates)[0]
    assert line.startswith("1 train unit run on slurm, partition gpu, 1 GPU per job, 1 unit per job, --time 4h")
    assert "1 measured (" in line and "s/epoch on NVIDIA Slow (1 units)" in line
    # elsewhere (another partition) nothing was measured: the cost model again
    other = Estimator(store.root, cfg.replace(partition="other")).estimate(b)
    assert other.source == ASSUMED and other.seconds == pytest.approx(2400)


def test_the_progress_line_follows_the_measurement(tmp_path):
    """Through run_units_report: the stage says where its units run, and once the first run has reported epochs 3x
    slower than the cost model, the ETA of the other is 3x its assumed figure, marked measured."""
    cfg = ExecutorConfig(kind="debug")
    assumed = TrainModel().assumed_s(train_unit(2), cfg)
    a, b = train_unit(1, claim_s=3 * assumed), train_unit(2, claim_s=3 * assumed)
    stream = io.StringIO()
    report = run_units_report([a, b], RunStore(tmp_path / "store"), cfg, desc="train", stream=stream)
    assert not report.failures
    out = stream.getvalue()
    assert "train: 2 train units run on debug: in this process" in out and "2 assumed (cost model at " in out
    assert f"eta={format_duration(3 * assumed)} (measured)" in out, out
    samples = list((tmp_path / "store" / "_throughput").glob("*/*.json"))
    assert len(samples) == 1 and oct(samples[0].stat().st_mode & 0o777) == "0o644"


def test_a_running_units_checkpoint_is_a_first_measurement_until_its_done_one_replaces_it(tmp_path, quiet_scheduler):
    store = RunStore(tmp_path / "store")
    a, b = train_unit(1), train_unit(2)
    cfg = slurm_cfg(b, 40)
    rates = Estimator(store.root, cfg)
    epochs = a.config["epochs"]
    (store.workdir(a.kind, a.key) / "history.json").write_text('[{"seconds": 90.0}, {"seconds": 110.0}]')
    assert rates.observe_running(a, store)
    assert rates.estimate(b).seconds == pytest.approx(100.0 * epochs)
    store.commit(a.kind, a.key, {"seconds": 60.0 * epochs, "epochs_run": epochs}, meta={"env": {"gpu": "G"}})
    assert rates.observe(a, store)
    est = rates.estimate(b)
    assert est.seconds == pytest.approx(60.0 * epochs) and "on G (1 units)" in est.note  # replaced, not averaged


def test_figures_another_user_could_have_written_are_not_used(tmp_path):
    store = RunStore(tmp_path / "store")
    a, b = train_unit(1), train_unit(2)
    cfg = ExecutorConfig(kind="slurm", partition="gpu")
    store.workdir(a.kind, a.key)
    store.commit(a.kind, a.key, {"seconds": 500.0, "epochs_run": 1}, meta={"env": {"gpu": "G"}})
    if os.geteuid() == 0:  # a member's entry (their job's manifest): not a figure of ours
        manifest = store.path(a.kind, a.key) / "manifest.json"
        os.chown(manifest, 4242, -1)
        assert not Estimator(store.root, cfg).observe(a, store)
        assert Estimator(store.root, cfg).estimate(b).source == ASSUMED
        os.chown(manifest, 0, -1)
    assert Estimator(store.root, cfg).observe(a, store)
    assert Estimator(store.root, cfg).estimate(b).source == MEASURED
    folder = Path(Book(store.root).root) / Book(store.root).rel
    folder.chmod(folder.stat().st_mode | stat.S_IWGRP)  # anyone in the group could have put figures there
    assert Estimator(store.root, cfg).estimate(b).source == ASSUMED
    folder.chmod(folder.stat().st_mode & ~stat.S_IWGRP)
    (folder / next(p.name for p in folder.iterdir())).write_text("{not json")  # a damaged file: advice, not fatal
    assert Estimator(store.root, cfg).estimate(b).source == ASSUMED


def test_rehearsal_stand_ins_and_unknown_kinds_keep_their_stages_estimate(tmp_path):
    rates = Estimator(tmp_path, ExecutorConfig(kind="slurm"))
    standin = train_unit(1)
    standin.config["_rehearsal"] = {"seconds": 1.0}
    toy = Unit("toy", "ab" * 32, "jobfns:record", {"x": 1}, estimate_s=7.0)
    assert rates.estimate(standin) is None and rates.estimate(toy) is None
    rates.apply([toy])
    assert toy.estimate_s == 7.0


def test_a_jobs_time_covers_every_unit_of_its_group(tmp_path, quiet_scheduler):
    """An AutoAttack shard's blocks run one after another in one job: its --time is sized for all of them."""
    store = RunStore(tmp_path / "store")
    blocks = [Unit("toy", unit_key("toy", {"x": i}, "c0de"), "jobfns:record", {"x": i}, group="model-shard0",
                   estimate_s=40 * 60.0) for i in range(3)]
    alone = Unit("toy", unit_key("toy", {"x": 9}, "c0de"), "jobfns:record", {"x": 9}, estimate_s=40 * 60.0)
    cfg = ExecutorConfig(kind="slurm", partition="gpu", time_safety_factor=1.5)
    driver = _Driver(store, cfg, "attack", Progress(4, 0, "attack", stream=io.StringIO()), poll_s=0)
    driver.add([*blocks, alone], pending={u.key for u in [*blocks, alone]})
    assert {driver.unit_cfg(u).timeout_min for u in blocks} == {240}  # 3 x 40 min x 1.5 + 5: the 4 h step
    assert driver.unit_cfg(alone).timeout_min == 120
    line = placement_lines([*blocks, alone], cfg, driver.rates)[0]
    assert "4 toy units run on slurm" in line and "in 2 jobs (a group's units share one), --time 2h to 4h" in line
