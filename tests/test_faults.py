"""Fault tolerance: kill -9 at random points and inside checkpoint writes, then rerun; the result equals an
uninterrupted run (CPU, same seed). Also through Snakemake, with its incomplete-output handling."""

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from workflow_runs import assert_results_match_training, snakemake, snakemake_command, write_config

ROOT = Path(__file__).resolve().parents[1]
ARGS = [
    "train",
    "--model",
    "five",
    "--dataset",
    "digits",
    "--latent-dim",
    "3",
    "--probes",
    "2",
    "--epochs",
    "40",
    "--hidden-width",
    "32",
    "--checkpoint-every",
    "1",
    "--device",
    "cpu",
]


def five(*args):
    return [sys.executable, "-m", "five.cli", *map(str, args)]


def final_weights(run_dir):
    return torch.load(Path(run_dir) / "checkpoint.pt", weights_only=True)["model"]


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


def epochs_done(run_dir):
    try:
        return json.loads((Path(run_dir) / "train.json").read_text())["epochs_completed"]
    except (FileNotFoundError, json.JSONDecodeError, KeyError):
        return 0


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("uninterrupted") / "run"
    subprocess.run(five(*ARGS, "--out", run_dir), check=True, capture_output=True, timeout=600)
    return final_weights(run_dir)


