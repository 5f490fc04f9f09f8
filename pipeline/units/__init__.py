"""Job-side unit functions: what one training run, AutoAttack shard or pruning evaluation computes.

Each module here is what a unit's cache key hashes (with its transitive imports), so the stage drivers
(`pipeline/<stage>.py`) can change without invalidating any computed run.
"""
