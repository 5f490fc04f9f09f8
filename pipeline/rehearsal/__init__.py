"""Dress rehearsal of a campaign: every unit replaced by a timed stand-in, run through the real DVC → jobs →
submitit → SLURM path on a throwaway copy of the repository (see `python -m pipeline.rehearsal --help`).

Job side: `standin` (must not import torch). Driver side: `swap` (the hook that `pipeline.common.make_unit` calls),
`faults`, `cifar`, `run` (the command), `report`, `plot`.
"""
