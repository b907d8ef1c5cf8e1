"""Packed training (five.run.train.train_seeds): the seeds of a sweep point trained as one model end exactly where
each seed ends alone, through the whole loop (validation, best epoch, patience, divergence, checkpoints,
resume, added seeds).

Ground truth: the solo runs (five.run.train.train) of the same seeds, in float64, where the two computations agree
to round-off (1e-9). A loss that averaged over members, a member whose generator or Adam state leaked into
another's, or a stopped member that kept moving with the pack would each break these."""

import copy
import json

import pytest
import torch

import five.run.train
from five.base.config import TrainConfig
from five.base.errors import ConfigError, FiveError
from five.data.datasets import Dataset, load_dataset
from five.model.models import build_model
from five.run.timing import timed_model
from five.run.train import train, train_seeds

CPU = torch.device("cpu")
SEEDS = [0, 1, 2]
EXAMPLES = 300  # of each split: a few batches per epoch, and the tests stay quick


def quiet(_line):
    pass


@pytest.fixture
def float64_data(monkeypatch):
    """float64 throughout, on the first EXAMPLES examples of each split of the real data sets."""

    def small(name, data_dir=None):
        full = load_dataset(name, data_dir)
        splits = {
            split: (values if values.dtype == torch.uint8 else values.double())[:EXAMPLES]
            for split, values in full.splits.items()
        }
        return Dataset(full.name, splits, full.discrete_levels, full.default_architecture, full.default_hidden_width)

    torch.set_default_dtype(torch.float64)
    monkeypatch.setattr(five.run.train, "load_dataset", small)
    yield
    torch.set_default_dtype(torch.float32)


def configs(model, dataset="digits", probes=None, **settings):
    values = (
        dict(
            model=model,
            dataset=dataset,
            latent_dim=3,
            probes=probes,
            epochs=3,
            batch_size=64,
            lr=2e-3,
            hidden_width=32,
            eval_every=1,
        )
        | settings
    )
    return [TrainConfig(**values, seed=seed) for seed in SEEDS]


def folders(root, name, seeds=SEEDS):
    return [root / name / f"s{seed}" for seed in seeds]


def weights(run_dir, name="checkpoint.pt"):
    return torch.load(run_dir / name, weights_only=True)


def assert_same_run(packed_dir, solo_dir, tolerance=1e-9):
    """Same weights, Adam moments, best checkpoint and history (losses, σ, validation) as the solo run."""
    packed, solo = weights(packed_dir), weights(solo_dir)
    assert packed["epoch"] == solo["epoch"]
    for name, value in solo["model"].items():
        torch.testing.assert_close(packed["model"][name], value, rtol=0, atol=tolerance, msg=name)
    for index, entry in solo["optimizer"]["state"].items():
        for key, value in entry.items():
            torch.testing.assert_close(packed["optimizer"]["state"][index][key], value, rtol=0, atol=tolerance)
    assert weights(packed_dir, "best.pt")["epoch"] == weights(solo_dir, "best.pt")["epoch"]
    packed_record = json.loads((packed_dir / "train.json").read_text())
    solo_record = json.loads((solo_dir / "train.json").read_text())
    assert packed_record["status"] == solo_record["status"]
    assert len(packed_record["history"]) == len(solo_record["history"])
    for mine, theirs in zip(packed_record["history"], solo_record["history"]):
        for key in ("loss", "sigma", "val_nll", "val_elbo"):
            if theirs.get(key) is not None:
                assert mine[key] == pytest.approx(theirs[key], rel=tolerance, abs=tolerance), (key, mine["epoch"])


def solo_runs(run_configs, root):
    for config, out in zip(run_configs, folders(root, "solo", [c.seed for c in run_configs])):
        train(config, out, CPU, log=quiet, cuda_graph="off")


CASES = [
    (model, probes, dataset)
    for dataset in ("digits", "manifold")
    for model, probes in (("vae", None), ("fcvae", None), ("fif", 1), ("fif", 2), ("five", 1), ("five", 2))
]


