"""A config edit never destroys finished work (issue 11): a run folder whose configuration changed has its
files moved to .superseded/<time>/, byte for byte; an edit of when a run validates or stops (epochs, eval_every,
patience) continues or cuts it where its result is a fresh run's of the edited configuration, else restarts it."""

import hashlib
import json
import os
import stat

import numpy as np
import pytest
import torch

from five.base.config import TrainConfig
from five.base.errors import ConfigError, FiveError, TrainingDiverged
from five.base.files import write_json
from five.run.checkpoint import load_checkpoint
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

    # patience on, and the run never stalled: a run of it would be this one → nothing restarts, nothing moves
    lines.clear()
    train(config(patience=2), tmp_path, CPU, log=lines.append, restart_if_changed=True)
    assert every_checkpoint(tmp_path) == first and not (tmp_path / ".superseded").exists()
    assert any("already holds all 3 epochs" in line for line in lines), lines

    # epochs down below the best epoch (3, the last: still improving): not recoverable → moved aside, retrained
    lines.clear()
    train(config(epochs=2), tmp_path, CPU, log=lines.append, restart_if_changed=True)
    moved = [line for line in lines if "moved its files to" in line]
    assert len(moved) == 1 and "epochs: 3 → 2 (a run of it selects epoch 2, best.pt holds epoch 3)" in moved[0], lines
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


def test_fewer_epochs_reuse_the_best_checkpoint_when_it_lies_within_them(tmp_path, few_digits):
    """An overfitting run (large step) has its best validation epoch b early; asking for b + 5 epochs is served
    from the history (best.pt of epoch b), without retraining; the longer run is moved aside intact."""
    from five.run.evaluate import evaluate_run

    run_dir = tmp_path / "run"

    def overfitting(epochs):
        return overfitting_run(few_digits, epochs=epochs, eval_every=5)

    long_run = train(overfitting(150), run_dir, CPU, log=lambda line: None)
    best = long_run["best_epoch"]
    assert best <= 140, long_run["best_epoch"]
    before = every_checkpoint(run_dir)
    best_digest = digest(run_dir / "best.pt")
    (run_dir / "best.pt").chmod(0o600)  # as versions before 2026-12-07 wrote it
    lines, umask = [], os.umask(0o022)
    try:
        shorter = train(overfitting(best + 5), run_dir, CPU, log=lines.append, restart_if_changed=True)
    finally:
        os.umask(umask)
    assert shorter["truncated_from"] == 150 and shorter["epochs_completed"] == best + 5
    assert shorter["best_epoch"] == best and digest(run_dir / "best.pt") == best_digest
    assert shorter["wall_time_s"] == sum(entry["time_s"] for entry in shorter["history"])  # its epochs' own
    assert stat.S_IMODE((run_dir / "best.pt").stat().st_mode) == 0o644  # the kept copy's mode is a new file's
    assert (
        (shorter["compiled"], shorter["cuda_graph"]) == (long_run["compiled"], long_run["cuda_graph"]) == (False, False)
    )
    assert any("no retraining" in line for line in lines), lines
    assert not (run_dir / "checkpoint.pt").exists() and every_checkpoint(run_dir) == before  # nothing lost
    assert evaluate_run(run_dir, CPU, importance_samples=2, log=lambda line: None)["checkpoint_epoch"] == best
    # asked again: nothing to do; asked for more epochs: a new run, the cut one moved aside too
    lines.clear()
    train(overfitting(best + 5), run_dir, CPU, log=lines.append, restart_if_changed=True)
    assert any("nothing to do" in line for line in lines), lines
    # another configuration without --restart-if-changed is refused, as for any run, and the cut run stays
    kept = (run_dir / "train.json").read_text(), digest(run_dir / "best.pt")
    other = config(dataset=f"npz:{few_digits}", lr=1e-3, hidden_width=128, batch_size=16, epochs=best + 5, eval_every=5)
    with pytest.raises(ConfigError, match="cut from a longer one, of another configuration; use --restart-if-changed"):
        train(other, run_dir, CPU, log=lambda line: None)
    assert ((run_dir / "train.json").read_text(), digest(run_dir / "best.pt")) == kept
    train(overfitting(best + 10), run_dir, CPU, log=lambda line: None, restart_if_changed=True)
    assert len(list((run_dir / ".superseded").iterdir())) == 2 and before < every_checkpoint(run_dir)


