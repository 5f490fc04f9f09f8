"""pipeline/limits.py through pipeline.params: what a params file may ask for (grid values, seeds, runs) is capped
with an error naming the file, the key and the cap, before anything of that size is built; the shipped configs
stay far inside."""

from __future__ import annotations

import copy
import random
from pathlib import Path

import pytest

from awd.checks import show as awd_show
from jobs.bounded_yaml import LIMITS
from pipeline.limits import (
    MAX_GRID_POINTS,
    MAX_GRID_POINTS_TOTAL,
    MAX_RUNS,
    MAX_SEEDS,
    listing,
    nearest_value,
    runs_bound,
    show,
)
from pipeline.params import ParamsError, load_params, validate
from pipeline.suites import independent_runs

ROOT = Path(__file__).resolve().parents[2]
BASE = {"train": {"model": "tiny", "epochs": 1, "batch_size": 8, "lr": 0.1}}


def _params(**suites) -> dict:
    return {**copy.deepcopy(BASE), "suites": suites}


def _grid(lrs, wds=(5e-4,), name="g") -> dict:
    return {"dataset": "digits", "name": name, "lrs": lrs, "wds": list(wds)}


def _error(raw: dict, source: str = "p.yaml") -> str:
    with pytest.raises(ParamsError) as exc:
        validate(raw, source=source)
    return str(exc.value)


def test_a_generated_grid_is_capped_by_its_num_before_any_value_is_computed():
    at_cap = validate(_params(grid=[_grid({"geomspace": [1e-3, 1.0, MAX_GRID_POINTS]})]))
    assert len(at_cap.suites.grid[0].lrs) == MAX_GRID_POINTS
    for kind, num in (("geomspace", MAX_GRID_POINTS + 1), ("linspace", 10**15)):
        assert _error(_params(grid=[_grid({kind: [1e-3, 1.0, num]})])) == (
            f"p.yaml: suites.grid[0].lrs.{kind}[2]: {kind} of {num} values; a grid has at most {MAX_GRID_POINTS}")


def test_a_listed_grid_is_capped_too():
    values = [round(0.001 * (i + 1), 6) for i in range(MAX_GRID_POINTS + 1)]
    assert _error(_params(grid=[_grid(values)])) == (
        f"p.yaml: suites.grid[0].lrs: a list of {MAX_GRID_POINTS + 1} values; a grid has at most {MAX_GRID_POINTS}")


def test_the_grids_of_one_file_share_one_budget():
    studies = [_grid({"geomspace": [1e-3, 1.0, MAX_GRID_POINTS]}, name=f"g{i}")
               for i in range(MAX_GRID_POINTS_TOTAL // MAX_GRID_POINTS)]  # the wds take one value each
    message = _error(_params(grid=studies))
    assert f"values goes past {MAX_GRID_POINTS_TOTAL} grid values in all in one file" in message
    assert len(validate(_params(grid=studies[:-1])).suites.grid) == len(studies) - 1


def test_seed_lists_are_capped():
    natural = {"dataset": "digits", "wd": 5e-4, "plateau": {"window": 2, "rel_tol": 0.1}}
    assert len(validate(_params(natural=[{**natural, "seeds": list(range(MAX_SEEDS))}])).suites.natural[0].seeds) \
        == MAX_SEEDS
    assert _error(_params(natural=[{**natural, "seeds": list(range(MAX_SEEDS + 1))}])) == (
        f"p.yaml: suites.natural[0].seeds: a list of {MAX_SEEDS + 1} seeds; at most {MAX_SEEDS} allowed")
    adversarial = {"dataset": "digits", "wds": [5e-4], "dogs": [0.02], "best_seeds": list(range(1, MAX_SEEDS + 2))}
    assert "suites.adversarial[0].best_seeds: a list of 1001 seeds" in _error(_params(adversarial=[adversarial]))


def test_the_runs_a_file_expands_to_are_capped_before_they_are_built():
    grid = _grid({"geomspace": [1e-3, 1.0, 1000]}, wds={"geomspace": [1e-5, 1e-1, 1000]})
    grid["wds"] = {"geomspace": [1e-5, 1e-1, 1000]}
    assert _error(_params(grid=[grid])) == (
        f"p.yaml: suites: the studies expand to 1000000 training runs or more; at most {MAX_RUNS} allowed in one "
        "file (the largest: suites.grid[0], 1000000)")


@pytest.mark.parametrize("config", ["params.yaml", "configs/paper.yaml"])
def test_the_runs_bound_is_never_below_what_the_suites_make(config):
    params = load_params(ROOT / config)
    made = len(independent_runs(params)) + sum(len(s.seeds) for s in params.suites.natural)  # + their AWD runs
    made += sum(len(s.methods) * len(s.best_seeds) for s in params.suites.adversarial)  # the best values' seeds
    bound = sum(runs_bound(suite, study) for suite, _, study in params.studies())
    assert made <= bound <= MAX_RUNS // 20


def test_parsed_data_from_a_caller_gets_the_file_caps():
    bomb: list = ["x"] * 10
    for _ in range(9):
        bomb = [bomb] * 10  # 10^10 values in 100 list slots: what a YAML alias bomb parses into
    raw = _params()
    raw["train"]["model_kw"] = {"a": bomb}
    message = _error(raw, source="api")
    assert message.startswith("api: train.model_kw.a[") and f"more than {LIMITS.nodes} values" in message
    assert len(message) < 300


def test_an_error_message_shows_a_cut_value():
    raw = _params(grid=[_grid(["x" * 50_000])])
    line = _error(raw)
    assert line.startswith("p.yaml: suites.grid[0].lrs[0]: must be a number") and len(line) < 300


def test_from_sweep_names_a_few_swept_values_not_all():
    sweep = {"geomspace": [1e-5, 1e-1, 50]}
    raw = _params(adversarial=[{"dataset": "digits", "wds": sweep, "dogs": [0.02]}],
                  variants=[{"dataset": "digits", "runs": [{"name": "r", "method": "fixed", "value": 0.5,
                                                            "from_sweep": True}]}])
    message = _error(raw)
    assert "suites.variants[0].runs[0].value: from_sweep: no adversarial study on digits sweeps a fixed value" \
           in message
    assert message.endswith(", ... (50 in all)") and message.count(", ") == 10


def test_nearest_value_is_min_by_distance_first_on_ties():
    rng = random.Random(0)
    pool = [0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 1.0]
    for _ in range(5000):
        values = tuple(rng.choice(pool) for _ in range(rng.randint(1, 7)))  # repeats too: the tie rule holds
        value = rng.choice([*pool, 0.0, 0.125, 0.175, 2.0])
        assert nearest_value(values, value) == min(values, key=lambda v: abs(v - value)), (values, value)


def test_show_is_the_library_s_show_for_short_values_and_cut_for_long_ones():
    for value in (None, True, False, 0.1, 3, "x", [1, 2], {"a": 1}, "y" * 80, "z" * 10**6):
        assert show(value) == awd_show(value)
    assert len(show(list(range(10**5)))) <= 80
    assert listing([], 0) == "none" and listing([1e-5, 0.1], 2) == "1e-05, 0.1"
