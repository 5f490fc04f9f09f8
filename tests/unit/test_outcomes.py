"""Diverged and failed runs in the stage artifacts, the tables' rows and notes, and the end-of-repro summary."""

from __future__ import annotations

from pipeline import outcomes

DIVERGED_RUN = {"suite": "lr_sensitivity", "dataset": "digits", "key": "ab" * 32, "status": "diverged",
                "label": {"lr": 1.0, "method": "fixed", "value": 5e-4, "seed": 0},
                "metrics": {"diverged": True, "diverged_epoch": 3, "diverged_lr": 0.97}}
FAILED_RUN = {"suite": "lr_sensitivity", "dataset": "digits", "key": "cd" * 32, "status": "failed", "metrics": None,
              "label": {"lr": 0.1, "method": "awd", "value": 0.016, "seed": 1}, "error": "boom", "log": "/l/1.err",
              "retries": 2}


def test_status_and_usability():
    assert [outcomes.status_of(r) for r in (DIVERGED_RUN, FAILED_RUN)] == ["diverged", "failed"]
    assert outcomes.status_of({"metrics": {"val_acc": 0.5}}) == "done"  # records written before `status` existed
    assert not outcomes.usable(DIVERGED_RUN) and outcomes.skipped_record(DIVERGED_RUN)["skipped"] == "model diverged"


def test_summary_lines_and_row_marks():
    pruned = [dict(outcomes.skipped_record(FAILED_RUN)),  # the model failed: skipped, not counted again
              {"suite": "lr_sensitivity", "dataset": "digits", "key": "ef" * 32, "label": {"lr": 0.1},
               "status": "failed", "error": "oom", "log": "/l/2.err", "skipped": None}]
    marks = outcomes.summary([DIVERGED_RUN, FAILED_RUN, {"suite": "grid", "metrics": {}}], [], pruned)
    assert [m.line for m in marks] == [
        "diverged: lr_sensitivity digits lr=1.0, method=fixed, value=0.0005, seed=0 (train/abababababab): loss "
        "non-finite in epoch 3 (lr=0.97); not retried",
        "failed: lr_sensitivity digits lr=0.1, method=awd, value=0.016, seed=1 (train/cdcdcdcdcdcd): boom; log: /l/1.err",
        "failed: prune of lr_sensitivity digits lr=0.1 (train/efefefefefef): oom; log: /l/2.err"]
    rows = [{"dataset": "digits", "lr": "1", "method": "fixed", "note": "paper has no such lr"},
            {"dataset": "digits", "lr": "0.1", "method": "awd", "note": ""},
            {"dataset": "digits", "lr": "0.1", "method": "fixed", "note": ""}]
    outcomes.mark_rows(rows, ["dataset", "lr", "method"], marks[:2])
    assert [r["note"] for r in rows] == ["diverged (see below); paper has no such lr", "failed (see below)", ""]