def test_a_run_cut_from_one_that_diverged_after_its_checkpoint_records_how_it_ends_not_the_divergence(
    tmp_path, few_digits
):
    """A run that diverged after its last checkpoint is kept as diverged whatever its best.pt holds; edited to end
    before that checkpoint at an epoch best.pt serves, the cut run is complete, and its train.json carries the longer run's facts of how its epochs were
    trained but not its divergence (which the tables would show as this run's error)."""
    run_dir = tmp_path / "run"
    long_run = train(overfitting_run(few_digits, epochs=150, eval_every=5), run_dir, CPU, log=lambda line: None)
    state = torch.load(run_dir / "checkpoint.pt", weights_only=False)
    name = next(name for name in state["model"] if name.startswith("decoder") and name.endswith("weight"))
    state["model"][name].fill_(float("inf"))  # its next step is non-finite
    torch.save(state, run_dir / "checkpoint.pt")
    with pytest.raises(TrainingDiverged, match="epoch 151"):
        train(overfitting_run(few_digits, epochs=160, eval_every=5), run_dir, CPU, log=lambda line: None)
    longer = json.loads((run_dir / "train.json").read_text())
    assert longer["status"] == "diverged" and "epoch 151" in longer["error"]
    # its evaluation reads no weights, so other weights in its best.pt are no reason to train it again
    best_bytes = (run_dir / "best.pt").read_bytes()
    (run_dir / "best.pt").write_bytes((run_dir / "checkpoint.pt").read_bytes())
    lines = []
    with pytest.raises(TrainingDiverged, match="recorded earlier"):
        train(overfitting_run(few_digits, epochs=160, eval_every=5), run_dir, CPU, log=lines.append)
    assert any("nothing to do" in line for line in lines) and not (run_dir / ".superseded").exists(), lines
    (run_dir / "best.pt").write_bytes(best_bytes)
    # as if its epochs were trained on a GPU node, and the cut ran on another machine
    write_json(run_dir / "train.json", longer | {"device": "cuda:0", "hostname": "gpu-node"})
    best = long_run["best_epoch"]
    shorter = train(
        overfitting_run(few_digits, epochs=best + 5, eval_every=5),
        run_dir,
        CPU,
        log=lambda line: None,
        restart_if_changed=True,
        extra={"hostname": "cpu-node", "threads": 1},
    )
    assert (shorter["status"], shorter["truncated_from"], shorter["best_epoch"]) == ("complete", 150, best)
    assert "error" not in shorter and json.loads((run_dir / "train.json").read_text()) == shorter
    assert (shorter["compiled"], shorter["cuda_graph"]) == (longer["compiled"], longer["cuda_graph"])
    assert (shorter["device"], shorter["hostname"], shorter["threads"]) == ("cuda:0", "gpu-node", 1)


# An edit of when a run validates or stops (epochs, eval_every, patience) never changes its weights, but it changes
# which epoch is selected and where the run ends. The ground truth of an edited run is a fresh run of the edited
# configuration: a run continued, cut or restarted after the edit must end exactly as that one does.


@pytest.fixture(scope="module")
def few_digits(tmp_path_factory):
    """64 digits to train on: the validation NLL turns up after ~70 epochs and jitters (early stopping matters)."""
    from five.data.datasets import load_dataset

    digits = load_dataset("digits")
    path = tmp_path_factory.mktemp("data") / "few.npz"
    np.savez(
        path,
        train=digits.split("train")[:64].numpy(),
        validation=digits.split("validation").numpy(),
        test=digits.split("test").numpy(),
        discrete_levels=17,
    )
    return path