@pytest.mark.parametrize("model, probes, dataset", CASES)
def test_each_packed_seed_ends_as_its_solo_run(float64_data, tmp_path, model, probes, dataset):
    run_configs = configs(model, dataset, probes)
    runs = train_seeds(run_configs, folders(tmp_path, "packed"), CPU, log=quiet, cuda_graph="off")
    solo_runs(run_configs, tmp_path)
    assert [run.result["pack_size"] for run in runs] == [3, 3, 3]
    for packed_dir, solo_dir in zip(folders(tmp_path, "packed"), folders(tmp_path, "solo")):
        assert_same_run(packed_dir, solo_dir)


def test_a_member_stopped_by_patience_stops_changing_while_the_others_go_on(float64_data, tmp_path):
    run_configs = configs("vae", epochs=10, lr=7e-2, patience=1)  # alone: seeds stall after 2, 3 and never
    train_seeds(run_configs, folders(tmp_path, "packed"), CPU, log=quiet, cuda_graph="off")
    solo_runs(run_configs, tmp_path)
    statuses = [json.loads((out / "train.json").read_text())["status"] for out in folders(tmp_path, "solo")]
    epochs = [weights(out)["epoch"] for out in folders(tmp_path, "solo")]
    assert "stalled" in statuses and len(set(epochs)) > 1, (statuses, epochs)  # the case this test is about
    for packed_dir, solo_dir in zip(folders(tmp_path, "packed"), folders(tmp_path, "solo")):
        assert_same_run(packed_dir, solo_dir)
    # a failed packed job's records may be taken away (Snakemake removes the outputs of a failed job that had
    # none before): a rerun writes a stopped seed's record again from its checkpoint, training nothing
    stalled = folders(tmp_path, "packed")[statuses.index("stalled")]
    (stalled / "train.json").unlink()
    lines = []
    train_seeds(run_configs, folders(tmp_path, "packed"), CPU, log=lines.append, cuda_graph="off")
    assert json.loads((stalled / "train.json").read_text())["status"] == "stalled"
    assert not any(line.startswith("training") for line in lines)


def poison_seed_one(run_dir):
    """Member 1's checkpoint with an infinite decoder weight: its next step is non-finite."""
    state = weights(run_dir)
    name = next(name for name in state["model"] if name.startswith("decoder") and name.endswith("weight"))
    state["model"][name].fill_(float("inf"))
    torch.save(state, run_dir / "checkpoint.pt")


def test_a_member_that_diverges_leaves_the_pack_and_the_others_end_as_alone(float64_data, tmp_path):
    short, full = configs("five", probes=1, epochs=1), configs("five", probes=1, epochs=3)
    train_seeds(short, folders(tmp_path, "packed"), CPU, log=quiet, cuda_graph="off")
    poison_seed_one(folders(tmp_path, "packed")[1])
    runs = train_seeds(full, folders(tmp_path, "packed"), CPU, log=quiet, cuda_graph="off")
    assert runs[1].failure is not None and (runs[1].failure.epoch, runs[1].failure.step) == (2, 1)
    record = json.loads((folders(tmp_path, "packed")[1] / "train.json").read_text())
    assert record["status"] == "diverged" and "epoch 2, step 1" in record["error"]
    assert weights(folders(tmp_path, "packed")[1])["epoch"] == 1  # its last good checkpoint is kept
    solo_runs(full, tmp_path)
    for index in (0, 2):
        assert runs[index].failure is None
        assert_same_run(folders(tmp_path, "packed")[index], folders(tmp_path, "solo")[index])


def test_a_member_whose_posterior_validation_cannot_factor_leaves_the_pack_alone(float64_data, tmp_path, monkeypatch):
    """Seed 1's validation at epoch 2 meets a flat encoder (J_f = 0: s·J_f J_fᵀ has no Cholesky factor): it is
    recorded as diverged there, and seeds 0 and 2 end as their solo runs."""
    real_validate, calls = five.run.train.validate, {"n": 0}

    def seed_one_flat_at_epoch_two(model, x):
        calls["n"] += 1
        if calls["n"] == len(SEEDS) + 2:  # members validate in seed order, epoch after epoch
            model = copy.deepcopy(model)
            model.head.weight.data.zero_()
        return real_validate(model, x)

    full = configs("five", probes=1, epochs=3)
    monkeypatch.setattr(five.run.train, "validate", seed_one_flat_at_epoch_two)
    runs = train_seeds(full, folders(tmp_path, "packed"), CPU, log=quiet, cuda_graph="off")
    monkeypatch.setattr(five.run.train, "validate", real_validate)
    record = json.loads((folders(tmp_path, "packed")[1] / "train.json").read_text())
    assert record["status"] == "diverged" and "no validation NLL at epoch 2" in record["error"], record["error"]
    solo_runs(full, tmp_path)
    for index in (0, 2):
        assert runs[index].failure is None
        assert_same_run(folders(tmp_path, "packed")[index], folders(tmp_path, "solo")[index])


