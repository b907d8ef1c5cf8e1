"""A config edit never destroys finished work (issue 11): a run folder whose configuration changed has its
files moved to .superseded/<time>/, byte for byte; stopping rules (patience) never restart a run."""

import hashlib

import torch

from five.config import TrainConfig
from five.train import train

CPU = torch.device("cpu")


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def every_checkpoint(run_dir):
    """Digests of every checkpoint under the run folder, superseded ones included."""
    return {digest(path) for path in run_dir.rglob("*.pt")}


def config(**changes):
    values = dict(model="vae", dataset="digits", latent_dim=2, epochs=3, hidden_width=16, eval_every=1)
    return TrainConfig(**(values | changes))


def test_each_kind_of_edit_keeps_every_previous_checkpoint_recoverable(tmp_path):
    lines = []
    train(config(), tmp_path, CPU, log=lines.append)
    first = every_checkpoint(tmp_path)
    assert len(first) == 2  # checkpoint.pt and best.pt

    # patience on: a stopping rule, the weights do not depend on it → nothing restarts, nothing moves
    lines.clear()
    train(config(patience=2), tmp_path, CPU, log=lines.append, restart_if_changed=True)
    assert every_checkpoint(tmp_path) == first and not (tmp_path / ".superseded").exists()
    assert any("already holds all 3 epochs" in line for line in lines), lines

    # epochs down: the shorter run cannot be cut out of the last/best checkpoints → moved aside, retrained
    lines.clear()
    train(config(epochs=2), tmp_path, CPU, log=lines.append, restart_if_changed=True)
    moved = [line for line in lines if "moved its files to" in line]
    assert len(moved) == 1 and "epochs: 3 already trained → 2" in moved[0], lines
    superseded = list((tmp_path / ".superseded").iterdir())
    assert len(superseded) == 1 and str(superseded[0]) in moved[0]
    assert {digest(superseded[0] / name) for name in ("checkpoint.pt", "best.pt")} == first
    assert (superseded[0] / "train.json").exists()
    second = every_checkpoint(tmp_path)
    assert first < second  # the new run's checkpoints beside the old ones

    # lr changed: another run → moved aside again; both earlier runs stay recoverable
    lines.clear()
    train(config(epochs=2, lr=1e-3), tmp_path, CPU, log=lines.append, restart_if_changed=True)
    assert any("lr: 0.0005 → 0.001" in line for line in lines), lines
    assert len(list((tmp_path / ".superseded").iterdir())) == 2
    assert second < every_checkpoint(tmp_path)


def test_a_stalled_run_continues_when_patience_is_lifted(tmp_path):
    """patience stops a run; removing it (a stopping rule again) continues the same run instead of restarting."""
    lines = []
    result = train(config(epochs=40, patience=1, lr=0.05), tmp_path, CPU, log=lines.append)
    assert result["status"] == "stalled", [line for line in lines if "val NLL" in line][-3:]
    stopped_at = result["epochs_completed"]
    lines.clear()
    result = train(config(epochs=stopped_at + 2, lr=0.05), tmp_path, CPU, log=lines.append, restart_if_changed=True)
    assert any(f"resuming {tmp_path} after epoch {stopped_at}" in line for line in lines), lines
    assert result["epochs_completed"] == stopped_at + 2 and not (tmp_path / ".superseded").exists()
