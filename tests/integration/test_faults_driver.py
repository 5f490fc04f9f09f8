"""The driver under faults that outlast a poll, against tests/integration/test_submit_limits.py's scheduler
stand-in: sbatch failing while the controller is down is waited out past the give-up and said once; a full store
stops submission, spends no retry, says how much space the units left need, and a rerun after freeing finishes."""

from __future__ import annotations

import errno
import io
from pathlib import Path

import pytest

import jobs.driver as submit_mod
import jobs.unit_driver as loop
from jobs import ExecutorConfig, RunStore, Unit, backends, unit_key
from jobs.backends.slurm import SlurmBackend
from jobs.outages import StoreFull
from tests.backend_util import Site
from tests.integration.test_submit_limits import fake  # noqa: F401  (the fixture)
from tests.integration.test_submit_local import make_units, runs

DOWN = "sbatch: error: Batch job submission failed: Unable to contact slurm controller (connect failure)"


class DownSite(Site):
    """A cluster whose controller answers `scontrol ping` only after `down_for` asks."""

    def __init__(self, down_for: int) -> None:
        super().__init__()
        self.down_for = down_for

    def controller_up(self) -> bool:
        self.down_for -= 1
        return self.down_for < 0


def test_sbatch_failing_while_the_controller_is_down_is_waited_out_past_the_give_up(tmp_path, fake, monkeypatch):
    slurm = fake(errors=[DOWN])  # sbatch fails once; the controller answers `scontrol ping` after 6 asks
    site = DownSite(down_for=6)
    backends.use("slurm", type("FakeDown", (SlurmBackend,), {"executor": lambda self, cfg, log: slurm.make_executor(
        cfg, log)})(site=site))
    monkeypatch.setattr(loop, "SUBMIT_GIVE_UP_S", 0.0)  # any other failure would fail the units at once
    stream = io.StringIO()
    out = submit_mod.run_units(make_units(tmp_path, range(3)), RunStore(tmp_path / "runs"),
                               ExecutorConfig(kind="slurm", poll_s=0.01), desc="toy", stream=stream)
    said = stream.getvalue()
    assert sorted(r["double"] for r in out.values()) == [0, 2, 4] and [runs(tmp_path, x) for x in range(3)] == [1] * 3
    assert said.count("slurmctld unreachable since") == 1 and "retrying in" not in said
    assert "waiting (0 units in 0 jobs keep running)" in said and said.count("slurmctld answers again after") == 1


def fill_store(config: dict, workdir: Path, store) -> dict:
    """A unit that fails as a full filesystem makes it fail while config['full'] exists."""
    if Path(config["full"]).exists():
        raise OSError(errno.ENOSPC, "No space left on device", str(workdir / "model.pt"))
    (workdir / "model.pt").write_bytes(b"w" * 4096)
    return {"x": config["x"]}


def test_a_full_store_stops_submission_spends_no_retry_and_a_rerun_finishes(tmp_path, fake):
    slurm = fake()
    full = tmp_path / "full"
    units = [Unit("toy", unit_key("toy", {"x": x}, "c0de"), f"{__name__}:fill_store",
                  {"x": x, "full": str(full)}, label=f"x={x}") for x in range(4)]
    store, cfg = RunStore(tmp_path / "runs"), ExecutorConfig(kind="slurm", poll_s=0.01, max_queued=2, max_retries=3)
    full.touch()
    stream = io.StringIO()
    with pytest.raises(StoreFull) as info:
        submit_mod.run_units(units, store, cfg, desc="toy", stream=stream)
    assert str(info.value).startswith(f"the run store {store.root} is full")
    assert "4 units need at least 1 MB more; free space and rerun" in str(info.value)
    assert slurm.accepted == 2  # the first two jobs failed for want of space: nothing more was submitted
    said = stream.getvalue()
    assert said.count(f"the run store {store.root} is full") == 1 and "retrying unit" not in said
    attempts = store.attempts("toy", units[0].key)
    assert [a["retry"] for a in attempts] == [False] and "No space left on device" in attempts[0]["cause"]
    full.unlink()  # space freed: a plain rerun finishes every unit, each once
    out = submit_mod.run_units(units, store, cfg, desc="toy", stream=io.StringIO())
    assert sorted(r["x"] for r in out.values()) == [0, 1, 2, 3] and slurm.accepted == 6


def test_a_claim_the_full_store_refuses_stops_submission_and_releases_the_claims(tmp_path, fake, monkeypatch):
    fake()
    store = RunStore(tmp_path / "runs")
    units = make_units(tmp_path, range(2))

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(store, "claim", no_space)
    with pytest.raises(StoreFull, match="2 units need at least 1 MB more"):
        submit_mod.run_units(units, store, ExecutorConfig(kind="slurm", poll_s=0.01), desc="toy",
                             stream=io.StringIO())
    assert [runs(tmp_path, x) for x in range(2)] == [0, 0]


def test_a_submit_lock_the_full_store_refuses_while_adopting_ends_in_store_full(tmp_path, fake, monkeypatch):
    """Follow-up units handed on mid-run are adopted under the submit lock, whose owner file the full store refuses:
    the driver blocks them and ends with StoreFull, not with the OSError's traceback (found by the rehearsal)."""
    fake()
    store = RunStore(tmp_path / "runs")
    units = make_units(tmp_path, range(2))

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(store, "submit_lock", no_space)
    out = io.StringIO()
    with pytest.raises(StoreFull, match="2 units need at least 1 MB more"):
        submit_mod.run_units(units, store, ExecutorConfig(kind="slurm", poll_s=0.01), desc="toy", stream=out)
    assert [runs(tmp_path, x) for x in range(2)] == [0, 0]
    assert out.getvalue().count(f"the run store {store.root} is full") == 1
