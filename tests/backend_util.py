"""Fake backends for tests: the registered backend of a kind with its executor (what `submit_array` reaches) and,
for slurm, the site's answers replaced. Installed through jobs.backends.use (the seam a new kind uses too), and
put back when the test ends."""

from __future__ import annotations

import typing as tp

import pytest

from jobs import backends
from jobs.backends.slurm import SlurmBackend, UnaskedSite


class Site(UnaskedSite):
    """A cluster that answers sacctmgr with `submit_limit` and scontrol with `partition_limit_min`; nothing is
    checked before submitting."""

    def __init__(self, submit_limit: int | None = None, partition_limit_min: int | None = None) -> None:
        self.limit, self.partition_limit_min = submit_limit, partition_limit_min

    def submit_limit(self, qos: str | None) -> int | None:
        return self.limit

    def partition_time_limit_min(self, partition: str | None) -> int | None:
        return self.partition_limit_min


def fake(kind: str, executor: tp.Callable[..., tp.Any] | None = None, **site: tp.Any) -> backends.Backend:
    """The backend of `kind`, with `executor(cfg, log_dir)` making its executor when given."""
    base: type = SlurmBackend if kind == "slurm" else type(backends.backend(kind))
    attrs = {} if executor is None else {"executor": lambda self, cfg, log_dir: executor(cfg, log_dir)}
    cls = type(f"Fake{base.__name__}", (base,), attrs)
    return tp.cast(backends.Backend, cls(site=Site(**site)) if base is SlurmBackend else cls())


@pytest.fixture
def use_backend() -> tp.Iterator[tp.Callable[..., backends.Backend]]:
    """`use_backend(kind, executor=None, **site)` installs `fake(...)` for the rest of the test."""
    replaced: list[tuple[str, backends.Backend | None]] = []

    def install(kind: str, executor: tp.Callable[..., tp.Any] | None = None, **site: tp.Any) -> backends.Backend:
        backend = fake(kind, executor, **site)
        replaced.append((kind, backends.use(kind, backend)))
        return backend

    yield install
    for kind, previous in reversed(replaced):
        backends.use(kind, previous)
