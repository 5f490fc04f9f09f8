"""Reliability: real faults injected into real components, each survived with nothing lost or silently used.

- a training job killed with SIGKILL mid-epoch resumes from its last checkpoint to bit-identical weights and metrics;
- an in-progress checkpoint that is cut short, bit-flipped or carries pickled code is never used and never makes
  every retry crash: it is moved aside and the run restarts (to the same result);
- every checkpoint load is `torch.load(..., weights_only=True)`: pickled code is refused, never run;
- disk full (ENOSPC) or a read-only directory while committing a store entry or saving a checkpoint leaves no
  entry that counts as done and no temporary file, and a retry once the fault clears succeeds;
- an entry damaged after commit (same-size byte flip) is detected by its manifest checksums and recomputed.
The dvc-level faults (a diverging grid cell, a damaged store entry under `dvc repro`, bad params/executor.yaml,
two `dvc repro` at once) are in test_reliability_pipeline.py.
"""

from __future__ import annotations

import ast
import builtins
import errno
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import textwrap
import time
import zipfile
from pathlib import Path

import pytest
import torch

from awd.autoattack import load_shard
from awd.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from awd.train import TrainConfig, load_model, train
from jobs import RunStore, Unit, run_units, unit_key
from jobs.executors import ExecutorConfig
from jobs.job import execute_unit
from tests.digits_util import digits_train_data
from tests.log_util import awd_log

pytestmark = pytest.mark.reliability

ROOT = Path(__file__).resolve().parents[2]
TESTS = ROOT / "tests"
TRAIN_FN = "pipeline.units.train:train_unit"


def run_config(**kw) -> dict:
    base = dict(dataset="digits", model="tiny", model_kw={"width": 4}, epochs=2, batch_size=64, lr=0.2,
                wd_method="fixed", wd=5e-4, dog=0.0, seed=0, deterministic=True)
    base.update(kw)
    return TrainConfig.from_dict(base).to_dict()


@pytest.fixture(scope="module")
def digits():
    return digits_train_data(0.1)


@pytest.fixture(scope="module")
def reference(digits, tmp_path_factory):
    """An uninterrupted 2-epoch run, the yardstick for every interrupted or restarted one."""
    out = tmp_path_factory.mktemp("reference")
    metrics = train(run_config(), digits, out, device="cpu")
    return {"out": out, "metrics": metrics}


def load(path):
    return torch.load(path, map_location="cpu", weights_only=True)


def no_seconds(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if k != "seconds"}


def assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = load(a), load(b)
    assert list(wa) == list(wb)
    for k in wa:
        assert wa[k].dtype == wb[k].dtype and torch.equal(wa[k], wb[k]), f"{k} differs"


def assert_same_run(out: Path, ref: Path) -> None:
    """model.pt tensor for tensor, metrics.json and history.json equal except wall-clock times."""
    assert_same_weights(out / "model.pt", ref / "model.pt")
    assert no_seconds(json.loads((out / "metrics.json").read_text())) == \
        no_seconds(json.loads((ref / "metrics.json").read_text()))
    drop = lambda rows: [no_seconds(r) for r in rows]  # noqa: E731
    assert drop(json.loads((out / "history.json").read_text())) == drop(json.loads((ref / "history.json").read_text()))


def temporaries(root: Path) -> list[Path]:
    return [p for p in Path(root).rglob("*") if p.name.endswith(".tmp")]


# --- kill -9 mid-epoch ----------------------------------------------------------------------------------------