@pytest.mark.parametrize("eval_every", [1, 3], ids=["validated", "checkpoint without validation"])
def test_a_killed_pack_resumes_to_the_weights_of_an_uninterrupted_one(tmp_path, monkeypatch, eval_every):
    """float32: a resumed pack repeats the uninterrupted pack's computation, so bitwise; also where the epoch of
    the checkpoint it resumes from validated nothing (the members' weights are copied out for the checkpoint)."""
    run_configs = configs("fif", probes=2, epochs=4, checkpoint_every=1, eval_every=eval_every)
    train_seeds(run_configs, folders(tmp_path, "whole"), CPU, log=quiet, cuda_graph="off")
    saved = five.run.train.save_checkpoint
    calls = {"n": 0}

    def killed_after_epoch_two(path, state):
        saved(path, state)
        calls["n"] += path.name == "checkpoint.pt"
        if calls["n"] == 2 * len(SEEDS):
            raise KeyboardInterrupt  # as a kill: nothing after the second epoch's checkpoints runs

    monkeypatch.setattr(five.run.train, "save_checkpoint", killed_after_epoch_two)
    with pytest.raises(KeyboardInterrupt):
        train_seeds(run_configs, folders(tmp_path, "killed"), CPU, log=quiet, cuda_graph="off")
    monkeypatch.setattr(five.run.train, "save_checkpoint", saved)
    assert {weights(out)["epoch"] for out in folders(tmp_path, "killed")} == {2}
    train_seeds(run_configs, folders(tmp_path, "killed"), CPU, log=quiet, cuda_graph="off")
    for whole, resumed in zip(folders(tmp_path, "whole"), folders(tmp_path, "killed")):
        for name, value in weights(whole)["model"].items():
            assert torch.equal(weights(resumed)["model"][name], value), name


def test_an_added_seed_trains_alone_and_finished_seeds_cost_nothing(float64_data, tmp_path):
    """Seeds 0 and 1 trained for 2 epochs; then seeds 0–2 for 3: the new seed 2 trains alone until it catches up,
    then all three as one pack; then, with nothing left, a rerun trains nothing and rewrites nothing."""
    first = [config for config in configs("five", probes=2, epochs=2) if config.seed < 2]
    train_seeds(first, folders(tmp_path, "packed", [0, 1]), CPU, log=quiet, cuda_graph="off")
    lines = []
    runs = train_seeds(configs("five", probes=2), folders(tmp_path, "packed"), CPU, log=lines.append, cuda_graph="off")
    assert [[entry["pack_size"] for entry in run.result["history"]] for run in runs] == [
        [2, 2, 3],
        [2, 2, 3],
        [1, 1, 3],
    ]
    assert [run.result["pack_size"] for run in runs] == [3, 3, 3]  # the largest pack each trained in
    assert any("resuming" in line and "s0" in line for line in lines)
    solo_runs(configs("five", probes=2), tmp_path)
    for packed_dir, solo_dir in zip(folders(tmp_path, "packed"), folders(tmp_path, "solo")):
        assert_same_run(packed_dir, solo_dir)
    lines.clear()
    files = [out / name for out in folders(tmp_path, "packed") for name in ("checkpoint.pt", "train.json")]
    before = [file.read_bytes() for file in files]
    train_seeds(configs("five", probes=2), folders(tmp_path, "packed"), CPU, log=lines.append, cuda_graph="off")
    assert sum("nothing to do" in line for line in lines) == 3 and not any("training" in line for line in lines)
    assert [file.read_bytes() for file in files] == before  # their records keep the job that trained them


