"""Runs that did not finish normally: diverged (a result) or failed after their retries (retried by the next repro).

A stage never stops on them. Each stage records them in its artifacts (`status` beside every record), prints what
failed and how to retry, and exits 0 so that DVC commits what exists and the later stages render every table. What
is still to do lives in the run store, which DVC does not hash: each of the train / attack / prune stages also
writes its `pending/<stage>.txt` (a dependency of the stage), and the `pending` stage notes the ones that list
failed units, so `dvc status` shows those stages changed and the next `dvc repro` runs them again; a unit that
failed is then retried, and when everything is done the marks are back to "nothing pending" and `dvc status` says
the pipeline is up to date (pipeline/pending.py).
"""

from __future__ import annotations

import sys
import typing as tp

DONE, DIVERGED, FAILED = "done", "diverged", "failed"


def train_status(metrics: dict | None) -> str:
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


class Mark(tp.NamedTuple):
    suite: str
    status: str  # DIVERGED or FAILED
    line: str  # what the tables' notes, the results README and the end of the repro say
    rec: dict  # the run (or evaluation) record


def summary(runs: tp.Iterable[dict], attacks: tp.Iterable[dict], prune: tp.Iterable[dict]) -> list[Mark]:
    """One mark per run or evaluation that diverged or failed, sorted by its line."""
    out: dict[str, Mark] = {}
    for rec in runs:
        status = status_of(rec)
        where = _where(rec) if status != DONE else ""
        if status == DIVERGED:
            m = rec.get("metrics") or {}
            line = (f"diverged: {where}: loss non-finite in epoch {m.get('diverged_epoch')} "
                    f"(lr={m.get('diverged_lr', float('nan')):.4g}); not retried")
            out.setdefault(line, Mark(rec["suite"], status, line, rec))
        elif status == FAILED:
            line = f"failed: {where}: {rec.get('error')}; log: {rec.get('log')}"
            out.setdefault(line, Mark(rec["suite"], status, line, rec))
    for what, rows in (("attack", attacks), ("prune", prune)):
        for rec in rows:
            if rec.get("status") == FAILED and not rec.get("skipped"):
                line = f"failed: {what} of {_where(rec)}: {rec.get('error')}; log: {rec.get('log')}"
                out.setdefault(line, Mark(rec["suite"], FAILED, line, rec))
    return [out[line] for line in sorted(out)]


def _where(rec: dict) -> str:
    label = ", ".join(f"{k}={v}" for k, v in (rec.get("label") or {}).items())
    return f"{rec['suite']} {rec['dataset']} {label} (train/{rec['key'][:12]})"


# table row key -> the record field it shows (tables format hyper-parameters with 4 significant digits)
_ROW_FIELDS = {"dataset": lambda r: r.get("dataset"), "lr": lambda r: (r.get("label") or {}).get("lr"),
               "method": lambda r: (r.get("label") or {}).get("method"),
               "λ_wd / DoG": lambda r: (r.get("label") or {}).get("value")}


def _shows(cell: tp.Any, value: tp.Any, key: str) -> bool:
    if value is None:
        return False
    if key == "dataset":
        return str(cell).split(" (")[0] == str(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{float(value):.4g}" in {part.strip() for part in str(cell).split(",")}
    return str(cell) == str(value)


def mark_rows(rows: list[dict], keys: tp.Sequence[str], marks: tp.Sequence[Mark]) -> None:
    """Prefixes the note of every table row that shows a diverged or failed run with its status, as the paper marks
    collapsed cells: the row's mean leaves the run out, and the table's notes say why."""
    shown = [k for k in keys if k in _ROW_FIELDS]
    if not shown or "lr" not in shown and "λ_wd / DoG" not in shown:
        return  # rows not keyed by the run's hyper-parameters: the table's notes alone say it
    for row in rows:
        hits = sorted({m.status for m in marks if all(_shows(row[k], _ROW_FIELDS[k](m.rec), k) for k in shown)})
        if hits:
            row["note"] = "; ".join([f"{'/'.join(hits)} (see below)"] + ([row["note"]] if row.get("note") else []))
