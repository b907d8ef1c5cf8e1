"""Training on digits: every model learns, resume is exact, a non-finite loss stops the run cleanly."""

import hashlib
import json
import math

import pytest
import torch

from five.base.config import DEFAULT_LOG_SIGMA_LR, MODELS, NO_PROBES, TrainConfig
from five.base.errors import ConfigError, TrainingDiverged
from five.model.models import MODEL_CLASSES
from five.run.evaluate import evaluate_run
from five.run.train import train

CPU = torch.device("cpu")


def small_config(model, **overrides):
    values = dict(model=model, dataset="digits", latent_dim=4, epochs=4, hidden_width=64, batch_size=128)
    return TrainConfig(**(values | overrides))


def quiet(_line):
    pass


@pytest.mark.parametrize("model", MODELS)
def test_each_model_learns_on_digits_and_evaluates_to_finite_numbers(model, tmp_path):
    result = train(small_config(model, epochs=6), tmp_path, CPU, log=quiet)
    losses = [entry["loss"] for entry in result["history"]]
    assert len(losses) == 6
    assert losses[-1] < losses[0] - 1.0, losses
    saved = json.loads((tmp_path / "train.json").read_text())
    assert saved["status"] == "complete" and saved["epochs_completed"] == 6
    metrics = evaluate_run(tmp_path, CPU, importance_samples=16, log=quiet)
    for key in ("nll_nats", "bits_per_dim", "elbo_nats", "ess_mean", "recon_mse"):
        assert torch.isfinite(torch.tensor(metrics[key])), (key, metrics[key])
    assert metrics["n_examples"] == 360 and metrics["importance_samples"] == 16
    # six epochs leave the proposal far from the posterior: the weights are uneven and IWAE is clearly tighter
    assert metrics["ess_mean"] < 15.0
    assert metrics["nll_nats"] < -metrics["elbo_nats"] - 0.05
    assert (metrics["kl_per_dimension"] is not None) == (model == "vae")


def test_evaluate_reports_bits_per_dim_from_its_nats(tmp_path):
    train(small_config("vae", epochs=1), tmp_path, CPU, log=quiet)
    metrics = evaluate_run(tmp_path, CPU, importance_samples=4, log=quiet)
    assert math.isclose(metrics["bits_per_dim"], metrics["nll_nats"] / (64 * math.log(2)) + math.log2(17))


@pytest.mark.parametrize("model", MODELS)
def test_interrupted_then_resumed_training_equals_uninterrupted(model, tmp_path):
    config = small_config(model, epochs=4)
    train(config, tmp_path / "straight", CPU, log=quiet)

    def interrupt_in_epoch_three(line):
        if line.startswith("epoch     3/"):  # epoch 3 finished but is not checkpointed yet: its work is lost
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(config, tmp_path / "resumed", CPU, log=interrupt_in_epoch_three)
    interrupted = torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=True)
    assert interrupted["epoch"] == 2
    lines = []
    train(config, tmp_path / "resumed", CPU, log=lines.append)
    assert any("resuming" in line and "after epoch 2" in line for line in lines)
    straight = torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=True)
    resumed = torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=True)
    for name, tensor in straight["model"].items():
        assert torch.equal(tensor, resumed["model"][name]), name
    assert [h["loss"] for h in straight["history"]] == [h["loss"] for h in resumed["history"]]


def test_training_is_deterministic_given_the_seed_and_differs_across_seeds(tmp_path):
    def final_weights(seed, folder):
        train(small_config("fif", epochs=1, seed=seed), tmp_path / folder, CPU, log=quiet)
        return torch.load(tmp_path / folder / "checkpoint.pt", weights_only=True)["model"]["head.weight"]

    assert torch.equal(final_weights(0, "a"), final_weights(0, "b"))
    assert not torch.equal(final_weights(0, "a"), final_weights(1, "c"))


