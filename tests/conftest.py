import pytest
import torch

# The test files that take longest (seconds of work per file, `pytest --durations=0` on the 2-core machine), longest
# first. `make test` hands whole files to its workers in collection order (`--dist loadfile
# --no-loadscope-reorder`): starting these first keeps one worker from finishing alone on a long file at the end.
LONGEST_FIRST = (
    "test_workflow_edits.py",
    "test_faults.py",
    "test_slurm.py",
    "test_workflow.py",
    "test_config_edits.py",
    "test_experiments.py",
    "test_bad_configs.py",
    "test_mlflow_server.py",
    "test_claims.py",
    "test_sigma.py",
)


def pytest_collection_modifyitems(items):
    """Collect the files of LONGEST_FIRST first, in its order; the others after them, as collected."""
    rank = {name: place for place, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


@pytest.fixture(autouse=True)
def _deterministic_torch():
    torch.manual_seed(0)
    yield