def overfitting_run(data, **schedule):
    return config(dataset=f"npz:{data}", lr=3e-3, hidden_width=128, batch_size=16, **schedule)


def outcome(run_dir):
    """What a run's result is made of: how it ended, its validations and the weights of its best epoch."""
    record = json.loads((run_dir / "train.json").read_text())
    best = load_checkpoint(run_dir / "best.pt")
    return {
        "status": record["status"],
        "epochs_completed": record["epochs_completed"],
        "best_epoch": record["best_epoch"],
        "validations": [(entry["epoch"], entry["val_nll"]) for entry in record["history"] if "val_nll" in entry],
        "best.pt epoch": best["epoch"],
        "best.pt weights": {name: tensor.tolist() for name, tensor in best["model"].items()},
    }


def edited_and_fresh(tmp_path, first, edited):
    """Train `first`, then `edited` in the same folder (as the workflow does after an edit), and `edited` afresh
    elsewhere; the two outcomes of `edited`, the first run's record and the edited run's log."""
    run_dir, lines = tmp_path / "edited", []
    before = train(first, run_dir, CPU, log=lambda line: None)
    train(edited, run_dir, CPU, log=lines.append, restart_if_changed=True)
    train(edited, tmp_path / "fresh", CPU, log=lambda line: None)
    return outcome(run_dir), outcome(tmp_path / "fresh"), before, lines


def kept(lines):
    """Whether the edited run kept the trained epochs (continued, cut or nothing to do) rather than restarting."""
    return not any("moved its files to" in line and "starting afresh" in line for line in lines)


def test_an_eval_every_edit_that_keeps_the_best_epoch_on_the_schedule_keeps_the_run(tmp_path, few_digits):
    best = train(overfitting_run(few_digits, epochs=100, eval_every=1), tmp_path / "probe", CPU, log=lambda line: None)
    every = best["best_epoch"]  # validating every b epochs still validates b, the best of all epochs
    edited, fresh, _, lines = edited_and_fresh(
        tmp_path,
        overfitting_run(few_digits, epochs=100, eval_every=1),
        overfitting_run(few_digits, epochs=100, eval_every=every),
    )
    assert edited == fresh
    assert kept(lines) and any("nothing to do" in line for line in lines), lines
    assert [epoch for epoch, _ in edited["validations"]] == sorted({*range(every, 101, every), 100})


def test_an_eval_every_edit_that_leaves_the_best_epoch_off_the_schedule_retrains(tmp_path, few_digits):
    best = train(overfitting_run(few_digits, epochs=100, eval_every=1), tmp_path / "probe", CPU, log=lambda line: None)
    every = best["best_epoch"] + 1  # the old best epoch is no longer validated: a fresh run selects another
    edited, fresh, _, lines = edited_and_fresh(
        tmp_path,
        overfitting_run(few_digits, epochs=100, eval_every=1),
        overfitting_run(few_digits, epochs=100, eval_every=every),
    )
    assert edited == fresh and edited["best_epoch"] != best["best_epoch"]
    assert not kept(lines) and any("a run of it selects epoch" in line for line in lines), lines


