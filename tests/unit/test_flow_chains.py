"""The train stage's chain estimates (pipeline.train.Flow): what waits on each run once it is done, which the driver
ranks by (longest chain first, jobs.driver.chain_nice). Embedded default params, no job runs."""

from __future__ import annotations

import pytest

from jobs import RunStore
from pipeline.params import load_params
from pipeline.suites import independent_runs
from pipeline.train import Flow, longest_job_s, run_estimate_s, unit_for


def test_each_run_carries_what_waits_on_it(tmp_path):
    params = load_params("params.yaml")
    specs = independent_runs(params)
    units = [unit_for(s, params) for s in specs]
    flow = Flow(params, RunStore(tmp_path / "runs"), None, specs, units)
    seen = set()
    for spec, unit in zip(specs, units):
        evals = longest_job_s(flow.evals[unit.key])
        if spec.suite == "adversarial" and params.suites.adversarial[spec.study].best_seeds:
            # the extra seeds start once the sweep is final and are as long as this run, then evaluated
            assert unit.tail_s == pytest.approx(unit.estimate_s + evals) and evals > 0
        elif spec.suite == "natural":
            awd = run_estimate_s(dict(spec.config, wd_method="awd"))
            assert unit.tail_s == pytest.approx(max(evals, awd)) and awd > 0
        else:
            assert unit.tail_s == pytest.approx(evals)
        assert unit.chain_s == pytest.approx(unit.estimate_s + unit.tail_s)
        seen.add(spec.suite)
    assert {"adversarial", "natural"} <= seen
    # the phase-2 runs a finished sweep hands on carry their own evaluations as their tail
    sweep = next((s, u) for s, u in zip(specs, units) if s.suite == "adversarial")
    extra = flow.phase2_units([sweep[0]])[0]
    assert extra.tail_s == pytest.approx(longest_job_s(flow.evals[extra.key])) and extra.tail_s > 0
