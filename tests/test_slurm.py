"""A real single-node Slurm (tests/cluster/slurm-up): the sweep goes through `--profile profiles/slurm`,
GPU jobs get distinct CUDA_VISIBLE_DEVICES from Slurm, and preempted jobs resume from their checkpoints.

Skipped, with the reason, only where Slurm cannot be installed or started (not root, no apt)."""

import itertools
import json
import os
import subprocess
import time
from pathlib import Path

import pytest
from workflow_runs import snakemake_command, write_config

ROOT = Path(__file__).resolve().parents[1]
CLUSTER = ROOT / "tests" / "cluster"
# Only what a test cluster needs on top of the real profile: its partition and account, squeue for job
# status (without an accounting database sacct fails), and quick status polls.
TEST_OVERRIDES = [
    "--default-resources",
    "slurm_partition=debug",
    "slurm_account=five",
    "runtime=10",
    "mem_mb=1500",
    "cpus_per_task=1",
    "--slurm-status-command",
    "squeue",
    "--seconds-between-status-checks",
    "2",
    "--slurm-init-seconds-before-status-checks",
    "1",
]


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("the test Slurm cluster needs root (slurmd, munge)")
    state = tmp_path_factory.mktemp("slurm-state")
    started = subprocess.run([str(CLUSTER / "slurm-up"), str(state)], capture_output=True, text=True, timeout=900)
    if started.returncode == 3:
        pytest.skip(f"Slurm cannot be installed here: {started.stderr.strip()}")
    assert started.returncode == 0, started.stdout + started.stderr
    yield state
    subprocess.run([str(CLUSTER / "slurm-down"), str(state)], timeout=120)


def run_profile(workdir, config, *extra, background=False):
    command = snakemake_command(
        workdir, write_config(workdir, config), "--profile", ROOT / "profiles" / "slurm", *TEST_OVERRIDES, *extra
    )
    if background:
        return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
    return subprocess.run(command, capture_output=True, text=True, timeout=1200, cwd=ROOT)


def test_the_sweep_runs_as_slurm_jobs_with_distinct_gpus(slurm, tmp_path):
    config = {
        "experiment": "slurm",
        "seeds": [0, 1],
        "models": {"vae": {}, "five": {"probes": [1]}},
        "datasets": {
            "digits": {
                "latent_dims": [2],
                "epochs": 3,
                "hidden_width": 16,
                "importance_samples": 8,
                "checkpoint_every": 1,
            }
        },
    }
    result = run_profile(tmp_path, config)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    # 2 train jobs and 2 evaluate jobs (one per sweep point, its two seeds packed)
    assert output.count("has been submitted with SLURM jobid") == 4
    seeds = [json.loads(path.read_text()) for path in sorted(tmp_path.glob("results/slurm/digits/*/*/*/*/train.json"))]
    assert len(seeds) == 4 and all(record["pack_size"] == 2 for record in seeds)
    records = list({record["slurm_job_id"]: record for record in seeds}.values())  # one per training job
    assert all(record["slurm_job_id"] for record in seeds) and len(records) == 2
    assert {record["cuda_visible_devices"] for record in records} <= {"0", "1"}
    for a, b in itertools.combinations(records, 2):
        overlapped = a["started_at"] < b["updated_at"] and b["started_at"] < a["updated_at"]
        if overlapped:
            assert a["cuda_visible_devices"] != b["cuda_visible_devices"], (a["slurm_job_id"], b["slurm_job_id"])
    assert any(
        a["started_at"] < b["updated_at"] and b["started_at"] < a["updated_at"]
        for a, b in itertools.combinations(records, 2)
    ), "two GPU jobs should have run at once"
    evaluations = [json.loads(path.read_text()) for path in tmp_path.glob("results/slurm/digits/*/*/*/*/eval.json")]
    assert len(evaluations) == 4 and all(evaluation["job"]["slurm_job_id"] for evaluation in evaluations)
    assert "five (K=1, σ fitted)" in (tmp_path / "results" / "slurm" / "tables" / "main.md").read_text()


def release_requeued(job):
    """Slurm holds a requeued job back for two minutes (BeginTime); the test lets it start at once."""
    for _ in range(100):
        state = subprocess.run(["squeue", "-h", "-j", job, "-o", "%T"], capture_output=True, text=True).stdout.strip()
        if state == "PENDING":
            subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], check=True, timeout=60)
            return
        time.sleep(0.1)
    raise AssertionError(f"requeued job {job} never went back to PENDING")


def current_job(run_dir, min_epochs):
    """(Slurm job id, epochs completed) of the job training `run_dir` once it has trained `min_epochs`."""
    try:
        record = json.loads((run_dir / "train.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return (record["slurm_job_id"], record["epochs_completed"]) if record["epochs_completed"] >= min_epochs else None


PREEMPTED_EPOCHS = 300  # long enough that each job is still training when the test interrupts it at epoch 20


def test_preempted_jobs_resume_from_their_checkpoints(slurm, tmp_path):
    """One job is requeued (as preemption with requeue does), one cancelled; both finish from checkpoints."""
    config = {
        "experiment": "preempt",
        "seeds": [0, 1],
        "models": {"vae": {}},
        "pack_seeds": False,  # a job per seed
        "datasets": {
            "digits": {
                "latent_dims": [2],
                "epochs": PREEMPTED_EPOCHS,
                "hidden_width": 8,
                "importance_samples": 4,
                "checkpoint_every": 1,
            }
        },
    }
    process = run_profile(tmp_path, config, background=True)
    runs = {seed: tmp_path / "results" / "preempt" / "digits" / "vae" / "d2" / "k0" / f"s{seed}" for seed in (0, 1)}
    deadline = time.monotonic() + 600
    interrupted = {}
    while len(interrupted) < 2 and time.monotonic() < deadline and process.poll() is None:
        for seed, action in ((0, "requeue"), (1, "cancel")):
            running = current_job(runs[seed], min_epochs=20)
            if seed not in interrupted and running:
                job = running[0]
                command = ["scontrol", "requeue", job] if action == "requeue" else ["scancel", job]
                # read before: Snakemake may remove a cancelled job's train.json at once
                interrupted[seed] = running
                subprocess.run(command, check=True, timeout=60)
                if action == "requeue":
                    release_requeued(job)
        time.sleep(0.1)
    output, _ = process.communicate(timeout=900)
    assert len(interrupted) == 2, output[-4000:]
    assert process.returncode == 0, output[-4000:]
    for seed, (job, epochs_at_interrupt) in interrupted.items():
        record = json.loads((runs[seed] / "train.json").read_text())
        assert record["status"] == "complete" and record["epochs_completed"] == PREEMPTED_EPOCHS
        log = (tmp_path / "logs" / "preempt" / "train" / "digits" / "vae" / "d2" / "k0" / f"s{seed}.log").read_text()
        assert "after epoch" in log and "resuming" in log and epochs_at_interrupt < PREEMPTED_EPOCHS
        if seed == 0:  # a requeued job restarts under its own Slurm job id, or (seen twice in ~30 runs on a loaded
            # 2-core machine) Snakemake's status poll catches the requeue as a failure and its retry, a later job,
            # resumes the run instead; never an earlier job's record
            assert record["slurm_job_id"] == job or int(record["slurm_job_id"]) > int(job)
        else:  # a cancelled job is retried by Snakemake as a new Slurm job
            assert record["slurm_job_id"] != job
