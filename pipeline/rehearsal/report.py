"""The rehearsal report: figures from scheduler (sacct) and store (stand-in logs) timestamps, never from the cost
model alone; results/rehearsal.json (machine-readable), rehearsal.md (for a person), rehearsal_gpus.png (plot)."""

from __future__ import annotations

import json
import typing as tp
from collections import Counter
from pathlib import Path

from ruamel.yaml import YAML

from jobs.atomic import atomic_write_text as write_text
from pipeline.common import write_json
from pipeline.rehearsal import chain, cluster_faults, shared, store_facts, timeline
from pipeline.rehearsal.chain import _tag, ended_at, first_submit, inputs
from pipeline.rehearsal.chain import sim_h as _sim_h

STAGES = ("prepare", "train", "attack", "prune", "aggregate")


def _adversarial_tag(label: str) -> tuple[str, str, bool] | None:
    """(study, method, is an extra seed) of an adversarial training unit's label; None for any other unit."""
    if not label.startswith("adversarial["):
        return None
    head, fields = _tag(label)
    return head, fields.get("method", ""), "seed" in fields


def waiting_intervals(units: list[dict], jobs: list[dict], t0: float) -> list[tuple[float, float]]:
    """Per submitted unit: (when its inputs existed (`inputs`), when its first job was submitted)."""
    submit, ended, needs = first_submit(jobs), ended_at(units), inputs(units)
    out = []
    for u in units:
        jobs_of = [submit[a["slurm_job"]] for a in u["attempts"] if a.get("slurm_job") in submit]
        if not jobs_of:
            continue
        ends = [ended.get(k) for k in needs[u["key"]]]
        if None not in ends:
            out.append((max([t0, *tp.cast(list[float], ends)]), jobs_of[0]))
    return out


def critical_path_h(units: list[dict]) -> float:
    """Longest dependency chain of estimated work: a training run then its longest evaluation; a natural fixed-λ
    run then the AWD run that uses its DoG estimate; an adversarial method's sweep (its longest run: the extra
    seeds need the val-selected best of all of them) then an extra seed then that seed's longest evaluation."""
    train = {u["key"]: u["plan"].get("sim_seconds", 0.0) for u in units if u["kind"] == "train"}
    longest_eval: dict[str, float] = {}
    for u in units:
        if u["kind"] != "train" and u["train_key"]:
            longest_eval[u["train_key"]] = max(longest_eval.get(u["train_key"], 0.0), u["plan"].get("sim_seconds", 0.0))
    chains = [train[k] + longest_eval.get(k, 0.0) for k in train]
    sweeps: dict[tuple[str, str], float] = {}
    for u in units:
        tag = _adversarial_tag(u["label"]) if u["kind"] == "train" else None
        if tag and not tag[2]:
            sweeps[tag[:2]] = max(sweeps.get(tag[:2], 0.0), train[u["key"]])
    for u in units:
        tag = _adversarial_tag(u["label"]) if u["kind"] == "train" else None
        if tag and tag[2]:
            chains.append(sweeps.get(tag[:2], 0.0) + train[u["key"]] + longest_eval.get(u["key"], 0.0))
    natural = [u["plan"].get("sim_seconds", 0.0) for u in units if u["kind"] == "train" and
               u["label"].startswith("natural")]
    chains.append(2 * max(natural, default=0.0))  # phase 1 fixed-λ run, then phase 2 AWD run of the same size
    chains.append(max(train.values(), default=0.0))
    return max(chains) / 3600


def _failed_stage(text: str) -> str | None:
    for stage in STAGES:
        if f"'{stage}'" in text:
            return stage
    return None


def tables_complete(copy: Path, final_rc: int) -> bool:
    """Every table and figure the aggregate stage promises (dvc.yaml outs and plots) is in the copy's results/."""
    if final_rc != 0 or not (copy / "results" / "README.md").exists():
        return False
    dvc = YAML(typ="safe", pure=True).load((copy / "dvc.yaml").read_text())
    pngs = [next(iter(p)) if isinstance(p, dict) else p for p in dvc.get("plots", [])]
    tables = list((copy / "results" / "tables").glob("T*.md"))
    return bool(tables) and all((copy / p).exists() for p in pngs)


def sbatch_log(work: Path) -> list[dict]:
    calls = []
    path = work / "sbatch.log"
    for line in path.read_text().splitlines() if path.exists() else []:
        t, n, rc, *msg = line.split(" ")
        calls.append({"t": float(t), "n": int(n), "rc": int(rc), "message": " ".join(msg).strip()})
    return calls


