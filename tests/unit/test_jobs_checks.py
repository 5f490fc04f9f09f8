import numpy as np
import pytest

from jobs.bounded_yaml import LIMITS
from jobs.checks import brief, is_a, is_int, is_real
from jobs.executors import ExecutorConfigError, load_executor_config, validate_fields


@pytest.mark.parametrize("value, int_, real", [(3, True, True), (np.int64(3), True, True), (2.5, False, True),
                                               (np.float32(2.5), False, True), (True, False, False),
                                               (False, False, False), ("3", False, False), (None, False, False)])
def test_a_bool_is_not_a_number(value, int_, real):
    assert is_int(value) is int_ and is_real(value) is real


def test_bool_passes_only_where_bool_is_allowed():
    assert is_a(True, (bool,)) and is_a(True, (int, bool)) and not is_a(True, (int, float)) and is_a(1, (int,))


@pytest.mark.parametrize("values, match", [({"mem_gb": True}, "mem_gb: must be a positive number, got True"),
                                           ({"local_gpus": [0, False]}, "local_gpus: must be a list of GPU indices"),
                                           ({"cpus_per_task": 2.0}, "cpus_per_task: must be a positive integer")])
def test_executor_settings_refuse_bools_for_numbers(values, match):
    with pytest.raises(ExecutorConfigError, match=match):
        validate_fields(values, "executor.yaml")


def _shared_bomb(levels: int = 12) -> list:
    bomb: list = ["echo"] * 10
    for _ in range(levels):
        bomb = [bomb] * 10  # 10^13 strings in 130 list slots: what a YAML alias bomb parses into
    return bomb


def test_brief_is_repr_when_short_and_cut_before_it_is_built_when_long():
    for value in ("lots", True, 0, 2.5, None, [1, 2], {"a": 1}, "x" * 78):
        assert brief(value) == repr(value)
    assert brief("x" * 10**6) == "'" + "x" * 76 + "..."
    assert len(brief(_shared_bomb())) == 80  # repr would need 10^14 characters
    assert brief(10**5000) == f"<an integer of {(10**5000).bit_length()} bits>"  # repr raises ValueError


def test_executor_errors_name_a_cut_value():
    with pytest.raises(ExecutorConfigError) as exc:
        validate_fields({"setup": {"lines": _shared_bomb()}}, "executor.yaml")
    assert str(exc.value).startswith("executor.yaml: setup: must be a list of shell lines, got {'lines': [[")
    assert len(str(exc.value)) < 200


def test_an_executor_file_past_the_reader_s_caps_is_refused(tmp_path):
    path = tmp_path / "executor.yaml"
    path.write_text("kind: local\nsetup:\n" + "  - echo hello\n" * 20_000)
    with pytest.raises(ExecutorConfigError, match=rf"executor config {path}: file larger than {LIMITS.file_bytes}"):
        load_executor_config(path)
    path.write_bytes(b"kind: local\nsetup: [\xfe]\n")
    with pytest.raises(ExecutorConfigError, match=rf"executor config {path}: not UTF-8 text: byte 20 \(line 2\)"):
        load_executor_config(path)
    path.write_text("kind: local\nsetup: [" + ", ".join(["echo hi"] * 3) + "]\n")
    assert load_executor_config(path).setup == ["echo hi"] * 3
