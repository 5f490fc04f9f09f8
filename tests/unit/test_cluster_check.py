"""The parts of the cluster check and of `awd-bench init` that read the scheduler's words: GRES strings, constraint
expressions, and the executor.yaml `init` writes for a cluster it surveyed (here a survey written out by hand: a
site with a CPU-only default partition, two GPU partitions, typed GPUs, a QOS limit and JobRequeue=0). Against the
live cluster: tests/slurm/test_cluster_check_slurm.py."""

from __future__ import annotations

import pytest
import yaml

from jobs import slurm_info as info
from jobs.cluster_check import _feature_names, _satisfies
from jobs.executor_config import ExecutorConfig, ExecutorConfigError
from jobs.init_cluster import Survey, choose_partition, render


@pytest.mark.parametrize("text, request_, expected", [
    ("gpu:2", False, ["gpu:2"]),
    ("gpu:a100:4(S:0-1),gpu:v100:2(S:1),mps:100", False, ["gpu:a100:4", "gpu:v100:2", "mps:100"]),
    ("gpu:a100:4(S:0,1)", False, ["gpu:a100:4"]),  # a comma inside the socket list is not a new entry
    ("(null)", False, []),
    ("gpu:a100", True, ["gpu:a100:1"]),  # a request without a count asks for one
    ("gpu", True, ["gpu:1"]),
])
def test_gres_strings(text, request_, expected):
    assert [str(g) for g in info.parse_gres(text, request=request_)] == expected


@pytest.mark.parametrize("text, minutes", [("UNLIMITED", None), ("infinite", None), ("2-00:00:00", 2880),
                                           ("12:00:00", 720), ("30:00", 30), ("45", 45)])
def test_slurm_times(text, minutes):
    assert info.slurm_minutes(text) == minutes


@pytest.mark.parametrize("expr, features, fits", [
    ("a100", {"a100", "ib"}, True), ("a100", {"v100"}, False),
    ("a100|h100", {"h100"}, True), ("a100&ib", {"a100"}, False), ("a100&ib", {"a100", "ib"}, True),
    ("[a100|h100]&ib", {"h100", "ib"}, True), ("[a100|h100]&ib", {"h100"}, False),
    ("!a100", {"v100"}, True), ("a100*2", {"a100"}, True),
])
def test_constraint_expressions(expr, features, fits):
    assert _satisfies(expr, frozenset(features)) is fits


def test_a_constraint_beyond_the_parser_is_left_to_sbatch_and_counts_are_not_features():
    assert _satisfies("a100|", frozenset({"a100"})) is None and _satisfies("[a100", frozenset()) is None
    assert _feature_names("[rack1*2&rack2*4]|a100") == ["rack1", "rack2", "a100"]


def node(name, partitions, cpus, mem_mb, gres, state="idle"):
    return info.Node(name, frozenset(partitions), cpus, mem_mb, tuple(info.parse_gres(gres)), frozenset(), state)


def part(name, default=False, max_time=None, state="UP"):
    return info.Partition(name, state, default, max_time, None, frozenset(), None, frozenset())


def site(**changes) -> Survey:
    s = Survey(
        cluster="site", user="alice", config={"MaxArraySize": "500", "JobRequeue": "0"},
        partitions={"cpu": part("cpu", default=True), "gpu": part("gpu", max_time=720),
                    "gpu-small": part("gpu-small", max_time=2880)},
        nodes=[node("c1", ["cpu"], 64, 256000, "(null)"),
               node("g1", ["gpu"], 32, 512000, "gpu:a100:4(S:0-1)"), node("g2", ["gpu"], 48, 512000, "gpu:h100:8"),
               node("s1", ["gpu-small"], 16, 64000, "gpu:t4:2")],
        associations=[info.Association("proj", "", frozenset({"normal", "long"}), "normal", None),
                      info.Association("other", "gpu-small", frozenset({"normal"}), "normal", None)],
        qos={"normal": info.Qos("normal", 600, 100), "long": info.Qos("long", None, None)}, default_account="proj")
    for k, v in changes.items():
        setattr(s, k, v)
    return s