def collect(args, faults: dict, inputs: dict, campaign: dict, copy: Path, work: Path, env: dict) -> dict:
    mpg = args.minutes_per_gpu_hour
    units = store_facts.units(copy / "runs")
    jobs = timeline.sacct_jobs(env, campaign["t0"], campaign["t1"])
    t0, t1 = campaign["t0"], campaign["t1"]
    sweep = timeline.sweep(jobs, t0, t1, args.gpus, waiting_intervals(units, jobs, t0))
    calls = sbatch_log(work)
    final_rc = campaign["runs"][-1]["rc"]
    complete = tables_complete(copy, final_rc)

    kinds = Counter(u["kind"] for u in units)
    done = Counter(u["kind"] for u in units if u["done"])
    work_h = sum(u["plan"].get("sim_seconds", 0.0) for u in units) / 3600
    done_h = sum(u["plan"].get("sim_seconds", 0.0) for u in units if u["done"]) / 3600
    makespan = _sim_h(t1 - t0, mpg)
    lower = max(work_h / args.gpus, critical_path_h(units))

    broke = [r for r in campaign["runs"] if r["rc"] != 0 and not r.get("store_freed")
             and not (campaign["driver_kill"] and campaign["driver_kill"]["dvc_run"] == r["n"])]
    breaks = [{"dvc_run": r["n"], "exit_status": r["rc"], "stage": _failed_stage("\n".join(r["errors"])),
               "after_wall_s": round(r["end"] - t0, 1), "errors": r["errors"]} for r in broke]

    lost_units, repeated = [], 0
    events = campaign.get("cluster_faults", [])
    for u in units:
        lw = store_facts.lost_work(u, cluster_faults.windows(events))
        repeated += lw["repeated_steps"]
        if lw["repeated_steps"] > 0 or lw["extra_starts"] > 0 or (final_rc == 0 and not u["done"]):
            lost_units.append({"kind": u["kind"], "key": u["key"], "label": u["label"], **lw, "done": u["done"]})

    fired = Counter(a["fault"] for u in units for a in u["attempts"] if a["fault"])
    fault_units = {f: [u for u in units if any(a["fault"] == f for a in u["attempts"])] for f in fired}
    injected = dict(fired)
    # a unit's fault is survived when the unit ended done; a divergence only when the campaign completed anyway
    survived = {f: sum(1 for u in us if u["done"]) for f, us in fault_units.items()}
    survived["diverge"] = injected.get("diverge", 0) if complete else 0
    if campaign["driver_kill"]:
        injected["driver_kill"] = 1
        later = [r for r in campaign["runs"] if r["n"] > campaign["driver_kill"]["dvc_run"]]
        survived["driver_kill"] = int(bool(later) and not lost_units)  # restarted, re-attached, nothing lost
    sbatch_fault = [c for c in calls if c["message"] == "injected"]
    if sbatch_fault:
        injected["sbatch_socket_timeout"] = 1
        survived["sbatch_socket_timeout"] = int(final_rc == 0)
    names = [k for k in cluster_faults.NAMES if faults.get(k)]
    logs = [Path(r["log"]).read_text(errors="replace") for r in campaign["runs"] if Path(r["log"]).exists()]
    c_injected, c_survived, c_missed, c_rows = cluster_faults.report(
        events, names, logs, t0, mpg, final_rc == 0 and complete, len(lost_units))
    injected.update(c_injected)
    survived.update(c_survived)
    for row in c_rows:
        row["survived"] = bool(c_survived.get(row["name"]))
    survived = {k: v for k, v in survived.items() if k in injected}
    not_reached = [name for name, on in (("driver_kill", faults["kill_driver"] and not campaign["driver_kill"]),
                                         ("sbatch_socket_timeout", faults["sbatch_fail"] and not sbatch_fault)) if on]
    not_reached += c_missed
    for fault, planned in Counter(u["plan"].get("fault") for u in units if u["plan"].get("fault")).items():
        if planned > injected.get(fault, 0):
            not_reached.append(f"{fault} x{planned - injected.get(fault, 0)}")

    job_start = {j["JobIDRaw"]: j["Start"] for j in jobs if j["Start"]}
    first_unit: dict = {}  # per job attempt: when its first stand-in started (packed units start one after another)
    for u in units:
        for a in u["attempts"]:
            job = a["slurm_job"]
            if job in job_start and a["start"] >= job_start[job]:
                first_unit[job] = min(first_unit.get(job, a["start"]), a["start"])
    latency = sorted(t - job_start[j] for j, t in first_unit.items())
    standin_s = sum(a["last_t"] - a["start"] for u in units for a in u["attempts"])
    ends = [a["last_t"] for u in units for a in u["attempts"]]
    # fixed wall costs: planning and submitting before the first job, collecting after the last unit
    head_s = min(job_start.values(), default=t1) - t0
    tail_s = t1 - max(ends, default=t1)
    busy_h = sweep["running"] / 3600
    refused = [c for c in calls if c["rc"] != 0 and c["message"] != "injected"]

    shared_facts = {}
    if getattr(args, "profile", "dedicated") == "shared":  # what the scheduler granted us beside the other users
        times, series = timeline.busy_series(jobs, t0, t1)
        granted_h = _sim_h(sweep["running"], mpg)
        bound = max(critical_path_h(units), work_h / (granted_h / makespan)) if granted_h > 0 < makespan else None
        shared_facts = {"granted_gpu_h": round(granted_h, 1), "granted_mean_gpus": round(granted_h / makespan, 1),
                        "granted_bound_h": bound and round(bound, 2),
                        "granted_efficiency": round(bound / makespan, 3) if bound and final_rc == 0 else None,
                        "granted_over_time": shared.granted(series, times, t0, mpg),
                        "others_gpu_h": shared.others_gpu_h(env, t0, t1, mpg), "others": campaign.get("others"),
                        "others_load": args.others_load}
    return {
        "rehearsal": True,
        "profile": getattr(args, "profile", "dedicated"),
        "chain_priority": inputs["executor"].get("chain_priority", True),
        **shared_facts,
        "label": args.label or f"faults={args.faults}",
        "params": args.params,
        "exit_status": 0 if not lost_units and complete else 1,
        "units": {k: {"submitted": kinds[k], "done": done[k]} for k in sorted(kinds)},
        "gpu_hours": round(work_h, 2),
        "gpu_hours_done": round(done_h, 2),
        "gpus": args.gpus,
        "minutes_per_gpu_hour": mpg,
        "units_per_job": inputs["executor"].get("units_per_job", 1),
        "driver_poll_s": inputs["executor"].get("poll_s", 15.0),
        "cluster": "own (--executor)" if args.executor else "local rehearsal cluster",
        "makespan_h": round(makespan, 2),
        "wall_s": round(t1 - t0, 1),
        "lower_bound_h": round(lower, 2),
        "critical_path_h": round(critical_path_h(units), 2),
        "efficiency": round(lower / makespan, 3) if makespan > 0 and final_rc == 0 else None,  # None: it broke
        # idle while ready units were not yet submitted: what stage barriers (and driver start-ups) cost
        "boundary_idle_gpu_h": round(_sim_h(sweep["idle_ready"], mpg), 1),
        "dependency_idle_gpu_h": round(_sim_h(sweep["idle_dependency"], mpg), 1),
        "idle_nothing_pending_gpu_h": round(_sim_h(sweep["idle_nothing_pending"], mpg), 1),
        "pending_idle_gpu_h": round(_sim_h(sweep["idle_pending"], mpg), 1),
        "busy_gpu_h": round(_sim_h(sweep["running"], mpg), 1),
        "in_job_overhead_gpu_h": round(_sim_h(sweep["running"] - standin_s, mpg), 1),
        "before_first_job": {"wall_s": round(head_s, 1), "h": round(_sim_h(head_s, mpg), 2)},
        "after_last_unit": {"wall_s": round(tail_s, 1), "h": round(_sim_h(tail_s, mpg), 2)},
        "peak_queued": sweep["peak_queued"],
        "peak_running": sweep["peak_running"],
        "qos_max_submit_jobs_per_user": None if args.executor else args.max_submit,  # own cluster: the site's
        "qos_max_jobs_per_user": None if args.executor else args.max_jobs or args.gpus,
        "sbatch_calls": len(calls),
        "sbatch_refused": [{"call": c["n"], "message": c["message"][:300]} for c in refused],
        "jobs": len({j["JobIDRaw"] for j in jobs}),
        "job_attempts": len(jobs),
        "requeued_attempts": sum(1 for j in jobs if j["State"].startswith("REQUEUE")),
        "driver_cpu_s": round(campaign["driver_cpu_s"], 1),
        "scheduler": {"dispatch_latency_s_median": round(latency[len(latency) // 2], 2) if latency else None,
                      "dispatch_latency_s_max": round(latency[-1], 2) if latency else None,
                      "job_wall_s_total": round(busy_h * 3600, 1)},
        "faults_planned": dict(Counter(u["plan"].get("fault") for u in units if u["plan"].get("fault"))),
        "faults_injected": injected,
        "faults_survived": survived,
        "faults_not_reached": not_reached,
        "fault_rates": faults,
        "cluster_faults": c_rows,
        "lost": len(lost_units),
        "lost_units": lost_units[:50],
        "repeated_steps": repeated,
        "tables_complete": complete,
        "dvc_runs": [{"n": r["n"], "exit_status": r["rc"], "wall_s": round(r["end"] - r["start"], 1),
                      "store_freed": bool(r.get("store_freed"))}
                     for r in campaign["runs"]],
        "breaks": breaks,
        "driver_kill": campaign["driver_kill"] and {k: v for k, v in campaign["driver_kill"].items() if k != "t"},
        "critical_chain": chain.critical_chain(units, jobs, t0, t1, mpg),
        "_series": timeline.busy_series(jobs, t0, t1),
        "_t0": t0,
    }


def markdown(r: dict) -> str:
    lines = [
        f"# Rehearsal report ({r['label']}): stand-ins, not results",
        "",
        "A **rehearsal**: every unit was a stand-in that sleeps for its dry-run estimated duration "
        f"(× {r['minutes_per_gpu_hour']:g} wall minutes per GPU-hour), run through dvc repro → stage drivers → jobs → "
        "submitit → sbatch arrays → slurmd on the rehearsal cluster (`scripts/local-slurm.sh`, profile rehearsal), "
        "in a throwaway copy with its own run store. Times below are simulated hours (wall ÷ compression).",
        "",
        f"- params: `{r['params']}`; GPUs: {r['gpus']}; units_per_job: {r['units_per_job']}; driver poll: "
        f"{r.get('driver_poll_s', 15.0)} s wall; cluster: {r['cluster']}",
        f"- exit status: **{r['exit_status']}** (0 only when `lost` is 0 and every table and figure was produced)",
        "",
        "| figure | value |", "|---|---|",
    ]
    rows = [("units (submitted / done)", ", ".join(f"{k} {v['submitted']}/{v['done']}" for k, v in r["units"].items())),
            ("simulated work (GPU-h), submitted / done", f"{r['gpu_hours']} / {r['gpu_hours_done']}"),
            ("makespan (h)" + ("" if not r["breaks"] else ": until it broke"), r["makespan_h"]), ("lower bound (h): max(work ÷ GPUs, critical path "
                                               f"{r['critical_path_h']} h)", r["lower_bound_h"]),
            ("efficiency (lower bound ÷ makespan)", r["efficiency"]),
            ("GPU-h busy (jobs holding a GPU)", r["busy_gpu_h"]),
            ("of which no stand-in ran (job start-up, submitit, stalls; scheduler overhead)",
             r["in_job_overhead_gpu_h"]),
            ("GPU-h idle while jobs were pending (scheduler, QOS)", r["pending_idle_gpu_h"]),
            ("GPU-h idle with nothing pending", r.get("idle_nothing_pending_gpu_h", r["boundary_idle_gpu_h"])),
            ("of which ready units were not yet submitted (stage boundaries, driver start and restart)",
             r["boundary_idle_gpu_h"] if "idle_nothing_pending_gpu_h" in r else "not measured"),
            ("of which nothing was ready (the dependency chain's tail)", r.get("dependency_idle_gpu_h", "not measured")),
            ("peak queued (pending + running) vs QOS MaxSubmitJobsPerUser",
             f"{r['peak_queued']} / {r['qos_max_submit_jobs_per_user']}"),
            ("peak running vs QOS MaxJobsPerUser", f"{r['peak_running']} / {r['qos_max_jobs_per_user']}"),
            ("sbatch calls (refused by the cluster)", f"{r['sbatch_calls']} ({len(r['sbatch_refused'])})"),
            ("jobs / attempts (requeued)", f"{r['jobs']} / {r['job_attempts']} ({r['requeued_attempts']})"),
            ("driver CPU (s)", r["driver_cpu_s"]),
            ("job dispatch latency, median / max (wall s)",
             f"{r['scheduler']['dispatch_latency_s_median']} / {r['scheduler']['dispatch_latency_s_max']}"),
            ("faults injected", json.dumps(r["faults_injected"])),
            ("faults survived", json.dumps(r["faults_survived"])),
            ("faults planned but not reached (the campaign stopped first)", ", ".join(r["faults_not_reached"]) or "-"),
            ("lost (units with work lost or repeated beyond their fault)", r["lost"]),
            ("tables complete", r["tables_complete"])]
    lines += [f"| {a} | {b} |" for a, b in rows]
    nothing_pending = r.get("idle_nothing_pending_gpu_h", r["boundary_idle_gpu_h"])
    capacity = r["busy_gpu_h"] + r["pending_idle_gpu_h"] + nothing_pending  # = GPUs x makespan
    if capacity > 0:
        share = lambda x: f"{x} GPU-h ({100 * x / capacity:.0f} %)"  # noqa: E731
        lines += ["", "## Where the time went", "",
                  f"{r['gpus']} GPUs × {r['makespan_h']} h = {capacity:.0f} GPU-h: stand-ins working "
                  f"{share(round(r['busy_gpu_h'] - r['in_job_overhead_gpu_h'], 1))}, jobs holding a GPU without a "
                  f"stand-in running {share(r['in_job_overhead_gpu_h'])}, idle while jobs were pending "
                  f"{share(r['pending_idle_gpu_h'])}, idle with nothing pending {share(nothing_pending)}"
                  + (f": ready units not yet submitted {share(r['boundary_idle_gpu_h'])}, nothing ready "
                     f"{share(r['dependency_idle_gpu_h'])}." if "dependency_idle_gpu_h" in r else
                     " (stage boundaries, drivers, the tail of a stage).")]
        if "before_first_job" in r:
            head, tail = r["before_first_job"], r["after_last_unit"]
            lines += ["", f"Of the makespan, {head['h']} h ({head['wall_s']} s wall) passed before the first job "
                      f"started (dvc repro, the prepare stage, the train stage planning and submitting) and "
                      f"{tail['h']} h ({tail['wall_s']} s wall) after the last unit ended (the stages collecting "
                      "results, the tables): wall seconds of this machine, each "
                      f"{1 / (60 * r['minutes_per_gpu_hour']):.3f} simulated hours at this compression."]
    lines += chain.markdown(r.get("critical_chain"))
    lines += cluster_faults.markdown(r.get("cluster_faults", []))
    if r.get("profile") == "shared":
        lines += ["", "## Shared cluster", "",
                  f"Two other users kept {r['others_load']:g} × {r['gpus']} GPUs each asked for (fair share, equal "
                  f"shares); they held {json.dumps(r['others_gpu_h'])} GPU-h. The scheduler granted us "
                  f"**{r['granted_gpu_h']} GPU-h** ({r['granted_mean_gpus']} GPUs on average); with those, the bound is "
                  f"{r['granted_bound_h']} h (max(work ÷ mean granted GPUs, critical path)), efficiency "
                  f"**{r['granted_efficiency']}**; chain_priority: {r['chain_priority']}.", "",
                  "| from (h) | our GPUs, mean |", "|---|---|"]
        lines += [f"| {g['from_h']:g} | {g['mean_gpus']} |" for g in r["granted_over_time"]]
    lines += ["", "## dvc repro runs", ""]
    lines += [f"- run {d['n']}: exit {d['exit_status']} after {d['wall_s']} s wall" + (
        "; stopped by the full store, whose space the rehearsal then freed, as a user would" if d.get("store_freed")
        else "") for d in r["dvc_runs"]]
    if r["driver_kill"]:
        lines.append(f"- injected: SIGKILL of the train stage driver during run {r['driver_kill']['dvc_run']} at "
                     f"{r['driver_kill']['train_units_done']} training units done; the next run re-attached")
    if r["breaks"]:
        lines += ["", "## Where it broke", ""]
        for b in r["breaks"]:
            lines.append(f"- dvc repro run {b['dvc_run']} exited **{b['exit_status']}** in stage "
                         f"`{b['stage']}` after {b['after_wall_s']} s wall:")
            lines += [f"      {e[:400]}" for e in b["errors"][-6:]]
    for refused in r["sbatch_refused"][:3]:
        lines.append(f"- sbatch call {refused['call']} refused: `{refused['message']}`")
    lines += ["", "![GPUs busy over simulated time](rehearsal_gpus.png)", ""]
    return "\n".join(lines)


def write_report(facts: dict, out: Path) -> dict:
    from pipeline.rehearsal.plot import plot_gpus

    out.mkdir(parents=True, exist_ok=True)
    times, series = facts.pop("_series")
    t0 = facts.pop("_t0")
    plot_gpus(out / "rehearsal_gpus.png", [(t - t0) / 60 / facts["minutes_per_gpu_hour"] for t in times], series,
              facts["gpus"], facts["label"])
    write_json(out / "rehearsal.json", facts)
    write_text(out / "rehearsal.md", markdown(facts))
    return facts