# Runs the real job-side entry point (jobs.job.execute_unit -> pipeline.units.train:train_unit -> awd.train) and
# parks inside epoch 2, after epoch 1's checkpoint, so that the parent can SIGKILL it there. The hook only waits: it
# changes nothing the run computes.
KILLED_JOB = textwrap.dedent("""
    import json, sys, time
    from pathlib import Path
    import awd.train
    from jobs import RunStore, Unit
    from jobs.job import execute_unit

    store_root, unit_json, inside = sys.argv[1:4]
    real_step, steps = awd.train._Run.step, [0]

    def step(self, idx):
        if self.epoch == 1:  # epoch 1 is done and checkpointed; this is epoch 2
            steps[0] += 1
            if steps[0] == 3:
                Path(inside).write_text(str(self.epoch))
                time.sleep(600)
        return real_step(self, idx)

    awd.train._Run.step = step
    execute_unit(RunStore(store_root), Unit(**json.loads(unit_json)))
""")


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """The prepare stage's split artifact, made by the stage's own code."""
    from awd.checkpoint import save_npz
    from pipeline.params import load_params
    from pipeline.prepare import prepare_dataset

    path = tmp_path_factory.mktemp("prepared") / "digits.npz"
    save_npz(path, **prepare_dataset(load_params(ROOT / "params.yaml"), "digits"))
    return path


def train_unit_for(prepared: Path, **kw) -> Unit:
    cfg = run_config(**kw)
    return Unit("train", unit_key("train", cfg, "test"), TRAIN_FN,
                dict(cfg, _prepared=str(prepared), _data_root=str(ROOT / "data" / "raw")), label="kill-9")


def wait_for(predicate, what, proc=None, limit_s=240.0):
    deadline = time.time() + limit_s  # a safety limit only: no test asserts how long anything takes
    while not predicate():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the job ended ({proc.returncode}) before {what}:\n{proc.stdout.read()}")
        if time.time() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.05)


def test_kill_9_mid_epoch_resumes_from_last_checkpoint_to_identical_weights(prepared, tmp_path, capfd):
    unit = train_unit_for(prepared, epochs=3)
    ref_store, store = RunStore(tmp_path / "uninterrupted"), RunStore(tmp_path / "killed")
    assert execute_unit(ref_store, unit) == "done"
    capfd.readouterr()

    inside = tmp_path / "inside-epoch-2"
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", AWD_CHECKPOINT_EVERY_S="0")
    job = subprocess.Popen([sys.executable, "-c", KILLED_JOB, str(store.root), json.dumps(unit.__dict__),
                            str(inside)], cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True)
    try:
        wait_for(inside.exists, "the job to be inside epoch 2", proc=job)
        entry = store.path("train", unit.key)
        assert load_checkpoint(entry / "resume" / "last.pt", require_integrity=True)["epoch"] == 1
        os.kill(job.pid, signal.SIGKILL)
        assert job.wait(timeout=60) == -signal.SIGKILL
    finally:
        if job.poll() is None:
            job.kill()
            job.wait()
    assert not store.is_done("train", unit.key) and not (entry / "manifest.json").exists()
    assert not (entry / "model.pt").exists()

    assert execute_unit(store, unit) == "done"  # the rerun: what a requeued or resubmitted job does
    out = capfd.readouterr().out
    assert "resumed from epoch 1" in out and "epoch 2/3" in out and "epoch 1/3" not in out, out
    assert_same_run(entry, ref_store.path("train", unit.key))
    assert no_seconds(store.result("train", unit.key)) == no_seconds(ref_store.result("train", unit.key))


# --- unusable in-progress checkpoints ---------------------------------------------------------------------------

def _truncate(path: Path) -> None:
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size // 2)


