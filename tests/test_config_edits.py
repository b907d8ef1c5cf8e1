"""A config edit never destroys finished work (issue 11): a run folder whose configuration changed has its
files moved to .superseded/<time>/, byte for byte; stopping rules (patience) never restart a run."""

import hashlib

import numpy as np
import torch

from five.base.config import TrainConfig
from five.run.train import train

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

    # epochs down below the best epoch (3, the last: still improving): not recoverable → moved aside, retrained
    lines.clear()
    train(config(epochs=2), tmp_path, CPU, log=lines.append, restart_if_changed=True)
    moved = [line for line in lines if "moved its files to" in line]
    assert len(moved) == 1 and "epochs: 3 already trained → 2 (the best epoch lies beyond" in moved[0], lines
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


def test_fewer_epochs_reuse_the_best_checkpoint_when_it_lies_within_them(tmp_path):
    """An overfitting run (large step) has its best validation epoch b early; asking for b + 1 epochs is served
    from the history (best.pt of epoch b), without retraining; the longer run is moved aside intact."""
    from five.data.datasets import load_dataset
    from five.run.evaluate import evaluate_run

    digits = load_dataset("digits")  # 64 training images: the validation NLL turns up after ~70 epochs
    path = tmp_path / "few.npz"
    np.savez(
        path,
        train=digits.split("train")[:64].numpy(),
        validation=digits.split("validation").numpy(),
        test=digits.split("test").numpy(),
        discrete_levels=17,
    )
    run_dir = tmp_path / "run"

    def overfitting(epochs):
        return config(dataset=f"npz:{path}", epochs=epochs, lr=3e-3, hidden_width=128, batch_size=16, eval_every=5)

    long_run = train(overfitting(150), run_dir, CPU, log=lambda line: None)
    best = long_run["best_epoch"]
    assert best <= 140, long_run["best_epoch"]
    before = every_checkpoint(run_dir)
    best_digest = digest(run_dir / "best.pt")
    lines = []
    shorter = train(overfitting(best + 5), run_dir, CPU, log=lines.append, restart_if_changed=True)
    assert shorter["truncated_from"] == 150 and shorter["epochs_completed"] == best + 5
    assert shorter["best_epoch"] == best and digest(run_dir / "best.pt") == best_digest
    assert any("no retraining" in line for line in lines), lines
    assert not (run_dir / "checkpoint.pt").exists() and every_checkpoint(run_dir) == before  # nothing lost
    assert evaluate_run(run_dir, CPU, importance_samples=2, log=lambda line: None)["checkpoint_epoch"] == best
    # asked again: nothing to do; asked for more epochs: a new run, the cut one moved aside too
    lines.clear()
    train(overfitting(best + 5), run_dir, CPU, log=lines.append, restart_if_changed=True)
    assert any("nothing to do" in line for line in lines), lines
    train(overfitting(best + 10), run_dir, CPU, log=lambda line: None, restart_if_changed=True)
    assert len(list((run_dir / ".superseded").iterdir())) == 2 and before < every_checkpoint(run_dir)
