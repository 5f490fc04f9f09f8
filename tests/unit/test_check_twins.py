"""awd and jobs import nothing of each other, so each keeps its own copy of three small checks; these tests pin
that the copies answer alike (a fix to one that misses the other fails here)."""

from __future__ import annotations

import fractions

import numpy as np
import pytest

import awd.checks
import awd.train_config
import jobs.checks
import jobs.rules

VALUES = [0, 1, -3, 2.5, float("nan"), float("inf"), True, False, None, "1", [1], np.int64(3), np.float32(0.5),
          np.bool_(True), fractions.Fraction(1, 3), 1 + 2j]


@pytest.mark.parametrize("value", VALUES, ids=repr)
def test_number_checks_agree(value):
    assert awd.checks.is_int(value) == jobs.checks.is_int(value)
    assert awd.checks.is_real(value) == jobs.checks.is_real(value)


def test_bools_are_never_numbers_in_either():
    for check in (awd.checks.is_int, awd.checks.is_real, jobs.checks.is_int, jobs.checks.is_real):
        assert not check(True) and not check(False)


@pytest.mark.parametrize("word, options", [
    ("lrr", ["lr", "epochs", "momentum"]), ("slrum", ["debug", "local", "slurm"]), ("zzz", ["lr", "wd"]),
    ("gpus_per_nod", ["gpus_per_node", "mem_gb"]), ("", ["a"]), ("epoch", []),
])
def test_did_you_mean_agrees(word, options):
    assert awd.train_config.did_you_mean(word, options) == jobs.rules.did_you_mean(word, options)


def test_did_you_mean_names_the_close_option():
    assert jobs.rules.did_you_mean("slrum", ["debug", "local", "slurm"]) == " (did you mean 'slurm'?)"
    assert awd.train_config.did_you_mean("zzz", ["lr", "wd"]) == ""
