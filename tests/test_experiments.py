"""Two configs in one checkout, as a user switches between them (issue 22): each invocation plans all the work
its config needs, whatever ran before and from whichever Python, and one experiment's tables never pass for
another's (results/<experiment>/, stamped with the experiment and the config hash)."""

import subprocess
import sys
import sysconfig
from pathlib import Path

import pandas as pd
import pytest
import yaml
from workflow_runs import planned_jobs, run_snakemake

ROOT = Path(__file__).resolve().parents[1]
ALPHA = {
    "experiment": "alpha",
    "seeds": [0],
    "models": {"vae": {}},
    "datasets": {"digits": {"latent_dims": [2], "epochs": 1, "hidden_width": 8, "importance_samples": 4}},
}
BETA = {
    **ALPHA,
    "experiment": "beta",
    "datasets": {"digits": {**ALPHA["datasets"]["digits"], "epochs": 2}},
}  # same run folder names, other settings


def second_python(tmp_path: Path) -> str:
    """Another Python environment with this one's packages importable (a venv whose .pth adds our site-packages):
    its sys.executable differs, as when a user runs the workflow from another environment."""
    env = tmp_path / "other-env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True)
    purelib = Path(
        subprocess.run(
            [str(env / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    (purelib / "five-under-test.pth").write_text(
        f"import site; site.addsitedir({sysconfig.get_paths()['purelib']!r})\n"
    )
    return str(env / "bin" / "python")


@pytest.fixture(scope="module")
def alpha_done(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("experiments")
    assert planned_jobs(run_snakemake(workdir, ALPHA))["train"] == 1
    return workdir


def table(workdir: Path, experiment: str) -> str:
    return (workdir / "results" / experiment / "tables" / "main.md").read_text()


def test_another_experiment_trains_in_its_first_invocation_and_leaves_the_first_untouched(alpha_done):
    alpha_table = table(alpha_done, "alpha")
    alpha_mtime = (alpha_done / "results" / "alpha" / "tables" / "main.md").stat().st_mtime_ns
    result = run_snakemake(alpha_done, BETA)
    jobs = planned_jobs(result)
    assert jobs["train"] == 1 and jobs["evaluate"] == 1 and jobs["tables"] == 1, jobs
    beta_runs = pd.read_csv(alpha_done / "results" / "beta" / "runs.csv")
    assert list(beta_runs["epochs_completed"]) == [2]
    assert "experiment beta" in table(alpha_done, "beta") and "experiment alpha" in alpha_table
    assert table(alpha_done, "alpha") == alpha_table
    assert (alpha_done / "results" / "alpha" / "tables" / "main.md").stat().st_mtime_ns == alpha_mtime
    assert "experiment beta" in (alpha_done / "results" / "beta" / "claims.md").read_text()
    assert (
        "results/beta/tables/main.md" in result.stdout + result.stderr
    )  # the closing message names this experiment's tables
    # back to the first config: its results are all there, nothing to do
    assert planned_jobs(run_snakemake(alpha_done, ALPHA, "-n")) == {}


def test_an_edit_run_from_another_python_plans_and_trains_exactly_the_new_runs(alpha_done, tmp_path):
    wider = yaml.safe_load(yaml.safe_dump(ALPHA))
    wider["datasets"]["digits"]["latent_dims"] = [2, 3]
    expected = {
        "point_settings": 1,
        "point_training": 1,
        "train": 1,
        "evaluate": 1,
        "aggregate": 1,
        "tables": 1,
        "plots": 1,
        "claims": 1,
        "config_snapshot": 1,
        "all": 1,
    }
    assert planned_jobs(run_snakemake(alpha_done, wider, "-n")) == expected
    other = second_python(tmp_path)
    assert planned_jobs(run_snakemake(alpha_done, wider, "-n", python=other)) == expected
    run_snakemake(alpha_done, wider, python=other)
    runs = pd.read_csv(alpha_done / "results" / "alpha" / "runs.csv")
    assert sorted(runs["latent_dim"]) == [2, 3] and set(runs["status"]) == {"complete"}
    hashes = {line for line in table(alpha_done, "alpha").splitlines() if "config_hash" in line}
    assert hashes and all("experiment alpha" in line for line in hashes)
    assert planned_jobs(run_snakemake(alpha_done, wider, "-n")) == {}  # and this Python agrees that all is done
