"""executor.yaml as one validated model (jobs/executor_config.py): every problem at once, one line each naming the
file and the key, what is allowed and what was given; values never coerced; the `gres` key; nothing that could
inject a line into a job's sbatch script. No cluster needed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import submitit

from jobs.executor_config import ExecutorConfig, ExecutorConfigError, load_executor_config
from jobs.executors import make_executor, slurm_parameters


def load_text(tmp_path: Path, text: str) -> ExecutorConfig:
    path = tmp_path / "executor.yaml"
    path.write_text(text)
    return load_executor_config(path)


def problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ExecutorConfigError) as info:
        load_text(tmp_path, text)
    return str(info.value).splitlines()


def test_every_problem_is_reported_at_once_naming_file_and_key(tmp_path):
    lines = problems(tmp_path, "kind: slrum\npartiton: gpu\nmem_gb: lots\ncpus_per_task: 0\ntimeout_min: 90.5\n"
                               "check_gpus: 1\nprofiles: {train: {mem_gp: 4, max_queued: 2}}\n")
    source = str(tmp_path / "executor.yaml")
    assert all(line.startswith(f"{source}: ") for line in lines)
    keys = [line[len(source) + 2:].split(": ", 1)[0] for line in lines]
    assert sorted(keys) == sorted(["kind", "partiton", "mem_gb", "cpus_per_task", "timeout_min", "check_gpus",
                                   "profiles.train.mem_gp", "profiles.train.max_queued"])
    text = "\n".join(lines)
    assert "kind: unknown executor kind 'slrum' (did you mean 'slurm'?); allowed: debug, local, slurm" in text
    assert "partiton: unknown key 'partiton' (did you mean 'partition'?); allowed: account, " in text
    assert "mem_gb: must be a positive number, got 'lots' (str)" in text
    assert "cpus_per_task: must be a positive integer, got 0" in text
    assert "timeout_min: must be a positive integer (minutes), got 90.5 (float)" in text
    assert "check_gpus: must be true or false, got 1 (int)" in text
    assert "profiles.train.mem_gp: unknown key 'mem_gp' (did you mean 'mem_gb'?)" in text
    assert "profiles.train.max_queued: can only be set at the top level" in text


def test_rules_between_keys_come_with_the_others_not_after_them(tmp_path):
    lines = problems(tmp_path, "kind: slurm\ngres: gpu:a100:1\ngpus_per_node: 2\nmem_gb: 32\nmax_mem_gb: 16\n"
                               "poll_s: -1\n")
    assert [line.split(": ")[1] for line in lines] == ["poll_s", "gres", "max_mem_gb"]
    assert "gres: asks for GPUs (gpu:a100:1) and so does gpus_per_node (2): set the count in one place" in lines[1]
    assert lines[2].endswith("max_mem_gb: must be >= mem_gb (32), got 16")
    # a profile that brings the conflict is named as the key to change
    (line,) = problems(tmp_path, "kind: slurm\ngpus_per_node: 1\nprofiles: {autoattack: {gres: 'gpu:2'}}\n")
    assert ": profiles.autoattack.gres: asks for GPUs (gpu:2) and so does gpus_per_node (1)" in line


@pytest.mark.parametrize("text, key", [
    ("max_parallel: '3'\n", "max_parallel"), ("mem_gb: true\n", "mem_gb"), ("cpus_per_task: 2.0\n", "cpus_per_task"),
    ("tflops: .nan\n", "tflops"), ("tflops: .inf\n", "tflops"), ("local_gpus: [0, false]\n", "local_gpus"),
    ("max_retries: null\n", "max_retries"), ("setup: echo hi\n", "setup"), ("extra: [exclusive]\n", "extra"),
])
def test_values_are_taken_as_written_never_coerced(tmp_path, text, key):
    (line,) = problems(tmp_path, text)
    assert f": {key}: must be " in line


def test_a_yaml_1_1_boolean_word_is_refused_naming_the_key_and_what_to_write(tmp_path):
    # executor.yaml is YAML 1.2 (as params.yaml): `no` and `on` are text, so they cannot quietly mean false/true
    lines = problems(tmp_path, "kind: slurm\ncheck_gpus: no\nchain_priority: On\n"
                               "profiles: {train: {check_gpus: yes}}\n")
    source = str(tmp_path / "executor.yaml")
    assert lines == [
        f"{source}: check_gpus: must be true or false, got 'no' (str): this file is YAML 1.2, where no is text, "
        "not a boolean; write false",
        f"{source}: chain_priority: must be true or false, got 'On' (str): this file is YAML 1.2, where On is text, "
        "not a boolean; write true",
        f"{source}: profiles.train.check_gpus: must be true or false, got 'yes' (str): this file is YAML 1.2, where "
        "yes is text, not a boolean; write true"]
    assert load_text(tmp_path, "kind: slurm\ncheck_gpus: false\n").check_gpus is False
    assert load_text(tmp_path, "kind: slurm\nmem_gb: 5e1\n").mem_gb == 50.0  # YAML 1.2: a float, not text


@pytest.mark.parametrize("text, key", [
    ("partition: \"gpu\\n#SBATCH --exclusive\"\n", "partition"),
    ("account: \"a b\"\n", "account"),
    ("qos: \"normal\\nrm -rf ~\"\n", "qos"),
    ("constraint: \"a100\\nx\"\n", "constraint"),
    ("gres: \"gpu:1\\n\"\n", "gres"),
    ("extra: {mail-type: \"END\\n#SBATCH --exclusive\"}\n", "extra.mail-type"),
    ("extra: {\"bad\\n\": 1}\n", "extra"),
    ("extra: {partition: gpu}\n", "extra.partition"),
    ("extra: {t: 60}\n", "extra.t"),
])
def test_nothing_can_add_a_line_or_a_second_value_to_the_sbatch_script(tmp_path, text, key):
    (line,) = problems(tmp_path, "kind: slurm\n" + text)
    assert f": {key}: " in line


def test_a_value_the_named_keys_own_is_refused_in_extra_with_the_key_to_use(tmp_path):
    (line,) = problems(tmp_path, "kind: slurm\nextra: {time: 60}\n")
    assert line.endswith("extra.time: --time is what `timeout_min` sets: set `timeout_min` instead")


@pytest.mark.parametrize("gres, gpus", [("gpu:a100:2", 2), ("gpu:1", 1), ("gpu:h100", 1), ("shard:2", 0),
                                        ("gpu:a100:1,shard:4", 1)])
def test_gres_reaches_sbatch_and_counts_the_gpus_of_a_job(tmp_path, monkeypatch, gres, gpus):
    cfg = load_text(tmp_path, f"kind: slurm\ngres: '{gres}'\ncpus_per_task: 2\n")
    assert cfg.gpus_per_job() == gpus and slurm_parameters(cfg, "awd-x")["gres"] == gres
    monkeypatch.setattr(submitit.SlurmExecutor, "affinity", classmethod(lambda cls: 2))  # pretend srun exists
    text = make_executor(cfg, tmp_path / "logs")._make_submission_file_text("python -m x", "uid")
    assert f"#SBATCH --gres={gres}\n" in text and "--gpus-per-node" not in text


@pytest.mark.parametrize("gres", ["gpu::1", "1:gpu", "gpu:a100:1:2", "gpu 1", ""])
def test_a_malformed_gres_is_refused_saying_the_form(tmp_path, gres):
    (line,) = problems(tmp_path, f"kind: slurm\ngres: '{gres}'\n")
    assert line.endswith(f"gres: must be name[:type][:count], several separated by commas, got {gres!r}")


def test_replace_and_profiles_validate_again_and_keep_the_file_name(tmp_path):
    cfg = load_text(tmp_path, "kind: slurm\nmem_gb: 8\nprofiles: {prune: {mem_gb: 2, units_per_job: 4}}\n")
    assert (cfg.for_kind("prune").mem_gb, cfg.for_kind("prune").units_per_job, cfg.for_kind("train").mem_gb) == \
        (2, 4, 8)
    with pytest.raises(ExecutorConfigError, match=re.escape(f"{tmp_path / 'executor.yaml'}: mem_gb: must be a "
                                                            "positive number, got -1")):
        cfg.replace(mem_gb=-1)
    with pytest.raises(ExecutorConfigError, match=r"^ExecutorConfig: partition: must be a partition name"):
        ExecutorConfig(kind="slurm", partition="a b")
    # where the settings were read from is not part of what they say
    assert cfg.for_kind("prune").source == cfg.source and cfg == ExecutorConfig(
        kind="slurm", mem_gb=8, profiles={"prune": {"mem_gb": 2, "units_per_job": 4}})


def test_a_file_of_valid_settings_loads_unchanged(tmp_path):
    cfg = load_text(tmp_path, "kind: slurm\npartition: gpu,gpu-long\naccount: proj_1\nqos: high\nconstraint: "
                              "'a100|h100'\ngres: gpu:a100:1\ncpus_per_task: 8\nmem_gb: 32.5\ntimeout_min: 720\n"
                              "extra: {exclusive: true, mail-type: END}\nsetup: [module load cuda]\n")
    assert (cfg.partition, cfg.account, cfg.qos, cfg.constraint, cfg.mem_gb, cfg.extra) == (
        "gpu,gpu-long", "proj_1", "high", "a100|h100", 32.5, {"exclusive": True, "mail-type": "END"})
