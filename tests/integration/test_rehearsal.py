"""The rehearsal's parts without a cluster: stand-ins (no torch, resume by step, faults), the planner's hook,
seeded fault draws, the scheduler sweep, lost-work accounting, CIFAR files, bad options."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.rehearsal import store_facts, swap, timeline
from pipeline.rehearsal.cifar import write_datasets
from pipeline.rehearsal.run import check_args, parse_args
from pipeline.rehearsal.standin import run_steps, train_unit

REPO = Path(__file__).resolve().parents[2]


def _plan(steps=5, seconds=0.05, fault=None, fault_step=None):
    return {"_rehearsal": {"steps": steps, "seconds": seconds, "sim_seconds": 3600.0, "fault": fault,
                           "fault_step": fault_step}}


def test_standin_imports_no_torch():
    code = ("import sys, pipeline.rehearsal.standin as s; s.train_unit, s.autoattack_unit, s.prune_unit; "
            "sys.exit(1 if 'torch' in sys.modules else 0)")
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO, timeout=60).returncode == 0


def test_standin_resumes_from_its_checkpoint(tmp_path):
    (tmp_path / "rehearsal_last.json").write_text(json.dumps({"step": 3}))
    facts = run_steps(_plan(), tmp_path)
    assert facts == {"rehearsal": True, "sim_seconds": 3600.0}
    [attempt] = store_facts.attempts(tmp_path)
    assert (attempt["from_step"], attempt["to_step"], attempt["ended"]) == (3, 5, True)
    assert json.loads((tmp_path / "rehearsal_last.json").read_text()) == {"step": 5}


def test_exit_fault_kills_the_first_attempt_only_and_the_next_resumes(tmp_path):
    config = json.dumps(_plan(steps=4, seconds=0.04, fault="exit", fault_step=2))
    code = f"import json, sys; from pipeline.rehearsal.standin import run_steps; run_steps(json.loads({config!r}), sys.argv[1])"
    first = subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=REPO, timeout=60)
    assert first.returncode == -9  # SIGKILL, as the OOM killer would
    second = subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=REPO, timeout=60)
    assert second.returncode == 0
    a1, a2 = store_facts.attempts(tmp_path)
    assert a1["fault"] == "exit" and not a1["ended"] and a2["ended"] and a2["from_step"] == a1["to_step"]
    # the killed step is the work the fault forces; nothing is repeated beyond it
    assert store_facts.lost_work({"attempts": [a1, a2]}) == {"repeated_steps": 0, "extra_starts": 0}


def test_divergence_is_a_result_that_repeats_on_every_attempt(tmp_path):
    for _ in range(2):
        assert run_steps(_plan(fault="diverge", fault_step=1), tmp_path)["diverged_step"] == 1
    config = {"epochs": 4, "_rehearsal": _plan(fault="diverge", fault_step=2)["_rehearsal"]}
    (tmp_path / "t").mkdir()
    metrics = train_unit(config, tmp_path / "t")
    assert metrics["diverged"] is True and metrics["diverged_epoch"] == 3 and "val_acc" not in metrics


def test_restart_from_scratch_counts_as_lost():
    attempts = [{"from_step": 0, "to_step": 3, "fault": None}, {"from_step": 0, "to_step": 5, "fault": None}]
    assert store_facts.lost_work({"attempts": attempts}) == {"repeated_steps": 3, "extra_starts": 1}


@pytest.fixture
def rehearsal_env(tmp_path, monkeypatch):
    settings = {"minutes_per_gpu_hour": 1.0, "tflops": 100.0, "seed": 0, "rates": {"diverge": 0.5}}
    path = tmp_path / "settings.json"
    path.write_text(json.dumps(settings))
    return path, settings


def test_hook_swaps_fn_and_key(rehearsal_env, monkeypatch):
    from pipeline.params import load_params
    from pipeline.plan import Planner, for_stage
    from pipeline.suites import independent_runs

    params = load_params(str(REPO / "params.yaml"))
    spec = independent_runs(params)[0]
    monkeypatch.delenv(swap.ENV, raising=False)
    real = for_stage(params).train_unit(spec)  # outside a rehearsal a stage builds the real unit
    assert real.fn == "pipeline.units.train:train_unit" and real.key == Planner(params).train_unit(spec).key
    stand = Planner(params, stand_in=swap.stand_ins(rehearsal_env[0])).train_unit(spec)
    assert stand.fn == "pipeline.rehearsal.standin:train_unit" and stand.key != real.key
    plan = stand.config["_rehearsal"]
    assert plan["steps"] == spec.config["epochs"] and plan["sim_seconds"] > 0
    assert plan["seconds"] == pytest.approx(plan["sim_seconds"] / 3600 * 60)  # 1 wall minute per GPU-hour
    # a stage started by the rehearsal's dvc repro gets the same stand-ins from the settings it names
    monkeypatch.setenv(swap.ENV, str(rehearsal_env[0]))
    assert for_stage(params).train_unit(spec).key == stand.key
    with pytest.raises(ValueError, match="no stand-in for unit kind 'bogus'"):
        swap.stand_ins(rehearsal_env[0])("bogus", "x:y", {})


def test_fault_draws_are_seeded_and_near_their_rate():
    configs = [{"lr": i} for i in range(2000)]
    hits = [swap.draw(0, "train", c, "exit") < 0.1 for c in configs]
    assert hits == [swap.draw(0, "train", c, "exit") < 0.1 for c in configs]
    assert 140 < sum(hits) < 260
    assert hits != [swap.draw(1, "train", c, "exit") < 0.1 for c in configs]


def test_sweep_splits_idle_time_exactly():
    jobs = [{"Submit": 0.0, "Start": 0.0, "End": 10.0}, {"Submit": 0.0, "Start": 5.0, "End": 10.0},
            {"Submit": 14.0, "Start": 14.0, "End": 16.0}]
    s = timeline.sweep(jobs, 0.0, 20.0, gpus=2)
    assert s["running"] == 10 + 5 + 2
    assert s["idle_pending"] == 5  # one GPU idle while job 2 waited
    assert s["idle_nothing_pending"] == 2 * 4 + 1 * 2 + 2 * 4  # nothing pending: 10-14, 14-16 (one idle), 16-20
    assert s["idle_ready"] == 0 and s["idle_dependency"] == s["idle_nothing_pending"]  # nothing was said ready
    assert (s["peak_queued"], s["peak_running"]) == (2, 2)
    # a unit ready at 11 but submitted at 14 (a stage barrier): 11-14 idles one GPU for it, the other for nothing;
    # one ready at 15 and submitted at 15.5 waits while a GPU is free
    s = timeline.sweep(jobs, 0.0, 20.0, gpus=2, waiting=[(11.0, 14.0), (15.0, 15.5), (3.0, 3.0)])
    assert s["idle_ready"] == 1 * 3 + 1 * 0.5
    assert s["idle_dependency"] == 2 * 1 + 1 * 3 + 1 * 1.5 + 2 * 4
    assert s["idle_ready"] + s["idle_dependency"] == s["idle_nothing_pending"] == 18


def test_sweep_counts_a_handover_in_one_second_once():
    # sacct's whole seconds: a job that ends in the second the next one starts on its GPU is not running beside it
    jobs = [{"Submit": 0.0, "Start": 7.0, "End": 9.0}, {"Submit": 0.0, "Start": 0.0, "End": 7.0},
            {"Submit": 3.0, "Start": 3.0, "End": 9.0}]
    s = timeline.sweep(jobs, 0.0, 10.0, gpus=2)
    assert s["peak_running"] == 2
    assert s["running"] == 7 + 2 + 6 and s["idle_pending"] == 3  # the first job waited: 0-3 one GPU idle


def test_kind_of_job_names():
    assert [timeline.kind_of(n) for n in ("awd-train", "awd-train-awd-with-estimated-dog", "awd-attack")] == \
        ["train", "train (phase 2: AWD)", "attack"]


def test_cifar_files_load_in_their_own_format(tmp_path):
    from awd.data import load_dataset

    assert write_datasets(tmp_path, ["digits", "cifar10", "cifar100"]) == ["cifar10", "cifar100"]
    for name, classes in (("cifar10", 10), ("cifar100", 100)):
        test = load_dataset(name, tmp_path, train=False)
        train = load_dataset(name, tmp_path, train=True)
        assert test.x.shape == (10_000, 3, 32, 32) and len(train.y) == 5_000
        assert sorted(set(train.y.tolist())) == list(range(classes))


@pytest.mark.parametrize("argv, message", [
    (["--gpus", "20"], "--gpus 20"),
    (["--params", "nope.yaml"], "--params nope.yaml: no such file"),
    (["--exit-rate", "2"], "--exit-rate must be in"),
    (["--minutes-per-gpu-hour", "0"], "--minutes-per-gpu-hour"),
])
def test_bad_options_are_named(argv, message):
    with pytest.raises(SystemExit, match=message):
        check_args(parse_args(["--params", str(REPO / "params.yaml"), *argv]))


def test_presets_and_overrides():
    faults = check_args(parse_args(["--params", str(REPO / "params.yaml"), "--faults", "survivable",
                                    "--timeout-rate", "0.2", "--kill-driver-at", "0"]))
    assert faults["timeout"] == 0.2 and faults["exit"] == 0 and faults["diverge"] == 0
    assert not faults["kill_driver"] and not faults["sbatch_fail"]


def test_cluster_script_rejects_an_unknown_profile():
    done = subprocess.run([str(REPO / "scripts" / "local-slurm.sh"), "status"], capture_output=True, text=True,
                          env=dict(os.environ, AWD_SLURM_PROFILE="bogus"), timeout=30)
    assert done.returncode == 2 and "unknown profile; allowed: rehearsal" in done.stderr


def _facts(label, broke):
    breaks = [{"dvc_run": 1, "exit_status": 255, "stage": "train", "after_wall_s": 10.0,
               "errors": ["ERROR: failed to reproduce 'train'"]}] if broke else []
    return {"rehearsal": True, "label": label, "params": "p.yaml", "exit_status": int(broke), "gpus": 4,
            "minutes_per_gpu_hour": 0.5, "units_per_job": 1, "cluster": "local rehearsal cluster",
            "units": {"train": {"submitted": 3, "done": 0 if broke else 3}}, "gpu_hours": 2.0, "gpu_hours_done": 2.0,
            "makespan_h": 1.0, "wall_s": 30.0, "lower_bound_h": 0.5, "critical_path_h": 0.5,
            "efficiency": None if broke else 0.5, "busy_gpu_h": 2.5, "in_job_overhead_gpu_h": 0.5,
            "pending_idle_gpu_h": 0.5, "boundary_idle_gpu_h": 1.0, "peak_queued": 3, "peak_running": 3,
            "qos_max_submit_jobs_per_user": 200, "qos_max_jobs_per_user": 4, "sbatch_calls": 1, "sbatch_refused": [],
            "jobs": 3, "job_attempts": 3, "requeued_attempts": 0, "driver_cpu_s": 1.0,
            "scheduler": {"dispatch_latency_s_median": 1.0, "dispatch_latency_s_max": 2.0},
            "faults_injected": {}, "faults_survived": {}, "faults_not_reached": [], "lost": 0,
            "tables_complete": not broke, "dvc_runs": [{"n": 1, "exit_status": 255 if broke else 0, "wall_s": 30.0}],
            "breaks": breaks, "driver_kill": None}


def test_summary_leads_with_the_main_run_and_lists_every_run(tmp_path):
    from pipeline.rehearsal import summary
    from pipeline.rehearsal.report import markdown

    split = {"boundary_idle_gpu_h": 0.25, "dependency_idle_gpu_h": 0.75, "idle_nothing_pending_gpu_h": 1.0}
    for name, broke in (("main", False), ("broken", True)):
        (tmp_path / "rehearsal" / name).mkdir(parents=True)
        facts = dict(_facts(name, broke), **(split if name == "main" else {}))  # "broken": a row from before the split
        (tmp_path / "rehearsal" / name / "rehearsal.json").write_text(json.dumps(facts))
        (tmp_path / "rehearsal" / name / "rehearsal_gpus.png").write_bytes(name.encode())
    (tmp_path / "notes.md").write_text("## Read beside the baseline\n\nwhere the time went.\n")
    summary.main(["--main", str(tmp_path / "rehearsal/main/rehearsal.json"), "--out", str(tmp_path),
                  "--notes", str(tmp_path / "notes.md"), *map(str, sorted(tmp_path.glob("rehearsal/*/rehearsal.json")))])
    report = json.loads((tmp_path / "rehearsal.json").read_text())
    assert report["label"] == "main" and [r["label"] for r in report["runs"]] == ["main", "broken"]
    assert (tmp_path / "rehearsal_gpus.png").read_bytes() == b"main"
    text = (tmp_path / "rehearsal.md").read_text()
    assert "`train` (dvc exit 255, 10.0 s)" in text and "(rehearsal/broken/rehearsal.md)" in text
    assert "| 0.5 | 1.0 | 0.25 | 3 / 200 |" in text and "| 1.0 | n/m | 3 / 200 |" in text  # the split, or not measured
    assert text.rstrip().endswith("## Read beside the baseline\n\nwhere the time went.")
    assert "ready units not yet submitted 0.25 GPU-h" in text
    assert "1.0 GPU-h (25 %)" in markdown(_facts("main", False))  # boundary idle share of 4 GPU-h measured
    fixed = markdown(dict(_facts("main", False), before_first_job={"wall_s": 15.0, "h": 0.5},
                          after_last_unit={"wall_s": 3.0, "h": 0.1}))
    assert "0.5 h (15.0 s wall) passed before the first job started" in fixed and "0.1 h (3.0 s wall) after" in fixed
    assert "each 0.033 simulated hours at this compression" in fixed


def test_units_are_ready_when_their_inputs_ended():
    from pipeline.rehearsal.report import waiting_intervals

    def unit(kind, key, label="", train_key=None, start=0.0, end=None, job="1"):
        return {"kind": kind, "key": key, "label": label, "train_key": train_key,
                "attempts": [{"start": start, "last_t": end or start, "ended": end is not None, "slurm_job": job}]}

    units = [unit("train", "f0", "natural[0] c10 method=fixed,value=0.0005,seed=0", end=10.0, job="1"),
             unit("train", "f1", "natural[0] c10 method=fixed,value=0.0005,seed=1", end=12.0, job="2"),
             unit("train", "a0", "natural[0] c10 method=awd,value=0.016,seed=0", end=20.0, job="3"),
             unit("train", "s0", "adversarial[0] c10 method=awd,value=0.02", end=30.0, job="4"),
             unit("train", "s1", "adversarial[0] c10 method=awd,value=0.03", end=31.0, job="5"),
             unit("train", "x1", "adversarial[0] c10 method=awd,value=0.03,seed=1", end=50.0, job="6"),
             unit("autoattack", "e0", train_key="s0", end=40.0, job="7"),
             unit("autoattack", "e1", train_key="never-ran", job="8")]
    jobs = [{"JobIDRaw": str(i), "Submit": t} for i, t in
            [(1, 1.0), (2, 1.0), (3, 13.0), (4, 1.0), (5, 1.0), (6, 35.0), (6, 40.0), (7, 30.5), (8, 5.0)]]
    # the AWD run waits for both fixed-λ runs, the extra seed for the whole sweep; a requeue keeps the first submit
    assert waiting_intervals(units, jobs, t0=0.0) == [(0.0, 1.0), (0.0, 1.0), (12.0, 13.0), (0.0, 1.0), (0.0, 1.0),
                                                     (31.0, 35.0), (30.0, 30.5)]


def test_the_critical_chain_splits_the_makespan_into_what_delayed_each_link():
    from pipeline.rehearsal.chain import critical_chain, markdown

    def unit(key, kind, label, start, end, job, train_key=None, est_h=1.0):
        return {"key": key, "kind": kind, "label": label, "train_key": train_key, "plan": {"sim_seconds": est_h * 3600},
                "attempts": [{"start": start, "last_t": end, "ended": True, "slurm_job": job}]}

    units = [unit("s", "train", "adversarial[0] cifar10 method=awd,value=0.1", 10, 100, "1", est_h=1.5),
             unit("other", "train", "adversarial[0] cifar10 method=awd,value=0.2", 10, 60, "4"),
             unit("e", "train", "adversarial[0] cifar10 method=awd,value=0.1,seed=1", 130, 220, "2", est_h=1.5),
             unit("a", "autoattack", "", 226, 230, "3", train_key="e", est_h=0.05)]
    jobs = [{"JobIDRaw": j, "Submit": sub, "Start": st} for j, sub, st in
            (("1", 2, 5), ("4", 2, 5), ("2", 110, 125), ("3", 222, 224))]
    chain = critical_chain(units, jobs, t0=0.0, t1=240.0, mpg=1.0)  # 60 wall s = 1 simulated hour
    assert [x["label"][:14] for x in chain["links"]] == ["adversarial[0]"] * 2 + ["a"]
    s, e, a = chain["links"]
    assert (s["to_submit"], s["queued"], s["starting"], s["running"]) == (0.03, 0.05, 0.08, 1.5)
    assert (e["ready_h"], e["to_submit"], e["queued"], e["starting"]) == (1.67, 0.17, 0.25, 0.08)  # the hand-off
    assert (a["to_submit"], a["queued"], a["starting"], a["running"]) == (0.03, 0.03, 0.03, 0.07)
    total = sum(x[p] for x in chain["links"] for p in ("to_submit", "queued", "starting", "running"))
    assert abs(total + chain["after_h"] - 4.0) < 0.03 and chain["after_h"] == 0.17  # adds up to the makespan
    assert "| adversarial[0] cifar10 method=awd,value=0.1,seed=1 | train | 1.67 | 0.17 | 0.25 | 0.08 | 1.5 (1.5) |" \
        in "\n".join(markdown(chain))
