import os

# Tests share 2 cores with each other and with helper processes: one intra-op thread keeps them predictable.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)
from tests.slurm_util import slurm_cluster  # noqa: F401,E402  (the SLURM fixture, for every test file)


@pytest.fixture(autouse=True)
def _no_site_submit_limit(request, monkeypatch):
    """Fake-scheduler tests run with kind slurm but no cluster: the driver's sacctmgr lookup of the submit limit
    answers None there, as on a site without accounting, and its check of the settings against the cluster is
    skipped. Tests on the local cluster (marked slurm) ask both."""
    if request.node.get_closest_marker("slurm") is None:
        import jobs.driver

        monkeypatch.setattr(jobs.driver, "submit_limit", lambda qos: None)
        # nor do they ask it whether it has what the settings name (jobs/cluster_check.py's start-up check)
        monkeypatch.setattr(jobs.driver, "preflight", lambda cfg, say=None: None)


# The tier of a test is the folder it lives in (tests/unit, integration, e2e, slurm, security): `make test-fast` runs
# tests/unit alone, and `-m` selects tiers across the tree.
TIERS = ("unit", "integration", "e2e", "slurm", "security")
_TESTS = os.path.dirname(os.path.abspath(__file__))


def pytest_collection_modifyitems(config, items):
    for item in items:
        tier = os.path.relpath(str(item.path), _TESTS).split(os.sep)[0]
        if tier in TIERS:
            item.add_marker(tier)
