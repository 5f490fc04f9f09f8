"""Stand-in units: sleep for a unit's estimated duration (compressed), following the real units' store protocol.

A stand-in writes small checkpoint files in its workdir (resume by epoch), appends one line per start, checkpoint
and end to `rehearsal_attempts.jsonl` (what the report reads), and returns a result with every field the downstream
stages read. It imports neither torch nor anything of awd: job start-up stays light and a rehearsal needs no GPU.

`config["_rehearsal"]` (written by pipeline.rehearsal.swap): `seconds` (wall seconds of the whole unit), `sim_seconds`
(its estimated GPU seconds), `steps` (epochs, or blocks of an AutoAttack shard), `fault` (null, "diverge", "exit",
"timeout") and `fault_step`.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import time
import zlib
from pathlib import Path

import numpy as np

ATTEMPTS = "rehearsal_attempts.jsonl"
CHECKPOINT = "rehearsal_last.json"
FIRED = "rehearsal_faults_fired.json"
LOWERED = "rehearsal_time_limit.json"  # the job's own time limit, to restore after the requeue
MIN_CHECKPOINT_S = 2.0  # wall seconds between checkpoints: many concurrent stand-ins share two cores


def _job_id() -> str:
    if os.environ.get("SLURM_ARRAY_JOB_ID"):
        return f"{os.environ['SLURM_ARRAY_JOB_ID']}_{os.environ.get('SLURM_ARRAY_TASK_ID', '')}"
    return os.environ.get("SLURM_JOB_ID", f"pid{os.getpid()}")


def _log(workdir: Path, event: str, **fields) -> None:
    line = json.dumps({"t": time.time(), "event": event, "job": _job_id(),
                       "slurm_job": os.environ.get("SLURM_JOB_ID"), **fields})
    with open(workdir / ATTEMPTS, "a") as f:
        f.write(line + "\n")
        f.flush()


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _fired(workdir: Path) -> list:
    try:
        return json.loads((workdir / FIRED).read_text())
    except FileNotFoundError:
        return []


def _fire_once(workdir: Path, fault: str) -> bool:
    """True the first time a unit reaches its fault: a restarted attempt resumes as a healthy run would."""
    fired = _fired(workdir)
    if fault in fired:
        return False
    _write_atomic(workdir / FIRED, json.dumps(fired + [fault]))
    return True


def _hit_time_limit(workdir: Path, step: int) -> None:
    """Lowers this job's own time limit and stalls (as a run on a slow node would) until SLURM's warning signal
    makes submitit checkpoint and requeue the job."""
    job = _slurm_job_spec()
    if not job:
        raise RuntimeError("rehearsal fault 'timeout' needs a SLURM job (SLURM_JOB_ID is not set)")
    fields = _job_fields(job)
    limit_min = _run_minutes(fields) + 1
    _write_atomic(workdir / LOWERED, json.dumps({"job": job, "limit": fields.get("TimeLimit", "UNLIMITED")}))
    _log(workdir, "time_limit", step=step, limit_min=limit_min)
    subprocess.run(["scontrol", "update", f"JobId={job}", f"TimeLimit={limit_min}"], check=True, timeout=60,
                   capture_output=True)
    while True:  # submitit's signal handler ends this process (SystemExit) once it has requeued the job
        time.sleep(5)


def _slurm_job_spec() -> str | None:
    """This job for scontrol: ARRAYID_TASK for an array task. Its own SLURM_JOB_ID is not enough: the array's last
    task to start carries the array's id, which scontrol reads as every task of the array."""
    if os.environ.get("SLURM_ARRAY_JOB_ID"):
        return f"{os.environ['SLURM_ARRAY_JOB_ID']}_{os.environ.get('SLURM_ARRAY_TASK_ID', '')}"
    return os.environ.get("SLURM_JOB_ID")


def _job_fields(job: str) -> dict:
    out = subprocess.run(["scontrol", "show", "job", "-o", job], check=True, timeout=60, capture_output=True,
                         text=True).stdout
    return dict(f.split("=", 1) for f in out.split() if "=" in f)


def _run_minutes(fields: dict) -> int:
    """Whole minutes this job has run (its RunTime, as scontrol counts against the time limit), rounded up."""
    days, _, clock = fields.get("RunTime", "0:0:0").rpartition("-")
    h, m, s = (int(x) for x in clock.split(":"))
    return max(1, math.ceil((int(days or 0) * 86400 + h * 3600 + m * 60 + s) / 60))


def _restore_time_limit(workdir: Path) -> None:
    """After the requeue, the job gets its own time limit back: the fault hit one attempt, not the job's later
    attempts (which run the rest of its packed units). Raising a limit needs an operator: a rehearsal on a site's
    cluster as a plain user keeps the lowered one, and the report shows the interruptions that follow."""
    try:
        saved = json.loads((workdir / LOWERED).read_text())
    except FileNotFoundError:
        return
    done = subprocess.run(["scontrol", "update", f"JobId={saved['job']}", f"TimeLimit={saved['limit']}"],
                          timeout=60, capture_output=True, text=True)
    _log(workdir, "time_limit_restored", ok=done.returncode == 0, limit=saved["limit"])
    (workdir / LOWERED).unlink()