def test_a_compiled_seed_that_caught_up_alone_leads_a_pack_that_trains_every_member(
    float64_data, tmp_path, monkeypatch
):
    """An added seed 0 catches up alone with its objective compiled, then leads the pack (the pack is a copy of
    its model): the pack must compile its own objective, not keep seed 0's, which computed the loss of seed 0's
    solo weights and left the packed ones without a gradient. torch.compile stands in as a plain wrapper (the
    same function: inductor's compile would take a minute)."""
    monkeypatch.setattr(torch, "compile", lambda function: lambda *args, **kwargs: function(*args, **kwargs))
    later = [config for config in configs("vae") if config.seed > 0]
    later = [TrainConfig(**(config.to_dict() | {"epochs": 2})) for config in later]
    train_seeds(later, folders(tmp_path, "packed", [1, 2]), CPU, log=quiet, compile_objective=True)
    runs = train_seeds(configs("vae"), folders(tmp_path, "packed"), CPU, log=quiet, compile_objective=True)
    assert [entry["pack_size"] for entry in runs[0].result["history"]] == [1, 1, 3]
    solo_runs(configs("vae"), tmp_path)
    for packed_dir, solo_dir in zip(folders(tmp_path, "packed"), folders(tmp_path, "solo")):
        assert_same_run(packed_dir, solo_dir)


def test_a_model_compiles_its_objective_once(monkeypatch):
    """A run that trains alone in several rounds asks for its objective compiled each round: a second torch.compile
    would wrap the compiled one again (and compile anew)."""
    calls = []
    monkeypatch.setattr(torch, "compile", lambda function: calls.append(function) or function)
    model = build_model(configs("vae")[0], load_dataset("digits"))
    model.compile_objective()
    model.compile_objective()
    assert len(calls) == 1 and model.compiled


def test_packed_float32_epoch_losses_agree_with_solo_within_round_off(tmp_path):
    run_configs = configs("five", probes=1, epochs=2)
    train_seeds(run_configs, folders(tmp_path, "packed"), CPU, log=quiet, cuda_graph="off")
    solo_runs(run_configs, tmp_path)
    for packed_dir, solo_dir in zip(folders(tmp_path, "packed"), folders(tmp_path, "solo")):
        packed = json.loads((packed_dir / "train.json").read_text())["history"]
        solo = json.loads((solo_dir / "train.json").read_text())["history"]
        assert [entry["loss"] for entry in packed] == pytest.approx([entry["loss"] for entry in solo], rel=1e-5)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda cs: cs[:2] + [TrainConfig(**(cs[2].to_dict() | {"lr": 1e-3}))], "one configuration"),
        (lambda cs: cs[:2] + [cs[0]], "each seed once"),
    ],
)
def test_runs_of_different_configurations_or_repeated_seeds_are_refused(tmp_path, change, message):
    with pytest.raises(ConfigError, match=message):
        train_seeds(change(configs("vae")), folders(tmp_path, "packed"), CPU, log=quiet)


@pytest.mark.parametrize("second, message", [("s0", "a path is named twice in --out"), ("s0/s1", "lies inside")])
def test_each_seed_trains_in_a_run_folder_of_its_own(tmp_path, second, message):
    """Not one folder twice, and not one inside another (a run folder holding another run's folder)."""
    with pytest.raises(FiveError, match=message):
        train_seeds(configs("vae")[:2], [tmp_path / "s0", tmp_path / second], CPU, log=quiet)
    assert list(tmp_path.iterdir()) == []


def test_the_memory_check_counts_every_seed_of_the_pack(tmp_path, monkeypatch):
    """A device that holds one member's parameters (with gradients and Adam's state) twice over, not three
    times: a pack of two trains, a pack of three is refused in one line before anything is trained."""
    import five.model.models as models

    run_configs = configs("vae", epochs=1)
    with torch.device("meta"):
        count = sum(p.numel() for p in models.build_model(run_configs[0], load_dataset("digits")).parameters())
    monkeypatch.setattr(models, "device_memory_bytes", lambda device: models.TRAINING_COPIES * 4 * count * 2)
    train_seeds(run_configs[:2], folders(tmp_path, "two", SEEDS[:2]), CPU, log=quiet)
    with pytest.raises(ConfigError, match=r"training \(a pack of 3 seeds\) needs"):
        train_seeds(run_configs, folders(tmp_path, "three"), CPU, log=quiet)
    assert not (tmp_path / "three" / "s0" / "train.json").exists()
    with pytest.raises(ConfigError, match=r"training \(a pack of 3 seeds\) needs"):  # a timed pack, the same
        timed_model(run_configs[0], load_dataset("digits"), CPU, 3, None, None, False)
