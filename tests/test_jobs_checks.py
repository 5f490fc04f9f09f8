import numpy as np
import pytest

from jobs.checks import is_a, is_int, is_real
from jobs.executors import ExecutorConfigError, validate_fields


@pytest.mark.parametrize("value, int_, real", [(3, True, True), (np.int64(3), True, True), (2.5, False, True),
                                               (np.float32(2.5), False, True), (True, False, False),
                                               (False, False, False), ("3", False, False), (None, False, False)])
def test_a_bool_is_not_a_number(value, int_, real):
    assert is_int(value) is int_ and is_real(value) is real


def test_bool_passes_only_where_bool_is_allowed():
    assert is_a(True, (bool,)) and is_a(True, (int, bool)) and not is_a(True, (int, float)) and is_a(1, (int,))


@pytest.mark.parametrize("values, match", [({"mem_gb": True}, "'mem_gb' must be a positive number, got True"),
                                           ({"local_gpus": [0, False]}, "'local_gpus' must list GPU indices"),
                                           ({"cpus_per_task": 2.0}, "'cpus_per_task' must be a positive integer")])
def test_executor_settings_refuse_bools_for_numbers(values, match):
    with pytest.raises(ExecutorConfigError, match=match):
        validate_fields(values, "executor.yaml")