def run_steps(config: dict, workdir: Path) -> dict:
    """Sleeps through `steps` steps from the last checkpoint, injecting the unit's fault; returns timing facts."""
    workdir = Path(workdir)
    plan = config["_rehearsal"]
    steps, seconds, fault = int(plan["steps"]), float(plan["seconds"]), plan.get("fault")
    try:
        done = json.loads((workdir / CHECKPOINT).read_text())["step"]
    except FileNotFoundError:
        done = 0
    _log(workdir, "start", step=done)
    _restore_time_limit(workdir)
    per_step = seconds / steps
    every = max(1, math.ceil(MIN_CHECKPOINT_S / per_step)) if per_step > 0 else steps
    while done < steps:
        chunk = min(every, steps - done)
        fault_step = int(plan.get("fault_step") or 0)
        if fault and done <= fault_step < done + chunk:
            time.sleep(per_step * (fault_step - done))
            if fault == "diverge":  # a result, as awd.train records it: deterministic, never retried
                _log(workdir, "diverged", step=fault_step)
                return {"rehearsal": True, "sim_seconds": float(plan["sim_seconds"]), "diverged_step": fault_step}
            if fault == "exit" and _fire_once(workdir, "exit"):
                _log(workdir, "killed", step=fault_step)
                os.kill(os.getpid(), signal.SIGKILL)  # as the OOM killer or a lost node would
            if fault == "timeout" and _fire_once(workdir, "timeout"):
                _hit_time_limit(workdir, fault_step)
            time.sleep(per_step * (done + chunk - fault_step))
        else:
            time.sleep(per_step * chunk)
        done += chunk
        _write_atomic(workdir / CHECKPOINT, json.dumps({"step": done}))
        _log(workdir, "checkpoint", step=done)
    _log(workdir, "end", step=done)
    return {"rehearsal": True, "sim_seconds": float(plan["sim_seconds"])}


def _score(config: dict, salt: str) -> float:
    """A stable pseudo-random number in [0, 1) per unit: plausible, clearly fake metric values."""
    text = json.dumps({k: v for k, v in config.items() if not k.startswith("_")}, sort_keys=True, default=str)
    return (zlib.crc32((salt + text).encode()) % 10_000) / 10_000


def train_unit(config: dict, workdir: Path, store=None) -> dict:
    facts = run_steps(config, workdir)
    workdir = Path(workdir)
    if "diverged_step" in facts:  # the fields awd.train's divergence record carries (no model.pt)
        step = facts.pop("diverged_step")
        metrics = {"diverged": True, "diverged_epoch": step + 1, "epochs_run": step, "diverged_lr": 0.1,
                   "diverged_lambda": 5e-4, "diverged_loss": "nan", "last_finite": None,
                   "seconds": facts["sim_seconds"]}
        (workdir / "metrics.json").write_text(json.dumps(metrics))
        return dict(metrics, **facts)
    epochs = int(config["epochs"])
    acc = 0.6 + 0.3 * _score(config, "acc")
    iters = 10
    losses = 2.0 * np.exp(-np.arange(epochs) / max(1.0, epochs / 5)) + 0.05
    epoch_dog = 0.01 + 0.01 * _score(config, "dog") + np.zeros(epochs)
    np.savez(workdir / "dog_trace.npz", iteration=np.arange(epochs, dtype=np.int64) * iters,
             lam=np.full(epochs, float(config.get("wd") or 5e-4)), dog=epoch_dog, epoch_lam=np.full(epochs, 5e-4),
             epoch_dog=epoch_dog, epoch_iters=np.full(epochs, iters, dtype=np.int64), epoch_loss=losses,
             iters_per_epoch=np.int64(iters), every=np.int64(1))
    if config.get("_prepared"):
        with np.load(config["_prepared"]) as z:
            n_train = len(z["train_idx"])
        correct = np.arange(n_train) % 50 != 0  # 2 % of the training set "not fit": the underfit suite shows them
        np.save(workdir / "train_correct.npy", correct)
        np.save(workdir / "train_pred.npy", np.zeros(n_train, dtype=np.int64))
    metrics = {
        "best_epoch": epochs, "epochs_run": epochs, "val_acc": acc,
        "val_robust_acc": acc / 2 if config.get("adversarial") else None,
        "test_acc": acc - 0.01, "train_acc": 0.98, "train_xent": 0.05, "weight_norm": 50.0 + 10 * _score(config, "wn"),
        "total_loss": 0.1, "final_lambda": float(config.get("wd") or 5e-4), "mean_dog": float(epoch_dog.mean()),
        "seconds": facts["sim_seconds"],
    }
    (workdir / "metrics.json").write_text(json.dumps(metrics))
    return dict(metrics, **facts)


def autoattack_unit(config: dict, workdir: Path, store=None) -> dict:
    facts = run_steps(config, workdir)
    start, stop = int(config["start"]), int(config["stop"])
    n = stop - start
    robust = int(n * (0.4 + 0.2 * _score(config["train_config"], "aa")))
    return {"start": start, "stop": stop, "robust_correct": robust, "clean_correct": int(n * 0.85), "n": n,
            "correct": "1" * robust + "0" * (n - robust), **facts}


def prune_unit(config: dict, workdir: Path, store=None) -> dict:
    facts = run_steps(config, workdir)
    base = 0.6 + 0.3 * _score(config["train_config"], "acc")
    rows = [{"amount": 0.0, "acc": base, "sparsity": 0.0}]
    rows += [{"amount": float(a), "acc": base * (1 - float(a) ** 4), "sparsity": float(a)} for a in config["amounts"]]
    return {"rows": rows, **facts}