def test_a_finished_run_of_an_older_version_spelling_no_budget_none_is_kept_and_evaluated(tmp_path):
    """Before NO_PROBES, a VAE's records said probes: null: such a finished run is not trained again (nor
    refused as another run), and evaluates."""
    config = small_config("vae", epochs=1)
    train(config, tmp_path, CPU, log=quiet)
    record_path = tmp_path / "train.json"
    record = json.loads(record_path.read_text())
    record["config"]["probes"] = None
    record_path.write_text(json.dumps(record))
    for name in ("checkpoint.pt", "best.pt"):
        state = torch.load(tmp_path / name, weights_only=False)
        state["config"]["probes"] = None
        torch.save(state, tmp_path / name)
    before = {name: (tmp_path / name).read_bytes() for name in ("checkpoint.pt", "train.json")}
    lines = []
    train(config, tmp_path, CPU, log=lines.append, restart_if_changed=True)
    assert any("is finished" in line and "nothing to do" in line for line in lines), lines
    assert {name: (tmp_path / name).read_bytes() for name in before} == before  # its record is left as it is
    assert not (tmp_path / ".superseded").exists()
    assert evaluate_run(tmp_path, CPU, importance_samples=2, log=quiet)["status"] == "complete"


def test_resuming_with_another_configuration_is_refused_or_restarted_when_asked(tmp_path):
    train(small_config("vae", epochs=1), tmp_path, CPU, log=quiet)
    with pytest.raises(ConfigError, match="latent_dim: 4 → 5"):
        train(small_config("vae", epochs=2, latent_dim=5), tmp_path, CPU, log=quiet)
    assert (tmp_path / "best.pt").exists()

    def stop_once_restarted(line):
        if "starting afresh" in line:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(
            small_config("vae", epochs=2, latent_dim=5), tmp_path, CPU, log=stop_once_restarted, restart_if_changed=True
        )
    # the old run's checkpoints are gone before the new run starts: nothing of it can be evaluated as this run
    assert not (tmp_path / "checkpoint.pt").exists() and not (tmp_path / "best.pt").exists()
    result = train(small_config("vae", epochs=2, latent_dim=5), tmp_path, CPU, log=quiet, restart_if_changed=True)
    assert result["epochs_completed"] == 2


def test_non_finite_loss_names_epoch_and_step_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    config = small_config("vae", epochs=3)
    train(small_config("vae", epochs=1), tmp_path, CPU, log=quiet)  # a good checkpoint after epoch 1
    good = hashlib.sha256((tmp_path / "checkpoint.pt").read_bytes()).hexdigest()
    original = MODEL_CLASSES["vae"].objective
    calls = {"n": 0}

    def poisoned(self, x, *noise):
        terms = original(self, x, *noise)
        calls["n"] += 1
        if calls["n"] == 5:  # epoch 2 (the first after resuming), step 5
            terms["loss"] = terms["loss"] * float("nan")
        return terms

    monkeypatch.setattr(MODEL_CLASSES["vae"], "objective", poisoned)
    with pytest.raises(TrainingDiverged, match="epoch 2, step 5") as caught:
        train(config, tmp_path, CPU, log=quiet)
    assert (caught.value.epoch, caught.value.step) == (2, 5)
    assert str(caught.value).endswith("; its last good checkpoint (checkpoint.pt) was kept")
    assert hashlib.sha256((tmp_path / "checkpoint.pt").read_bytes()).hexdigest() == good
    record = json.loads((tmp_path / "train.json").read_text())
    assert record["status"] == "diverged" and record["error"] == "non-finite loss (nan) at epoch 2, step 5"
    last = record["history"][-1]  # the diverged epoch is in the history, with its loss and no time
    assert (last["epoch"], last["time_s"], record["epochs_completed"]) == (2, None, 2) and math.isnan(last["loss"])
    assert record["wall_time_s"] == sum(entry["time_s"] for entry in record["history"][:-1]) > 0

    calls["n"] = 0  # a fresh run that diverges before its first checkpoint has none to keep, and says so
    with pytest.raises(TrainingDiverged, match="epoch 1, step 5; it had saved no checkpoint yet$"):
        train(config, tmp_path / "fresh", CPU, log=quiet)
    assert not (tmp_path / "fresh" / "checkpoint.pt").exists()