@pytest.mark.parametrize(
    "first, edited",
    [
        (dict(epochs=40), dict(epochs=80)),  # default schedule: every 2 epochs → every 4
        (dict(epochs=100), dict(epochs=80)),  # every 5 → every 4: a fresh run validates epochs this one did not
        (dict(epochs=100, eval_every=2), dict(epochs=100, eval_every=1)),  # the odd epochs were never validated
        (dict(epochs=100, eval_every=1), dict(epochs=100, eval_every=1, patience=8)),  # stops earlier
        (dict(epochs=100, eval_every=1, patience=3), dict(epochs=100, eval_every=1, patience=30)),  # goes on
        (dict(epochs=60, eval_every=1), dict(epochs=100, eval_every=2, patience=10)),
    ],
    ids=["epochs grow", "epochs shrink", "validating more often", "patience on", "patience raised", "all three"],
)
def test_a_run_after_a_schedule_edit_ends_as_a_fresh_run_of_the_edited_config(tmp_path, few_digits, first, edited):
    edited_outcome, fresh, before, lines = edited_and_fresh(
        tmp_path, overfitting_run(few_digits, **first), overfitting_run(few_digits, **edited)
    )
    assert edited_outcome == fresh
    # the trained epochs are kept exactly where, over them, the fresh run validated only where the first run
    # did and selected the same epoch (the weights of every epoch are the same in both)
    first_validated = {entry["epoch"] for entry in before["history"] if "val_nll" in entry}
    so_far = [(value, epoch) for epoch, value in fresh["validations"] if epoch <= before["epochs_completed"]]
    reusable = {epoch for _, epoch in so_far} <= first_validated and min(so_far)[1] == before["best_epoch"]
    assert kept(lines) == reusable, lines


class Killed(Exception):
    pass


@pytest.mark.parametrize(
    "edit",
    [{}, {"checkpoint_every": 25}, {"eval_every": 3}],
    ids=["resumed as it was", "resumed with another checkpoint_every", "resumed with another eval_every"],
)
def test_a_run_killed_between_its_best_checkpoint_and_its_checkpoint_resumes_as_a_fresh_run(tmp_path, few_digits, edit):
    """best.pt of an epoch after checkpoint.pt's (checkpoints every 50 epochs): the same schedule trains to it
    again, as does one that only saves checkpoints at other epochs; one that validates elsewhere cannot tell
    whether a run of it would select that epoch, so it retrains."""
    first = overfitting_run(few_digits, epochs=100, eval_every=1, checkpoint_every=50)
    best = train(first, tmp_path / "probe", CPU, log=lambda line: None)["best_epoch"]
    assert 50 < best < 100, best  # the kill below falls between the best epoch's validation and a checkpoint

    def kill_after_best(entry):
        if entry["epoch"] == best + 1:
            raise Killed

    with pytest.raises(Killed):
        train(first, tmp_path / "edited", CPU, log=lambda line: None, on_epoch=kill_after_best)
    assert load_checkpoint(tmp_path / "edited" / "best.pt")["epoch"] == best
    assert load_checkpoint(tmp_path / "edited" / "checkpoint.pt")["epoch"] == 50
    resumed = overfitting_run(few_digits, **(dict(epochs=100, eval_every=1, checkpoint_every=50) | edit))
    lines = []
    train(resumed, tmp_path / "edited", CPU, log=lines.append, restart_if_changed=True)
    train(resumed, tmp_path / "fresh", CPU, log=lambda line: None)
    assert outcome(tmp_path / "edited") == outcome(tmp_path / "fresh")
    assert kept(lines) == ("eval_every" not in edit), lines


def test_a_data_sets_default_network_spelled_out_is_the_same_run(tmp_path):
    """`hidden_width: 256` on digits is its default: the run trained without it is that run (no retraining), and
    so is a record written before the defaults were resolved (architecture and width null)."""
    lines = []
    left_out = train(config(), tmp_path, CPU, log=lambda line: None)
    assert (left_out["config"]["architecture"], left_out["config"]["hidden_width"]) == ("mlp", 16)
    default = dict(model="vae", dataset="digits", latent_dim=2, epochs=3, eval_every=1)
    train(TrainConfig(**default), tmp_path / "default", CPU, log=lambda line: None)
    spelled = TrainConfig(**default, architecture="mlp", hidden_width=256)
    train(spelled, tmp_path / "default", CPU, log=lines.append, restart_if_changed=True)
    assert any("is finished (complete, 3 epochs); nothing to do" in line for line in lines), lines
    assert not (tmp_path / "default" / ".superseded").exists()
    older_record = spelled.to_dict() | {"architecture": None, "hidden_width": None}
    assert spelled.matches(older_record) and not spelled.matches(older_record | {"hidden_width": 128})


