"""Benchmarks, run from the repository root as `python -m bench.<name>` (figures in results/bench.md). A package
that stands alone: it imports the project's packages and its own modules, never tests/, and patches no sys.path.
Job processes import `bench.noop_unit:noop`, the trivial unit function of bench/orchestration.py, from the same
root."""