def test_learned_sigma_is_projected_onto_its_floor(tmp_path, monkeypatch):
    """Start σ far below the floor of spec §5: after one epoch ρ must sit at the floor (plus at most the
    few Adam steps of size ≈ log_sigma_lr it can climb since), not where it started."""
    import five.model.models

    monkeypatch.setattr(five.model.models, "INITIAL_SIGMA", 1e-5)
    floor = math.log(1 / (17 * math.sqrt(12)))  # L = 17 levels
    train(small_config("vae", epochs=1), tmp_path, CPU, log=quiet)
    log_sigma = float(torch.load(tmp_path / "checkpoint.pt", weights_only=True)["model"]["log_sigma"])
    steps = math.ceil(1257 / 128)
    assert floor - 1e-6 <= log_sigma <= floor + 2 * steps * DEFAULT_LOG_SIGMA_LR, (log_sigma, floor)


@pytest.mark.parametrize(
    "values, message",
    [
        (dict(model="five", latent_dim=4, probes=5), "outside 1 <= K <= d=4"),
        (dict(model="fif", latent_dim=4, probes=0), "outside 1 <= K <= d=4"),
        (dict(model="vae", latent_dim=4, probes=2), "applies only to fif and five"),
        (dict(model="five", latent_dim=4, beta=3.0), "applies only to fif"),
        (dict(model="vea", latent_dim=4), "unknown model 'vea'"),
        (dict(model="vae", latent_dim=0), "latent-dim must be >= 1"),
    ],
)
def test_invalid_configurations_fail_when_built(values, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(dataset="digits", **values)


def test_probe_budget_defaults_to_one_for_fif_and_five_and_is_not_applicable_otherwise():
    assert TrainConfig(model="five", dataset="digits", latent_dim=3).probes == 1
    assert TrainConfig(model="fif", dataset="digits", latent_dim=3).beta == 10.0
    # "not applicable" is NO_PROBES (0) everywhere: tables, run folders (k0) and the run's configuration
    assert TrainConfig(model="vae", dataset="digits", latent_dim=3).probes == NO_PROBES == 0
    assert TrainConfig(model="vae", dataset="digits", latent_dim=3, probes=0).probes == 0


@pytest.mark.parametrize("model", ["fif", "five"])
def test_fif_and_five_draw_their_noise_then_their_probe_vectors_from_the_run_generator(model):
    """The order of a step's draws is part of every run's result: runs of earlier versions (and the quick
    sweep's tables) stay reproducible only while it stays the same."""
    from five.data.datasets import load_dataset
    from five.model.estimators import probe_vectors
    from five.model.models import build_model

    config = small_config(model, probes=2)
    net = build_model(config, load_dataset("digits"))
    x = torch.rand(5, 64)
    noise, v = net.draw_noise(x, torch.Generator().manual_seed(7))
    expected = torch.Generator().manual_seed(7)
    assert torch.equal(noise, torch.randn(x.shape, generator=expected))
    assert torch.equal(v, probe_vectors(5, 4, 2, expected))


def test_a_record_of_an_older_version_spelling_no_budget_none_is_the_same_run():
    config = TrainConfig(model="vae", dataset="digits", latent_dim=3)
    older = config.to_dict() | {"probes": None}
    assert config.matches(older)
    assert not config.matches(older | {"lr": 0.123})
    assert not config.matches({key: value for key, value in older.items() if key != "lr"})
    assert not config.matches(older | {"unknown": 1})


def test_a_members_epoch_loss_is_the_mean_of_its_own_steps():
    from five.run.train import member_loss

    step_losses = torch.tensor([[1.0, 10.0], [3.0, 20.0], [5.0, float("inf")]])  # (steps, members)
    assert member_loss(step_losses, 0, epoch=4) == 3.0
    with pytest.raises(TrainingDiverged, match="epoch 4, step 3"):
        member_loss(step_losses, 1, epoch=4)
