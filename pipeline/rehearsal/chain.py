"""The campaign's critical chain as it ran: from the unit that ended last back through the inputs it waited for
(`inputs`), each link split into what delayed it, so that a rehearsal says where the makespan went beyond the
chain's estimated work. The links and the time after the last one add up to the makespan exactly."""

from __future__ import annotations

PARTS = ("to_submit", "queued", "starting", "running")


def sim_h(wall_s: float, minutes_per_gpu_hour: float) -> float:
    """Wall seconds -> simulated hours (a stand-in sleeps `minutes_per_gpu_hour` wall minutes per GPU-hour)."""
    return wall_s / 60 / minutes_per_gpu_hour


def _tag(label: str) -> tuple[str, dict[str, str]]:
    """("adversarial[0]", {"method": "fixed", "value": "0.01", "seed": "1"}) of a training unit's label
    ("adversarial[0] cifar10 method=fixed,value=0.01,seed=1", pipeline.train.describe)."""
    fields = dict(f.split("=", 1) for f in label.split(" ", 2)[-1].split(",") if "=" in f)
    return label.split(" ", 1)[0], fields


def inputs(units: list[dict]) -> dict[str, list[str]]:
    """Per submitted unit, the keys of the units whose end made it ready: an evaluation waits for its model's
    training; a natural AWD run for its study's fixed-λ runs; an adversarial extra seed for its method's whole sweep;
    any other unit for nothing (the campaign's start). An evaluation without a model key waits for "" (never ends)."""
    groups: dict[tuple, list[str]] = {}
    for u in units:
        if u["kind"] == "train":
            head, fields = _tag(u["label"])
            if head.startswith("natural[") and fields.get("method") == "fixed":
                groups.setdefault(("natural", head), []).append(u["key"])
            elif head.startswith("adversarial[") and "seed" not in fields:
                groups.setdefault(("adversarial", head, fields.get("method")), []).append(u["key"])
    out: dict[str, list[str]] = {}
    for u in units:
        if u["kind"] != "train":
            out[u["key"]] = [u["train_key"] or ""]
            continue
        head, fields = _tag(u["label"])
        if head.startswith("natural[") and fields.get("method") == "awd":
            out[u["key"]] = groups.get(("natural", head), [""])
        elif head.startswith("adversarial[") and "seed" in fields:
            out[u["key"]] = groups.get(("adversarial", head, fields.get("method")), [""])
        else:
            out[u["key"]] = []
    return out


def ended_at(units: list[dict]) -> dict[str, float | None]:
    """When each unit's last finished attempt ended (None: never)."""
    return {u["key"]: max((a["last_t"] for a in u["attempts"] if a["ended"]), default=None) for u in units}


def first_submit(jobs: list[dict]) -> dict[str, float]:
    """Per job, its first submission (a requeued job has a row per attempt)."""
    submit: dict[str, float] = {}
    for j in jobs:
        if j["Submit"] is not None:
            submit[j["JobIDRaw"]] = min(submit.get(j["JobIDRaw"], j["Submit"]), j["Submit"])
    return submit


def critical_chain(units: list[dict], jobs: list[dict], t0: float, t1: float, mpg: float) -> dict:
    """{"links": [...], "after_h": ..., "sums_h": {...}}: per link (unit label, kind, estimate), in simulated hours,
    `to_submit` (its inputs existed, its first job not yet submitted: the driver's poll, planning, sbatch; the first
    link: dvc repro and the stages before), `queued` (submitted, no GPU yet), `starting` (its job held a GPU, the
    unit not yet started: job start-up, units packed before it), `running` (first start to end: beyond the estimate,
    faults, requeues)."""
    submit, needs = first_submit(jobs), inputs(units)
    ended = {k: t for k, t in ended_at(units).items() if t is not None}
    start = {j["JobIDRaw"]: j["Start"] for j in jobs if j["Start"] is not None}
    by_key = {u["key"]: u for u in units}
    done = [u for u in units if u["key"] in ended]
    links: list[dict] = []
    unit = max(done, key=lambda u: ended[u["key"]], default=None)
    while unit is not None:
        prior = [by_key[k] for k in needs.get(unit["key"], []) if k in by_key and k in ended]
        ready = max((ended[p["key"]] for p in prior), default=t0)
        first = min(unit["attempts"], key=lambda a: a["start"])
        job = first.get("slurm_job")
        sub = min(max(submit.get(job, ready), ready), first["start"])
        began = min(max(start.get(job, sub), sub), first["start"])
        end = ended[unit["key"]]
        links.append({"label": unit["label"] or unit["key"][:12], "kind": unit["kind"],
                      "estimate_h": round(unit["plan"].get("sim_seconds", 0.0) / 3600, 2),
                      "ready_h": round(sim_h(ready - t0, mpg), 2),
                      "to_submit": sim_h(sub - ready, mpg), "queued": sim_h(began - sub, mpg),
                      "starting": sim_h(first["start"] - began, mpg), "running": sim_h(end - first["start"], mpg)})
        unit = max(prior, key=lambda p: ended[p["key"]]) if prior else None
    links.reverse()
    last_end = max((ended[u["key"]] for u in done), default=t1)
    sums = {p: round(sum(link[p] for link in links), 2) for p in PARTS}
    for link in links:
        link.update({p: round(link[p], 2) for p in PARTS})
    return {"links": links, "after_h": round(sim_h(t1 - last_end, mpg), 2), "sums_h": sums,
            "estimate_h": round(sum(link["estimate_h"] for link in links), 2)}


def markdown(chain: dict | None) -> list[str]:
    if not chain or not chain["links"]:
        return []
    s = chain["sums_h"]
    lines = ["", "## The critical chain as it ran", "",
             "From the unit that ended last back through the units whose end made it ready (simulated hours): "
             f"{chain['estimate_h']} h of estimated work; {s['to_submit']} h waiting to be submitted, {s['queued']} h "
             f"queued, {s['starting']} h starting, {round(s['running'] - chain['estimate_h'], 2)} h running beyond "
             f"the estimates, and {chain['after_h']} h after the last unit ended.", "",
             "| unit | kind | ready at | waiting to be submitted | queued | starting | running (estimate) |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {x['label']} | {x['kind']} | {x['ready_h']} | {x['to_submit']} | {x['queued']} | {x['starting']} | "
              f"{x['running']} ({x['estimate_h']}) |" for x in chain["links"]]
    return lines
