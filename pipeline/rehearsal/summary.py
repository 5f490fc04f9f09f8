"""Several rehearsals of one campaign in one report: results/rehearsal.json (the figures of the `--main` run plus a
summary of every run, e.g. where today's design broke) and results/rehearsal.md, with the main run's plot.

    python -m pipeline.rehearsal.summary --main results/rehearsal/C/rehearsal.json results/rehearsal/*/rehearsal.json
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from jobs.atomic import atomic_write_text as write_text
from pipeline.common import write_json
from pipeline.rehearsal.report import markdown

SUMMARY_KEYS = ("label", "exit_status", "gpus", "units_per_job", "units", "critical_path_h", "makespan_h", "lower_bound_h", "efficiency",
                "boundary_idle_gpu_h", "dependency_idle_gpu_h", "idle_nothing_pending_gpu_h", "minutes_per_gpu_hour",
                "peak_queued", "qos_max_submit_jobs_per_user", "sbatch_calls",
                "faults_injected", "faults_survived", "faults_not_reached", "lost", "tables_complete", "breaks",
                "sbatch_refused", "wall_s", "profile", "chain_priority", "granted_gpu_h", "granted_bound_h",
                "granted_efficiency", "others_gpu_h", "cluster_faults")


def _row(r: dict, path: Path) -> str:
    shared = r.get("profile") == "shared"  # the bound the GPUs the scheduler granted us allow, beside the cluster's
    granted_bound = f" (granted: {r['granted_bound_h']})" if shared else ""
    granted_eff = f" (granted: {r['granted_efficiency']})" if shared else ""
    broke = "; ".join(f"`{b['stage']}` (dvc exit {b['exit_status']}, {b['after_wall_s']} s)" for b in r["breaks"])
    return (f"| [{r['label']}]({path.parent.as_posix()}/rehearsal.md) | {r['exit_status']} | {r.get('gpus', '')} | "
            f"{r['units_per_job']} | "
            f"{broke or 'none'} | {r['makespan_h']} | {r['lower_bound_h']}{granted_bound} | {r['efficiency']}"
            f"{granted_eff} | "
            f"{r.get('idle_nothing_pending_gpu_h', r['boundary_idle_gpu_h'])} | "
            f"{r['boundary_idle_gpu_h'] if 'idle_nothing_pending_gpu_h' in r else 'n/m'} | "
            f"{r['peak_queued']} / {r['qos_max_submit_jobs_per_user']} | "
            f"{json.dumps(r['faults_injected'])} | {json.dumps(r['faults_survived'])} | {r['lost']} | "
            f"{r['tables_complete']} |")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--main", required=True, type=Path, help="the run whose figures the report leads with")
    p.add_argument("runs", nargs="*", type=Path, help="every run's rehearsal.json (the main one may repeat)")
    p.add_argument("--out", default=Path("results"), type=Path)
    p.add_argument("--notes", type=Path, default=None, help="a Markdown file appended after the main run's figures")
    a = p.parse_args(argv)
    paths = [a.main] + [r for r in a.runs if r.resolve() != a.main.resolve()]
    runs = [(json.loads(path.read_text()), path) for path in paths]
    main_run = runs[0][0]
    report = dict(main_run, runs=[{k: r.get(k) for k in SUMMARY_KEYS} | {"report": str(path.parent)}
                                  for r, path in runs])
    a.out.mkdir(parents=True, exist_ok=True)
    write_json(a.out / "rehearsal.json", report)
    shutil.copyfile(a.main.parent / "rehearsal_gpus.png", a.out / "rehearsal_gpus.png")
    rel = a.main.parent.relative_to(a.out) if a.main.parent.is_relative_to(a.out) else a.main.parent
    lines = ["# Rehearsals of the campaign (stand-ins, not results)", "",
             "Each row is one `python -m pipeline.rehearsal` run; the figures after the table are the first row's.",
             "", "Idle GPU-h with nothing pending splits into *boundary* (units whose inputs existed were not yet "
             "submitted: stage barriers, driver start and restart) and the dependency chain's tail (nothing was "
             "ready; no scheduling could use those GPUs). Rows measured before that split show `n/m` (not measured).",
             "", "| run | exit | GPUs | units/job | where it broke | makespan h | lower bound h | efficiency | "
             "idle, nothing pending GPU-h | of which boundary GPU-h | peak queued / QOS | faults injected | survived | "
             "lost | tables |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    lines += [_row(r, path.relative_to(a.out) if path.is_relative_to(a.out) else path) for r, path in runs]
    body = markdown(main_run)
    lines += ["", body.split("\n", 1)[1], f"(main run's own report: {rel}/rehearsal.md)", ""]
    if a.notes is not None:
        lines += [a.notes.read_text().rstrip("\n"), ""]
    write_text(a.out / "rehearsal.md", "\n".join(lines))


if __name__ == "__main__":
    main()
