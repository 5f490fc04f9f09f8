import os

# Tests share 2 cores with each other and with helper processes: one intra-op thread keeps them predictable.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)
from tests.backend_util import use_backend  # noqa: F401,E402  (fake backends: jobs.backends.use, put back after)
from tests.slurm_util import slurm_cluster  # noqa: F401,E402  (the SLURM fixture, for every test file)


@pytest.fixture(autouse=True)
def _no_site_submit_limit(request):
    """Fake-scheduler tests run with kind slurm but no cluster: the slurm backend stands before a site that answers
    no submit limit and no partition time limit (as one without accounting) and checks nothing at start-up
    (jobs/cluster_check.py's preflight). Tests on the local cluster (marked slurm) ask the cluster itself."""
    if request.node.get_closest_marker("slurm") is not None:
        yield
        return
    from jobs import backends
    from jobs.backends.slurm import SlurmBackend, UnaskedSite

    previous = backends.use("slurm", SlurmBackend(site=UnaskedSite()))
    yield
    backends.use("slurm", previous)


# The tier of a test is the folder it lives in (tests/unit, integration, e2e, slurm, security): `make test-fast` runs
# tests/unit alone, and `-m` selects tiers across the tree.
TIERS = ("unit", "integration", "e2e", "slurm", "security")
_TESTS = os.path.dirname(os.path.abspath(__file__))


def pytest_collection_modifyitems(config, items):
    for item in items:
        tier = os.path.relpath(str(item.path), _TESTS).split(os.sep)[0]
        if tier in TIERS:
            item.add_marker(tier)
