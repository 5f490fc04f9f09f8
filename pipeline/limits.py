"""Size caps of a params file beyond those of any settings file (jobs/bounded_yaml.py: bytes, values, depth, list
lengths): grid points, seeds and the runs its studies expand to, each checked before anything of that size is built.

A 40-byte `{geomspace: [1e-5, 1, 1000000000000]}` asks for 10^12 floats, and two 1,000-point grids of one study
multiply into 10^6 runs: the caps bound what the text can ask for, not just the text. Chosen generous for real use
(configs/paper.yaml: grids of at most 17 values, 181 in all, 5 seeds a list, 534 runs, 645 by `runs_bound`).
"""

from __future__ import annotations

import bisect
import functools
import itertools
import typing as tp

from jobs.checks import brief

MAX_GRID_POINTS = 1_000  # values of one grid (a list, or a generator's num): a sweep of 1,000 runs
MAX_GRID_POINTS_TOTAL = 10_000  # values of every grid of one file together
MAX_SEEDS = 1_000  # entries of one seeds or best_seeds list
MAX_RUNS = 20_000  # training runs the studies of one file expand to (counted from above, see runs_bound)
GRID_BUDGET = "grid_points"  # the validation context's key: [points left for the grids still to expand]


def show(value: tp.Any) -> str:
    """A value as it is written in YAML (null, true, 0.1, 'x'), cut to 80 characters before it is built."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return brief(value, 80)


def duplicates(values: tp.Iterable[tp.Hashable]) -> list[tuple[int, int]]:
    """(index, index of its first occurrence) of every repeated value, in one pass."""
    first: dict[tp.Hashable, int] = {}
    out = []
    for i, v in enumerate(values):
        j = first.setdefault(v, i)
        if j != i:
            out.append((i, j))
    return out


def listing(values: tp.Iterable[float], total: int, most: int = 10) -> str:
    """`1e-05, 0.0001, ...` of the first `most` of `total` values (then `, ... (N in all)`), or "none"."""
    shown = ", ".join(f"{v:g}" for v in itertools.islice(values, most)) or "none"
    return f"{shown}, ... ({total} in all)" if total > most else shown


@functools.cache
def _ascending(values: tuple[float, ...]) -> tuple[list[float], list[int]]:
    order = sorted(range(len(values)), key=values.__getitem__)  # stable: equal values keep their file order
    return [values[k] for k in order], order


def nearest_value(values: tuple[float, ...], value: float) -> float:
    """`min(values, key=lambda v: abs(v - value))` (on a tie, the first in `values`) by bisection: a variant row's
    value is looked up in every adversarial sweep, which made that check runs x swept values."""
    ascending, order = _ascending(values)
    k = bisect.bisect_left(ascending, value)
    below = bisect.bisect_left(ascending, ascending[k - 1]) if k else None  # the first of equal values
    near = [c for c in (below, k) if c is not None and c < len(ascending)]
    return min((abs(ascending[c] - value), order[c], ascending[c]) for c in near)[2]


def grid_budget() -> dict[str, list[int]]:
    """The validation context's entry that makes grids share MAX_GRID_POINTS_TOTAL (one per validated file)."""
    return {GRID_BUDGET: [MAX_GRID_POINTS_TOTAL]}


def grid_points_problem(what: str, n: int, context: tp.Mapping[str, tp.Any] | None) -> str | None:
    """What is wrong with a grid of `n` values (before any is computed), or None; takes them from the file's budget
    when the validation context carries one."""
    if n > MAX_GRID_POINTS:
        return f"{what} of {n} values; a grid has at most {MAX_GRID_POINTS}"
    budget = (context or {}).get(GRID_BUDGET)
    if budget is not None:
        if n > budget[0]:
            return (f"{what} of {n} values goes past {MAX_GRID_POINTS_TOTAL} grid values in all in one file "
                    f"({budget[0]} left)")
        budget[0] -= n
    return None


def runs_bound(suite: str, study: tp.Any) -> int:
    """At least as many training runs as pipeline/suites.py makes of a validated study, from its list lengths."""
    n = sum(len(v) for v in (getattr(study, "methods", None) or {}).values()) or 1
    for field in ("lrs", "rates", "seeds"):
        n *= len(getattr(study, field, None) or ()) or 1
    n *= 1 + len(getattr(study, "best_seeds", None) or ())
    n += sum(len(run.candidates()) for run in getattr(study, "runs", None) or ())
    return 2 * n if suite == "natural" else n  # a natural study's AWD run per fixed-λ seed


def runs_problems(studies: tp.Iterable[tuple[str, int, tp.Any]]) -> list[tuple[str, str]]:
    """[("suites", why)] when the (suite, index, study) triples expand to more than MAX_RUNS runs."""
    counts = [(runs_bound(suite, study), f"suites.{suite}[{i}]") for suite, i, study in studies]
    total = sum(n for n, _ in counts)
    if total <= MAX_RUNS:
        return []
    n, where = max(counts)
    return [("suites", f"the studies expand to {total} training runs or more; at most {MAX_RUNS} allowed in one "
                       f"file (the largest: {where}, {n})")]
