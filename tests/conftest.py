from pathlib import Path

import pytest
import torch

# The test files that take longest (seconds of test time per file, `pytest --durations=0` on 2026-12-07's 2-core
# machine), longest first. `make test` hands whole files to its workers in collection order (`--dist loadfile
# --no-loadscope-reorder`): starting these first keeps one worker from finishing alone on a long file at the end.
LONGEST_FIRST = (
    "test_workflow_edits.py",  # 261 s
    "test_slurm.py",  # 236 s
    "test_faults.py",  # 214 s
    "test_workflow.py",  # 172 s
    "test_config_edits.py",  # 160 s
    "test_mlflow_server.py",  # 124 s
    "test_sigma.py",  # 91 s
    "test_experiments.py",  # 88 s
    "test_cli.py",  # 60 s
    "test_bad_configs.py",  # 59 s
    "test_claims.py",  # 50 s
    "test_tracking.py",  # 46 s
)


def pytest_collection_modifyitems(items):
    """Collect the files of LONGEST_FIRST first, in its order; the others after them, as collected."""
    missing = [name for name in LONGEST_FIRST if not Path(__file__).with_name(name).is_file()]
    if missing:
        raise pytest.UsageError(f"tests/conftest.py's LONGEST_FIRST names files that are not there: {missing}")
    rank = {name: place for place, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


@pytest.fixture(autouse=True)
def _deterministic_torch():
    torch.manual_seed(0)
    yield
