"""A unit function that does no work, for measuring what running a unit costs (bench/orchestration.py).

Imported by name ("bench.noop_unit:noop") in job processes, which run with the repository root as cwd and on
PYTHONPATH; it imports nothing heavy, so a job's cost is the bookkeeping's own.
"""

from __future__ import annotations


def noop(config: dict, workdir, store) -> dict:
    return {"i": config["i"]}