def _flip_tensor_bytes(path: Path) -> None:
    """Flips a byte inside the largest tensor's data (torch.save stores records uncompressed): torch.load alone
    loads the result without complaint."""
    with zipfile.ZipFile(path) as z:
        info = max((i for i in z.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    raw = bytearray(path.read_bytes())
    name_len, extra_len = struct.unpack("<HH", raw[info.header_offset + 26:info.header_offset + 30])
    raw[info.header_offset + 30 + name_len + extra_len + info.file_size // 2] ^= 0xFF
    path.write_bytes(bytes(raw))
    torch.load(path, weights_only=True)  # loads fine: only the seal can tell


def _garbage(path: Path) -> None:
    path.write_bytes(os.urandom(4096))


class PickledCode:
    """Unpickling this creates the file `marker`: stands in for any code a malicious checkpoint would run."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (builtins.open, (self.marker, "w"))


@pytest.mark.parametrize("damage", [_truncate, _flip_tensor_bytes, _garbage, "pickled_code"],
                         ids=["truncated", "bit_flip_in_tensor_data", "garbage", "pickled_code"])
def test_unusable_last_pt_is_moved_aside_and_the_run_restarts_to_the_same_result(digits, reference, tmp_path,
                                                                                 damage):
    out, marker = tmp_path / "run", tmp_path / "code-ran"
    train(run_config(), digits, out, device="cpu", checkpoint_every_s=0, stop_after_epoch=1)
    last = out / "resume" / "last.pt"
    if damage == "pickled_code":  # sealed, so that weights_only is what refuses it
        state = load(last)
        state["history"] = PickledCode(marker)
        save_checkpoint(state, last, integrity=True)
    else:
        damage(last)
    bad = last.read_bytes()

    with awd_log() as logs:
        metrics = train(run_config(), digits, out, device="cpu")
    assert not marker.exists()
    [why] = [ln for ln in logs if ln.startswith("cannot resume")]
    assert "last.pt" in why and "restarting from epoch 0" in why and ".last.pt.unusable" in why
    assert ("refused" in why and "weights_only" in why) if damage == "pickled_code" else \
        ("corrupted" in why or "no integrity seal" in why)
    assert not any(ln.startswith("resumed") for ln in logs) and logs[1].startswith("epoch 1/2")
    assert (out / "resume" / ".last.pt.unusable").read_bytes() == bad  # kept for inspection, outside the store's manifest
    assert no_seconds(metrics) == no_seconds(reference["metrics"])
    assert_same_run(out, reference["out"])
    with awd_log() as again:
        train(run_config(), digits, out, device="cpu")  # and the next retry is an ordinary resume
    assert again == ["resumed from epoch 2"]


def test_best_pt_that_does_not_match_last_pt_restarts_instead_of_finishing_with_it(digits, reference, tmp_path):
    out = tmp_path / "run"
    train(run_config(), digits, out, device="cpu", checkpoint_every_s=0, stop_after_epoch=1)
    _flip_tensor_bytes(out / "resume" / "best.pt")
    with awd_log() as logs:
        train(run_config(), digits, out, device="cpu")
    assert any(ln.startswith("cannot resume") and "best.pt" in ln for ln in logs), logs
    assert_same_run(out, reference["out"])


# --- weights_only everywhere --------------------------------------------------------------------------------------

def test_pickled_code_is_refused_by_every_loader_and_never_runs(digits, tmp_path):
    marker = tmp_path / "code-ran"
    evil, sealed = tmp_path / "evil.pt", tmp_path / "evil-sealed.pt"
    payload = {"model": PickledCode(marker), "epoch": 1, "start": 0, "stop": 1, "n": 1}
    torch.save(payload, evil)
    save_checkpoint(payload, sealed, integrity=True)  # a seal proves integrity, not safety
    assert not marker.exists()

    for path, require in ((evil, False), (sealed, False), (sealed, True)):
        with pytest.raises(CheckpointError, match=r"refused: .*weights_only=True does not allow.*could run code") \
                as err:
            load_checkpoint(path, require_integrity=require)
        assert err.value.unsafe

    run_dir = tmp_path / "finished"
    run_dir.mkdir()
    shutil.copy(evil, run_dir / "model.pt")
    with pytest.raises(CheckpointError, match="refused"):
        load_model(run_dir, run_config(), num_classes=10, in_channels=1)

    with pytest.raises(CheckpointError, match="refused"):
        load_shard(evil)  # AutoAttack shard results

    resumed = tmp_path / "resumed"  # the resume path: last.pt and a pending best.pt both carrying code
    (resumed / "resume").mkdir(parents=True)
    shutil.copy(sealed, resumed / "resume" / "last.pt")
    shutil.copy(sealed, resumed / "resume" / "best.pt.pending")
    with awd_log() as logs:
        train(run_config(epochs=1), digits, resumed, device="cpu")
    assert any("refused" in ln for ln in logs) and (resumed / "resume" / ".last.pt.unusable").exists()
    assert not marker.exists()

    torch.load(evil, weights_only=False)  # the payload is real: an unsafe load does run it
    assert marker.exists()


def _torch_load_calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "load":
            owner = ast.unparse(node.func.value)
            if owner in ("torch", "torch.serialization"):
                yield node


def test_every_torch_load_in_the_code_uses_weights_only():
    checked, offenders = 0, []
    for pkg in ("awd", "jobs", "pipeline"):
        for path in sorted((ROOT / pkg).rglob("*.py")):
            text = path.read_text()
            tree = ast.parse(text)
            where = path.relative_to(ROOT)
            for call in _torch_load_calls(tree):
                checked += 1
                kw = {k.arg: k.value for k in call.keywords}
                if not (isinstance(kw.get("weights_only"), ast.Constant) and kw["weights_only"].value is True):
                    offenders.append(f"{where}:{call.lineno}: {ast.unparse(call)}")
            for node in ast.walk(tree):
                if isinstance(node, ast.Call):
                    src = ast.unparse(node.func)
                    kws = {k.arg: ast.unparse(k.value) for k in node.keywords}
                    if src in ("pickle.load", "pickle.loads", "pickle.Unpickler", "dill.load", "cloudpickle.load"):
                        offenders.append(f"{where}:{node.lineno}: {src}")
                    if src.endswith("load") and kws.get("allow_pickle") == "True":
                        offenders.append(f"{where}:{node.lineno}: allow_pickle=True")
            # and a plain-text grep, so that no spelling of the call escapes the AST check above
            for n, line in enumerate(text.splitlines(), 1):
                code = line.split("#")[0]
                if "torch.load(" in code and "`" not in code and "weights_only=True" not in code:
                    offenders.append(f"{where}:{n}: {line.strip()}")
    assert checked >= 1, "found no torch.load call at all: the scan is broken"
    assert not offenders, "\n".join(offenders)


# --- disk full and permission errors ----------------------------------------------------------------------------

def _toy_unit(tmp_path: Path, x: int) -> Unit:
    config = {"x": x, "counter": str(tmp_path / f"count-{x}.txt")}
    return Unit("toy", unit_key("toy", {"x": x}, "c0de"), "jobfns:record", config, label=f"x={x}")


@pytest.fixture()
def importable_jobfns(monkeypatch):
    monkeypatch.syspath_prepend(str(TESTS))


def _enospc(path) -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))


@pytest.mark.parametrize("where", ["writing result.json", "writing manifest.json", "renaming manifest.json"])
def test_disk_full_during_commit_leaves_no_done_entry_and_no_temporaries(tmp_path, monkeypatch, importable_jobfns,
                                                                         where):
    store, unit = RunStore(tmp_path / "store"), _toy_unit(tmp_path, 3)
    real_fsync, real_replace = os.fsync, os.replace
    action, target = where.split()

    def fsync(fd):
        name = os.path.basename(os.readlink(f"/proc/self/fd/{fd}"))
        if action == "writing" and name.startswith(f".{target}."):
            raise _enospc(name)  # the bytes went into the temporary; the disk filled before they were durable
        return real_fsync(fd)

    def replace(src, dst, *a, **kw):
        name = Path(dst).name
        if name == "error.txt" or (action == "renaming" and name == target):
            raise _enospc(dst)  # the disk stays full: recording the error fails too
        return real_replace(src, dst, *a, **kw)

    with monkeypatch.context() as m:
        m.setattr(os, "fsync", fsync)
        m.setattr(os, "replace", replace)
        with pytest.raises(OSError) as err:
            execute_unit(store, unit)
    assert err.value.errno == errno.ENOSPC

    entry = store.path("toy", unit.key)
    assert not store.is_done("toy", unit.key, verify=True)
    assert not (entry / "manifest.json").exists() and not (entry / "result.json").exists()
    assert temporaries(store.root) == []
    assert not (store.root / "_quarantine").exists()  # nothing half-done that later looked done

    assert execute_unit(store, unit) == "done"  # the disk has room again: the retry commits
    assert store.is_done("toy", unit.key, verify=True) and store.result("toy", unit.key) == {"double": 6}
    assert temporaries(store.root) == []


def test_disk_full_while_saving_a_checkpoint_keeps_the_previous_one_and_the_retry_resumes(digits, reference,
                                                                                          tmp_path, monkeypatch):
    out = tmp_path / "run"
    real_fsync = os.fsync
    saves = []

    def fsync(fd):
        name = os.path.basename(os.readlink(f"/proc/self/fd/{fd}"))
        if name.startswith(".last.pt."):
            saves.append(name)
            if len(saves) == 2:  # epoch 2's checkpoint: written into the temporary, then the disk is full
                raise _enospc(name)
        return real_fsync(fd)

    with monkeypatch.context() as m:
        m.setattr(os, "fsync", fsync)
        with pytest.raises(OSError) as err:
            train(run_config(), digits, out, device="cpu", checkpoint_every_s=0)
    assert err.value.errno == errno.ENOSPC

    assert load_checkpoint(out / "resume" / "last.pt", require_integrity=True)["epoch"] == 1  # the old one, whole
    assert temporaries(out) == [] and not (out / "model.pt").exists()
    with awd_log() as logs:
        train(run_config(), digits, out, device="cpu")
    assert logs[0] == "resumed from epoch 1"
    assert_same_run(out, reference["out"])


def _as_unprivileged_writer(store: RunStore, key: str) -> list[str]:
    """Tries to save a checkpoint into the entry and to commit it, in a forked child that is not root when we
    are (a read-only directory stops root only through a filesystem flag): one "<what> ok|PermissionError" each."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: no exec, so it keeps the imported modules and needs no access to the interpreter
        status = 1
        try:
            os.close(read)
            if os.geteuid() == 0:
                os.setgroups([])
                os.setgid(65534)
                os.setuid(65534)
            lines = []
            for what, attempt in (
                ("checkpoint", lambda: save_checkpoint({"epoch": 2, "w": torch.ones(3)},
                                                       store.path("toy", key) / "last.pt", integrity=True)),
                ("commit", lambda: store.commit("toy", key, {"x": 1})),
            ):
                try:
                    attempt()
                    lines.append(f"{what} ok")
                except PermissionError:
                    lines.append(f"{what} PermissionError")
            os.write(write, "\n".join(lines).encode())
            status = 0
        finally:
            os._exit(status)
    os.close(write)
    with os.fdopen(read) as f:
        out = f.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, out
    return out.splitlines()


def test_read_only_directory_leaves_no_done_entry_and_the_retry_after_fixing_it_succeeds():
    base = Path(tempfile.mkdtemp(prefix="awd-readonly-"))  # outside pytest's 0700 tmp tree: the writer must reach it
    try:
        os.chmod(base, 0o755)
        store = RunStore(base / "store")
        key = unit_key("toy", {"x": 1}, "c0de")
        entry = store.workdir("toy", key)
        (entry / "data.txt").write_text("payload\n")
        save_checkpoint({"epoch": 1, "w": torch.zeros(3)}, entry / "last.pt", integrity=True)
        for p in [base, *base.rglob("*")]:
            if os.geteuid() == 0:
                os.chown(p, 65534, 65534)
        os.chmod(entry, 0o555)

        assert _as_unprivileged_writer(store, key) == ["checkpoint PermissionError", "commit PermissionError"]
        assert not store.is_done("toy", key, verify=True) and not (entry / "manifest.json").exists()
        assert temporaries(store.root) == []
        assert load_checkpoint(entry / "last.pt", require_integrity=True)["epoch"] == 1  # untouched

        os.chmod(entry, 0o755)  # the fault is cleared
        assert _as_unprivileged_writer(store, key) == ["checkpoint ok", "commit ok"]
        assert store.is_done("toy", key, verify=True) and store.result("toy", key) == {"x": 1}
        assert load_checkpoint(entry / "last.pt", require_integrity=True)["epoch"] == 2
        assert temporaries(store.root) == []
    finally:
        shutil.rmtree(base, ignore_errors=True)


# --- damaged store entries --------------------------------------------------------------------------------------

def test_same_size_byte_flip_in_a_committed_result_is_detected_and_only_that_unit_recomputed(tmp_path,
                                                                                            importable_jobfns):
    store, cfg = RunStore(tmp_path / "store"), ExecutorConfig(kind="debug")
    units = [_toy_unit(tmp_path, x) for x in (1, 2, 3)]
    assert run_units(units, store, cfg) == {u.key: {"double": 2 * u.config["x"]} for u in units}
    result = store.path("toy", units[1].key) / "result.json"
    text = result.read_text()
    result.write_text(text.replace('"double": 4', '"double": 5'))  # same size, different value
    assert store.is_done("toy", units[1].key)  # the cheap size check alone cannot see it ...

    again = run_units(units, store, cfg)  # ... the stage's own check (checksums of what changed) does
    assert again[units[1].key] == {"double": 4}
    counts = [len(Path(u.config["counter"]).read_text().splitlines()) for u in units]
    assert counts == [1, 2, 1]
    [moved] = (store.root / "_quarantine" / "toy").iterdir()
    assert "result.json sha256 differs from the manifest" in (moved / "reason.txt").read_text()


def test_evaluation_stages_never_load_a_damaged_trained_model(reference, tmp_path):
    """A bit flip in a committed model.pt loads fine with torch.load; the attack/prune stages check the train entry
    first (driver side and job side) and stop with what is wrong and what to do, instead of evaluating it. They
    move nothing: the train stage, which recomputes the entry, quarantines it."""
    from jobs.store import StoreError
    from pipeline.trained_runs import check_trained
    from pipeline.units.prune import prune_unit

    store = RunStore(tmp_path / "store")
    cfg = run_config()
    key = unit_key("train", cfg, "test")
    entry = store.workdir("train", key)
    shutil.copy(reference["out"] / "model.pt", entry / "model.pt")
    store.commit("train", key, reference["metrics"])
    rec = {"suite": "lr_sensitivity", "label": {"lr": 0.2}, "key": key, "config": cfg}
    config = {"train_key": key, "train_config": cfg, "_data_root": str(ROOT / "data" / "raw"), "amounts": [0.5]}
    plan = [(rec, Unit("prune", unit_key("prune", config, "test"), "pipeline.units.prune:prune_unit", config))]
    check_trained(store, plan, "prune")
    good = prune_unit(config, tmp_path / "work", store)  # the undamaged entry evaluates

    _flip_tensor_bytes(entry / "model.pt")
    with pytest.raises(StoreError, match=r"(?s)prune: 1 trained run\(s\) .* damaged.*dvc repro -f -s train.*"
                                         f"train/{key}\\): damaged: model.pt sha256 differs from the manifest"):
        check_trained(store, plan, "prune")
    assert (entry / "model.pt").exists() and not (store.root / "_quarantine").exists()

    with pytest.raises(RuntimeError, match=f"train/{key} is not done or was damaged \\(model.pt sha256 differs"):
        prune_unit(config, tmp_path / "work", store)  # the job side checks too, whatever the driver saw
    assert good["rows"][0]["amount"] == 0.0