def test_kill_9_at_random_points_then_rerun_equals_uninterrupted(tmp_path, uninterrupted):
    rng = random.Random(20251125)
    run_dir = tmp_path / "run"
    kill_points = sorted(rng.sample(range(2, 38), 5))  # epochs after which a kill lands, plus a random delay
    killed_at = []
    for target in kill_points:
        process = subprocess.Popen(five(*ARGS, "--out", run_dir), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while epochs_done(run_dir) < target and process.poll() is None:
            time.sleep(0.005)
        time.sleep(rng.uniform(0, 0.05))  # somewhere inside the next epoch or checkpoint write
        process.send_signal(signal.SIGKILL)
        process.wait()
        killed_at.append(epochs_done(run_dir))
    assert len(killed_at) == 5 and killed_at[-1] < 40, killed_at
    subprocess.run(five(*ARGS, "--out", run_dir), check=True, capture_output=True, timeout=600)
    assert epochs_done(run_dir) == 40
    assert_same_weights(final_weights(run_dir), uninterrupted)


# Kill the process from inside a checkpoint write: after half the bytes, or after writing but before the
# rename. The checkpoint on disk must stay the previous, complete one.
KILL_INSIDE_WRITE = """
import os, signal, sys
import five.base.files as files
import five.run.checkpoint as checkpoint
mode, kill_at = sys.argv[1], int(sys.argv[2])
calls = {"n": 0}
real_save, real_replace = checkpoint.torch.save, files.os.replace

def save(state, file):
    if "optimizer" not in state:  # best.pt writes (weights only) do not count
        return real_save(state, file)
    calls["n"] += 1
    if mode == "half" and calls["n"] == kill_at:
        import io
        buffer = io.BytesIO()
        real_save(state, buffer)
        file.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
        file.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    real_save(state, file)

def replace(source, target):
    if mode == "before-rename" and str(target).endswith("checkpoint.pt") and calls["n"] == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)
    real_replace(source, target)

checkpoint.torch.save, files.os.replace = save, replace
from five.cli import main
sys.exit(main(sys.argv[3:]))
"""


@pytest.mark.parametrize("mode", ["half", "before-rename"])
def test_a_kill_inside_a_checkpoint_write_never_leaves_a_loadable_half_checkpoint(tmp_path, uninterrupted, mode):
    run_dir = tmp_path / "run"
    # The 3rd save of a fresh run is epoch 3, so epoch 2 stays on disk; the resumed run's 9th save is
    # epoch 2 + 9 = 11, so epoch 10 stays.
    for kill_at, epoch_on_disk in ((3, 2), (9, 10)):
        result = subprocess.run(
            [sys.executable, "-c", KILL_INSIDE_WRITE, mode, str(kill_at), *ARGS, "--out", str(run_dir)],
            capture_output=True,
            timeout=600,
        )
        assert result.returncode == -signal.SIGKILL
        assert list(run_dir.glob(".checkpoint.pt.*.tmp")), "the interrupted write left its temp file"
        state = torch.load(run_dir / "checkpoint.pt", weights_only=True)  # the previous, complete checkpoint
        assert state["epoch"] == epoch_on_disk
    resumed = subprocess.run(five(*ARGS, "--out", run_dir), capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert "left by a job killed while writing" in resumed.stdout
    assert not list(run_dir.glob(".checkpoint.pt.*.tmp"))
    assert_same_weights(final_weights(run_dir), uninterrupted)


def sweep_config(epochs: int) -> dict:
    """The workflow config of the run ARGS trains (one seed of five, K = 2, on digits)."""
    digits = {"latent_dims": [3], "epochs": epochs, "hidden_width": 32, "checkpoint_every": 1, "importance_samples": 4}
    return {"experiment": "faults", "seeds": [0], "models": {"five": {"probes": [2]}}, "datasets": {"digits": digits}}


def test_snakemake_rerun_after_kill_9_resumes_and_equals_uninterrupted(tmp_path, uninterrupted):
    config = sweep_config(epochs=40)
    command = snakemake_command(tmp_path, write_config(tmp_path, config), "--cores", "2")
    run_dir = tmp_path / "results" / "faults" / "digits" / "five" / "d3" / "k2" / "s0"
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    while epochs_done(run_dir) < 15 and process.poll() is None:
        time.sleep(0.01)
    os.killpg(process.pid, signal.SIGKILL)  # Snakemake and its job, at once
    process.wait()
    assert 15 <= epochs_done(run_dir) < 40
    # what a user does after a kill or power loss: unlock, then rerun; the half-done job left no stamps, so it is
    # rerun and resumes its run (its train.json, which five writes, is never taken for a finished run)
    assert snakemake(command + ["--unlock"], timeout=600).returncode == 0
    finished = snakemake(command, timeout=600)
    assert finished.returncode == 0, finished.stderr[-3000:]
    log = (tmp_path / "logs" / "faults" / "train" / "digits" / "five" / "d3" / "k2" / "seeds.log").read_text()
    assert "resuming" in log
    assert_same_weights(final_weights(run_dir), uninterrupted)
    assert json.loads((run_dir / "eval.json").read_text())["status"] == "complete"
    shutil.rmtree(tmp_path / "results" / "mlflow-artifacts", ignore_errors=True)


def test_a_train_job_killed_after_an_edit_is_rerun_until_the_edited_run_is_trained(tmp_path):
    """A train job that fails (here kill -9 of the job alone, as the OOM killer or a node failure does) after a
    config edit: the next invocation trains the edited run to its end and evaluates it, never tabling the
    half-trained model under the old run's record."""
    config = sweep_config(epochs=2)
    command = snakemake_command(tmp_path, write_config(tmp_path, config), "--cores", "2")
    assert snakemake(command, timeout=600).returncode == 0
    config["datasets"]["digits"]["epochs"] = 40
    write_config(tmp_path, config)
    run_dir = tmp_path / "results" / "faults" / "digits" / "five" / "d3" / "k2" / "s0"
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    while epochs_done(run_dir) < 6 and process.poll() is None:
        time.sleep(0.01)
    # the job's shell and its Python at once, as the OOM killer or a node failure ends a job
    subprocess.run(["pkill", "-KILL", "-g", str(process.pid), "-f", "five.cli train"], check=True)
    assert process.wait(timeout=600) != 0
    finished = snakemake(command, timeout=600)
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert json.loads((run_dir / "train.json").read_text())["epochs_completed"] == 40
    assert_results_match_training(tmp_path, "faults")
    shutil.rmtree(tmp_path / "results" / "mlflow-artifacts", ignore_errors=True)
