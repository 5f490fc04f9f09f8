import os

# Tests share 2 cores with each other and with helper processes: one intra-op thread keeps them predictable.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

torch.set_num_threads(1)
from tests.slurm_util import slurm_cluster  # noqa: F401,E402  (the SLURM fixture, for every test file)