def test_init_picks_the_gpu_partition_with_most_gpus_and_sizes_one_job_from_its_nodes():
    text = render(site())
    cfg = ExecutorConfig.from_mapping(yaml.safe_load(text), "executor.yaml")
    assert (cfg.kind, cfg.partition, cfg.gpus_per_node, cfg.account) == ("slurm", "gpu", 1, "proj")
    assert cfg.cpus_per_task == 6  # g2: 48 CPUs / 8 GPUs (g1 has 8 per GPU): every GPU node fits one job
    assert cfg.mem_gb == 56  # g2: 512000 MB / 8 GPUs x 0.9
    assert cfg.timeout_min == 600  # QOS normal's MaxWall (600) under the partition's MaxTime (720)
    assert (cfg.max_queued, cfg.max_array_size, cfg.extra) == (100, 500, {"requeue": True})
    assert "# GPU types here: a100, h100; to ask for one, replace gpus_per_node with e.g. `gres: gpu:a100:1`" in text
    assert "partition: gpu  # other GPU partitions: gpu-small" in text
    assert "# qos: normal  # unset: the association's default (normal); allowed: long, normal" in text


def test_init_follows_the_user_s_choices_and_refuses_a_cluster_without_gpus():
    cfg = ExecutorConfig.from_mapping(yaml.safe_load(render(site(), "gpu-small", "other")), "x")
    assert (cfg.partition, cfg.account, cfg.cpus_per_task, cfg.mem_gb, cfg.timeout_min) == ("gpu-small", "other", 8,
                                                                                          28, 600)
    cpu_only = site(nodes=[node("c1", ["cpu", "gpu", "gpu-small"], 64, 256000, "(null)")])
    with pytest.raises(ExecutorConfigError, match="no partition of cluster site that is up has nodes with GPUs"):
        choose_partition(cpu_only, None)
    with pytest.raises(ExecutorConfigError, match=r"--partition 'gpux': no such partition; partitions: cpu, gpu"):
        choose_partition(site(), "gpux")


def test_init_without_accounting_leaves_the_account_to_the_user():
    text = render(site(associations=None, qos=None, default_account=None))
    cfg = ExecutorConfig.from_mapping(yaml.safe_load(text), "x")
    assert cfg.account is None and cfg.max_queued is None and cfg.timeout_min == 720
    assert "# account: <name>  # sacctmgr did not answer: set it if your site needs one" in text


@pytest.mark.parametrize("case", ["settled", "controller down a moment ago", "no fitting node up"])
def test_a_test_only_refusal_is_a_verdict_only_while_the_controller_and_a_fitting_node_are_up(monkeypatch, case):
    """Right after a slurmctld restart, `scontrol` may fail and the nodes are not yet registered: `sbatch --test-only`
    then refuses any node request ("Requested node configuration is not available"), which says nothing about the
    settings. A rehearsal's driver restart met exactly that and stopped the campaign; now it warns and submits (the
    jobs wait in the queue), and refuses only when the cluster was up."""
    import subprocess

    from jobs import cluster_check

    def down():
        raise info.Unanswered("slurm_load_partitions error: Unable to contact slurm controller")

    state = "down*" if case == "no fitting node up" else "idle"
    monkeypatch.setattr(info, "partitions", down if case == "controller down a moment ago"
                        else lambda: {"gpu": part("gpu", default=True)})
    monkeypatch.setattr(info, "nodes", lambda: [node("g1", ["gpu"], 32, 512000, "gpu:a100:4", state=state)])
    monkeypatch.setattr(info, "config", lambda: {"MaxArraySize": "1001"})
    refusal = "sbatch: error: Batch job submission failed: Requested node configuration is not available"
    monkeypatch.setattr(cluster_check.subprocess, "run",
                        lambda *a, **k: subprocess.CompletedProcess(a, 1, stdout="", stderr=refusal))
    report = cluster_check.check_cluster(ExecutorConfig(kind="slurm", partition="gpu", gpus_per_node=1))
    if case == "settled":
        assert report.problems and "refuses a job with these settings" in report.problems[0][1], report
    else:
        assert not report.problems, report.problems
        assert any("Requested node configuration" in w and "restarting?" in w for w in report.warnings), report
