"""Runs that did not finish normally: diverged (a result) or failed after their retries (retried by the next repro).

A stage never stops on them. Each stage records them in its artifacts (`status` beside every record), prints what
failed and how to retry, and exits 0 so that DVC commits what exists and the later stages render every table. The
train / attack / prune stages are `always_changed` in dvc.yaml: what is pending lives in the run store, which DVC
cannot hash, so each repro asks the store again; a unit that failed is then retried, and when everything is done
the stages find it all in the store, rewrite identical artifacts, and nothing downstream reruns.
"""

from __future__ import annotations

import sys
import typing as tp

DONE, DIVERGED, FAILED = "done", "diverged", "failed"


def train_status(metrics: tp.Optional[dict]) -> str:
    if metrics is None:
        return FAILED
    return DIVERGED if metrics.get("diverged") else DONE


def failure_fields(failure) -> dict:
    """What a failed unit's record carries instead of results: the cause, its log, how often it was retried."""
    return {"status": FAILED, "error": failure.error, "log": failure.log, "retries": failure.retries}


def status_of(rec: dict) -> str:
    return rec.get("status") or train_status(rec.get("metrics"))


def usable(rec: dict) -> bool:
    """A trained model that evaluations may load: neither diverged (no model) nor failed (no entry)."""
    return status_of(rec) == DONE


def skipped_record(rec: dict) -> dict:
    """An evaluation skipped because its model diverged or failed: marked, never failed itself."""
    return {"key": rec["key"], "suite": rec["suite"], "dataset": rec["dataset"], "label": rec["label"],
            "status": status_of(rec), "skipped": f"model {status_of(rec)}"}


def report(stage: str, failures: tp.Sequence, total: int, stream: tp.TextIO = sys.stderr) -> None:
    """The plain statement at the end of a stage: what failed (with logs) and how to retry exactly those units."""
    if not failures:
        return
    lines = [f"{stage}: {len(failures)} of {total} units FAILED after their retries; every table and figure was "
             "still made, with their cells marked 'failed'. Run `dvc repro` again to retry exactly these units "
             "(everything done is reused):"]
    lines += [f"  {f.line()}" for f in failures]
    print("\n".join(lines), file=stream, flush=True)


def summary(runs: tp.Iterable[dict], attacks: tp.Iterable[dict],
            prune: tp.Iterable[dict]) -> tp.List[tp.Tuple[str, str, str]]:
    """(suite, status, line) per run or evaluation that diverged or failed: for the tables' notes, the results
    README and the end of the repro."""
    out = set()
    for rec in runs:
        status, where = status_of(rec), _where(rec)
        if status == DIVERGED:
            m = rec.get("metrics") or {}
            out.add((rec["suite"], status, f"diverged: {where}: loss non-finite in epoch {m.get('diverged_epoch')} "
                                            f"(lr={m.get('diverged_lr', float('nan')):.4g}); not retried"))
        elif status == FAILED:
            out.add((rec["suite"], status, f"failed: {where}: {rec.get('error')}; log: {rec.get('log')}"))
    for what, rows in (("attack", attacks), ("prune", prune)):
        for rec in rows:
            if rec.get("status") == FAILED and not rec.get("skipped"):
                out.add((rec["suite"], FAILED, f"failed: {what} of {_where(rec)}: {rec.get('error')}; "
                                               f"log: {rec.get('log')}"))
    return sorted(out)


def _where(rec: dict) -> str:
    label = ", ".join(f"{k}={v}" for k, v in (rec.get("label") or {}).items())
    return f"{rec['suite']} {rec['dataset']} {label} (train/{rec['key'][:12]})"
