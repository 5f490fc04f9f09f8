"""jobs.backends: every registered kind satisfies the protocol, executor.yaml accepts exactly the registered kinds,
and a replacement installed through `use` is what the settings reach (and is put back)."""

import pytest

from jobs import backends
from jobs.backends.slurm import SlurmBackend, UnaskedSite
from jobs.executor_config import ExecutorConfig, ExecutorConfigError


def test_every_registered_kind_satisfies_the_protocol_and_names_itself():
    for kind in backends.KINDS:
        place = backends.backend(kind)
        assert isinstance(place, backends.Backend) and place.name == kind
    assert [k for k in backends.KINDS if backends.backend(k).in_process] == ["debug"]
    assert [k for k in backends.KINDS if backends.backend(k).is_cluster] == ["slurm"]


def test_the_settings_accept_exactly_the_registered_kinds():
    with pytest.raises(ExecutorConfigError, match="allowed: debug, local, slurm"):
        ExecutorConfig(kind="slurmm")
    with pytest.raises(ValueError, match="unknown executor kind 'pbs'"):
        backends.backend("pbs")


def test_a_backend_installed_with_use_decides_for_the_settings_and_is_put_back():
    site = UnaskedSite()
    previous = backends.use("slurm", SlurmBackend(site=site))
    try:
        cfg = ExecutorConfig(kind="slurm", time_safety_factor=2.0, timeout_min=600)
        assert backends.of(cfg).site is site
        assert backends.of(cfg).job_request(cfg, 3600.0, 30) == {"timeout_min": 240, "extra": {"nice": 30}}
        assert cfg.poll_interval() == 15.0 and cfg.gpu_budget() is not None
    finally:
        backends.use("slurm", previous)
    assert backends.backend("slurm") is not None
    local = ExecutorConfig(kind="local")
    assert backends.of(local).job_request(local, 3600.0, 30) == {} and local.gpu_budget() is None
