"""Dress rehearsal of a campaign: every unit replaced by a timed stand-in, run through the real DVC → jobs →
submitit → SLURM path on a throwaway copy of the repository (see `python -m pipeline.rehearsal --help`).

Job side: `standin` (must not import torch). Driver side: `swap` (the stand-in a `pipeline.plan.Planner` applies),
`faults`, `cifar`, `run` (the command), `report`, `plot`.
"""