def test_runs_evaluated_at_their_last_epoch_are_never_cut(tmp_path, few_digits):
    """`model_selection: last` needs each run's last checkpoint, which a run cut to its best checkpoint lacks:
    fewer epochs then retrain (ending as a fresh run, last checkpoint included), and a run cut before is
    retrained when it is asked for again that way."""
    long = overfitting_run(few_digits, epochs=100, eval_every=1)
    best = train(long, tmp_path / "probe", CPU, log=lambda line: None)["best_epoch"]
    shorter = overfitting_run(few_digits, epochs=best + 1, eval_every=1)
    train(shorter, tmp_path / "fresh", CPU, log=lambda line: None)
    for name, cut_first in (("edited", False), ("cut", True)):
        run_dir = tmp_path / name
        train(long, run_dir, CPU, log=lambda line: None)
        if cut_first:
            assert "truncated_from" in train(shorter, run_dir, CPU, log=lambda line: None, restart_if_changed=True)
        lines = []
        train(shorter, run_dir, CPU, log=lines.append, restart_if_changed=True, needs_last_checkpoint=True)
        assert not kept(lines) or cut_first and any("without the last checkpoint" in line for line in lines), lines
        assert outcome(run_dir) == outcome(tmp_path / "fresh")
        last, fresh_last = (load_checkpoint(folder / "checkpoint.pt") for folder in (run_dir, tmp_path / "fresh"))
        assert last["epoch"] == best + 1 and all(
            torch.equal(last["model"][key], fresh_last["model"][key]) for key in fresh_last["model"]
        )


def test_a_finished_run_whose_best_checkpoint_a_killed_longer_run_replaced_is_trained_again(tmp_path, few_digits):
    """A finished run is continued for more epochs, the job is killed after it saved a new best.pt but before its
    next checkpoint (train.json still records the finished run), and the edit is undone: the finished record
    must not be kept with the longer run's best.pt (its evaluation would read that epoch's weights)."""
    short, longer = (overfitting_run(few_digits, epochs=epochs, eval_every=1) for epochs in (20, 40))
    run_dir = tmp_path / "edited"
    assert train(short, run_dir, CPU, log=lambda line: None)["best_epoch"] == 20  # still improving

    def kill_after_a_new_best(entry):
        if entry["epoch"] > 20 and load_checkpoint(run_dir / "best.pt")["epoch"] == entry["epoch"]:
            raise Killed

    with pytest.raises(Killed):
        train(longer, run_dir, CPU, log=lambda line: None, restart_if_changed=True, on_epoch=kill_after_a_new_best)
    replaced = load_checkpoint(run_dir / "best.pt")["epoch"]
    assert json.loads((run_dir / "train.json").read_text())["status"] == "complete" and replaced > 20
    lines = []
    train(short, run_dir, CPU, log=lines.append, restart_if_changed=True)
    train(short, tmp_path / "fresh", CPU, log=lambda line: None)
    assert outcome(run_dir) == outcome(tmp_path / "fresh")
    assert any(f"its best.pt holds epoch {replaced}, not its epoch 20; not kept" in line for line in lines), lines


