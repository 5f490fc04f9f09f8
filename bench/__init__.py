"""Benchmarks (scripts run as `python bench/<name>.py`); a package only so that job processes can import
`bench.noop_unit:noop`, the trivial unit function of bench/orchestration.py."""