def test_a_finished_run_whose_checkpoint_a_killed_longer_run_replaced_is_trained_again(
    tmp_path, few_digits, monkeypatch
):
    """As above, the job killed after it saved the longer run's checkpoint but before its train.json: a run
    evaluated at its last epoch (model_selection: last) must not keep that checkpoint as its last (with
    model_selection: best, it would be cut to its best.pt)."""
    from five.run.train import Run

    short, longer = (
        overfitting_run(few_digits, epochs=epochs, eval_every=1, checkpoint_every=2) for epochs in (20, 40)
    )
    run_dir = tmp_path / "edited"
    train(short, run_dir, CPU, log=lambda line: None, needs_last_checkpoint=True)
    best = (run_dir / "best.pt").read_bytes()
    record = Run.record

    def killed_before_recording(run, status, device, **fields):
        if run.epoch > 20:
            raise Killed
        return record(run, status, device, **fields)

    monkeypatch.setattr(Run, "record", killed_before_recording)
    with pytest.raises(Killed):
        train(longer, run_dir, CPU, log=lambda line: None, restart_if_changed=True, needs_last_checkpoint=True)
    monkeypatch.undo()
    (run_dir / "best.pt").write_bytes(best)  # as where the longer run found no better epoch: only checkpoint.pt differs
    assert load_checkpoint(run_dir / "checkpoint.pt")["epoch"] == 22
    assert json.loads((run_dir / "train.json").read_text())["epochs_completed"] == 20
    lines = []
    train(short, run_dir, CPU, log=lines.append, restart_if_changed=True, needs_last_checkpoint=True)
    train(short, tmp_path / "fresh", CPU, log=lambda line: None, needs_last_checkpoint=True)
    assert outcome(run_dir) == outcome(tmp_path / "fresh")
    last, fresh_last = (load_checkpoint(folder / "checkpoint.pt") for folder in (run_dir, tmp_path / "fresh"))
    assert last["epoch"] == 20 and all(torch.equal(last["model"][k], fresh_last["model"][k]) for k in last["model"])
    assert any("its checkpoint.pt holds epoch 22, not its epoch 20; not kept" in line for line in lines), lines


def test_a_retrained_run_moves_its_evaluation_and_image_grids_aside_too(tmp_path):
    """Nothing of the old configuration stays beside the new one's: its eval.json and the workflow's grids/
    (which a diverged or failed evaluation of the new run would otherwise leave as the new run's images)."""
    train(config(), tmp_path, CPU, log=lambda line: None)
    (tmp_path / "eval.json").write_text('{"old": true}')
    (tmp_path / "grids").mkdir()
    (tmp_path / "grids" / "samples.png").write_bytes(b"the old configuration's samples")
    train(config(lr=1e-3), tmp_path, CPU, log=lambda line: None, restart_if_changed=True)
    [superseded] = list((tmp_path / ".superseded").iterdir())
    assert (superseded / "grids" / "samples.png").read_bytes() == b"the old configuration's samples"
    assert (superseded / "eval.json").is_file()
    assert not (tmp_path / "grids").exists() and not (tmp_path / "eval.json").exists()


@pytest.mark.parametrize("kind", ["file", "link to nothing"])
def test_a_superseded_place_that_is_no_folder_is_one_line_and_moves_nothing(tmp_path, kind):
    train(config(), tmp_path, CPU, log=lambda line: None)
    place = tmp_path / ".superseded"
    place.write_text("x") if kind == "file" else place.symlink_to(tmp_path / "nowhere")
    before = every_checkpoint(tmp_path)
    with pytest.raises(FiveError, match=r"\.superseded is .*, not the folder a superseded run's files go to"):
        train(config(lr=1e-3), tmp_path, CPU, log=lambda line: None, restart_if_changed=True)
    assert every_checkpoint(tmp_path) == before and (tmp_path / "train.json").is_file()


def test_a_checkpoint_of_an_older_version_without_a_setting_that_is_unset_resumes(tmp_path):
    """A checkpoint written before a setting existed lacks its key: where the run leaves it unset (None), that is
    the same configuration, so more epochs continue the run instead of moving it aside."""
    from five.run.checkpoint import save_checkpoint

    train(config(epochs=2), tmp_path, CPU, log=lambda line: None)
    state = load_checkpoint(tmp_path / "checkpoint.pt")
    del state["config"]["surrogate_point"]  # unset for a VAE
    save_checkpoint(tmp_path / "checkpoint.pt", state)
    lines = []
    assert train(config(epochs=3), tmp_path, CPU, log=lines.append, restart_if_changed=True)["epochs_completed"] == 3
    assert any("resuming" in line and "after epoch 2/3" in line for line in lines), lines
    assert not (tmp_path / ".superseded").exists()
