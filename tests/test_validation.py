"""Fit quality while training: validation ELBO/NLL with exact log-determinants, best-epoch model selection,
patience, and non-finite validation values."""

import copy
import json
import math

import pytest
import torch

import five.run.evaluate
import five.run.train
from five.base.config import MODELS, TrainConfig
from five.base.errors import TrainingDiverged
from five.data.datasets import Dataset
from five.model.models import build_model
from five.run.evaluate import evaluate_run
from five.run.train import train
from five.run.validation import default_eval_every, posterior_log_det

CPU = torch.device("cpu")
VALIDATION_KEYS = {"val_nll", "val_elbo", "val_recon_mse", "validation_time_s"}


def quiet(_line):
    pass


def config(model="vae", **overrides):
    values = dict(model=model, dataset="digits", latent_dim=4, epochs=10, hidden_width=64, eval_every=3)
    return TrainConfig(**(values | overrides))


def test_monitoring_log_det_is_slogdet_of_jf_jft():
    dataset = Dataset("flat", {"train": torch.zeros(4, 6), "test": torch.zeros(4, 6)}, None, "mlp", 16)
    torch.manual_seed(0)
    model = build_model(TrainConfig(model="five", dataset="flat", latent_dim=3), dataset).double()
    x = torch.randn(5, 6, dtype=torch.float64)
    with torch.no_grad():
        log_det = posterior_log_det(model.posterior(x).scale_tril)
    for i in range(5):
        jacobian = torch.autograd.functional.jacobian(lambda v: model.encode(v[None])[0], x[i])
        sign, expected = torch.linalg.slogdet(jacobian @ jacobian.T)
        expected = expected + 3 * 2 * model.log_sigma.detach()  # log det(s·J Jᵀ) = log det(J Jᵀ) + d log s
        assert sign > 0
        assert float(log_det[i]) == pytest.approx(float(expected), rel=1e-5, abs=1e-5)


def test_validation_history_has_the_expected_entries_and_a_best_checkpoint(tmp_path):
    result = train(config(), tmp_path, CPU, log=quiet)
    evaluated = [entry for entry in result["history"] if "val_nll" in entry]
    assert [entry["epoch"] for entry in evaluated] == [3, 6, 9, 10]  # every 3 epochs, and the last one
    assert all(VALIDATION_KEYS <= set(entry) for entry in evaluated)
    assert all(not VALIDATION_KEYS & set(entry) for entry in result["history"] if entry not in evaluated)
    best = min(evaluated, key=lambda entry: entry["val_nll"])
    assert result["best_epoch"] == best["epoch"] and result["best_val_nll"] == best["val_nll"]
    stored = torch.load(tmp_path / "best.pt", weights_only=True)
    assert stored["epoch"] == best["epoch"] and stored["val_nll"] == best["val_nll"]
    assert json.loads((tmp_path / "train.json").read_text())["best_epoch"] == best["epoch"]
    assert default_eval_every(2000) == 100 and default_eval_every(10) == 1


def test_evaluation_uses_the_selected_checkpoint(tmp_path, monkeypatch):
    # validation values that make epoch 6 the best, so best and last differ
    values = iter([5.0, 1.0, 3.0, 4.0])
    real_validate = five.run.train.validate
    monkeypatch.setattr(
        five.run.train, "validate", lambda model, x: real_validate(model, x) | {"val_nll": next(values)}
    )
    train(config(), tmp_path, CPU, log=quiet)
    best = evaluate_run(tmp_path, CPU, importance_samples=4, log=quiet, model_selection="best")
    last = evaluate_run(tmp_path, CPU, importance_samples=4, log=quiet, model_selection="last")
    assert (best["model_selection"], best["checkpoint_epoch"], best["selection_val_nll"]) == ("best", 6, 1.0)
    assert (last["model_selection"], last["checkpoint_epoch"]) == ("last", 10)
    assert best["nll_nats"] != last["nll_nats"]  # different weights were evaluated


def test_patience_stops_a_stalled_run_and_reports_it(tmp_path, monkeypatch):
    values = iter([3.0, 4.0, 5.0, 6.0])  # never better than the first
    real_validate = five.run.train.validate
    monkeypatch.setattr(
        five.run.train, "validate", lambda model, x: real_validate(model, x) | {"val_nll": next(values)}
    )
    lines = []
    result = train(config(epochs=30, eval_every=2, patience=2), tmp_path, CPU, log=lines.append)
    assert result["status"] == "stalled" and result["epochs_completed"] == 6 and result["best_epoch"] == 2
    assert any("stopping" in line for line in lines)
    again = train(config(epochs=30, eval_every=2, patience=2), tmp_path, CPU, log=lines.append)
    assert again["status"] == "stalled" and again["epochs_completed"] == 6  # not silently trained on
    assert json.loads((tmp_path / "train.json").read_text())["status"] == "stalled"
    record = json.loads((tmp_path / "train.json").read_text())  # killed after its checkpoint, before its record:
    (tmp_path / "train.json").write_text(json.dumps(record | {"status": "running"}))  # resumed, it stops at once
    resumed = train(config(epochs=30, eval_every=2, patience=2), tmp_path, CPU, log=lines.append)
    assert resumed["status"] == "stalled" and resumed["epochs_completed"] == 6


def test_a_non_finite_validation_nll_is_a_divergence(tmp_path, monkeypatch):
    real_validate = five.run.train.validate
    monkeypatch.setattr(five.run.train, "validate", lambda model, x: real_validate(model, x) | {"val_nll": math.nan})
    with pytest.raises(TrainingDiverged, match="non-finite validation NLL"):
        train(config(), tmp_path, CPU, log=quiet)
    record = json.loads((tmp_path / "train.json").read_text())
    assert record["status"] == "diverged" and "validation NLL" in record["error"]


@pytest.mark.parametrize("model", ["fif", "five"])
def test_a_posterior_that_validation_cannot_factor_is_a_divergence(model, tmp_path, monkeypatch):
    """An encoder saturated flat (J_f = 0: the ends of its SiLUs underflow, as at lr 3 on manifold) leaves
    s·J_f J_fᵀ with no Cholesky factor and the run with no likelihood bound: recorded as diverged, like a
    non-finite validation NLL, not a traceback. Here validation sees the trained weights with the encoder's last
    layer set to 0."""
    real_validate = five.run.train.validate

    def flat_encoder_validate(trained, x):
        flat = copy.deepcopy(trained)
        flat.head.weight.data.zero_()  # f(x) = the head's bias
        return real_validate(flat, x)

    monkeypatch.setattr(five.run.train, "validate", flat_encoder_validate)
    with pytest.raises(TrainingDiverged, match="no validation NLL at epoch 3: .* no Cholesky factor"):
        train(config(model), tmp_path, CPU, log=quiet)
    record = json.loads((tmp_path / "train.json").read_text())
    assert record["status"] == "diverged" and "J_f is 0 or not finite" in record["error"], record["error"]
    assert record["epochs_completed"] == 3 and not (tmp_path / "best.pt").exists()


@pytest.mark.parametrize("model", MODELS)
def test_validation_nll_decreases_on_a_short_digits_run(model, tmp_path):
    result = train(config(model, epochs=8, eval_every=2, lr=2e-3), tmp_path, CPU, log=quiet)
    curve = [entry["val_nll"] for entry in result["history"] if "val_nll" in entry]
    assert len(curve) == 4 and curve[-1] < curve[0] - 1.0, curve


@pytest.mark.parametrize("model_name", ["vae", "fif", "five"])
def test_the_sigma_fit_scores_each_sigma_by_the_models_own_nll_at_it(model_name):
    """Ground truth: the fitted objective at the fitted σ equals the validation NLL of the model with its σ set
    there (FIF/FIVE: the proposal s·J_fJ_fᵀ rescaled with σ; the VAE's does not move). A fit that kept the
    proposal at the old σ would score another quantity."""
    from five.run.validation import fit_log_sigma, validate

    dataset = Dataset("flat", {"train": torch.zeros(4, 6)}, None, "mlp", 16)
    torch.manual_seed(0)
    model = build_model(TrainConfig(model=model_name, dataset="flat", latent_dim=3), dataset).double()
    x = torch.randn(64, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    fit = fit_log_sigma(model, x)
    assert not fit["kept_own"] and abs(fit["log_sigma"] - float(model.log_sigma.detach())) > 0.1  # σ moved: a real test
    model.set_log_sigma(fit["log_sigma"])
    assert validate(model, x)["val_nll"] == pytest.approx(fit["val_nll_fitted"], rel=1e-9)


def test_the_sigma_fit_keeps_the_own_sigma_where_the_search_does_worse_and_flags_its_bounds(monkeypatch):
    import scipy.optimize

    from five.run.validation import fit_log_sigma

    dataset = Dataset("flat", {"train": torch.zeros(4, 6)}, None, "mlp", 16)
    torch.manual_seed(0)
    model = build_model(TrainConfig(model="five", dataset="flat", latent_dim=3), dataset).double()
    x = torch.randn(32, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    own = float(model.log_sigma.detach())
    worse = scipy.optimize.OptimizeResult(x=own + 3.9999, fun=1e9, nfev=1)  # a search that ended badly
    monkeypatch.setattr(scipy.optimize, "minimize_scalar", lambda *args, **kwargs: worse)
    kept = fit_log_sigma(model, x)
    assert kept["kept_own"] and kept["log_sigma"] == own and kept["val_nll_fitted"] == kept["val_nll_own"]
    at_edge = scipy.optimize.OptimizeResult(x=own + 3.9999, fun=-1e9, nfev=1)
    monkeypatch.setattr(scipy.optimize, "minimize_scalar", lambda *args, **kwargs: at_edge)
    assert fit_log_sigma(model, x)["at_bound"] == "upper"


def test_sigma_is_fitted_on_the_validation_split_never_the_test_split(tmp_path, monkeypatch):
    import five.run.evaluate

    train(config("vae", epochs=1, eval_every=1), tmp_path, CPU, log=quiet)
    seen = {}
    original = five.run.evaluate.fit_log_sigma

    def spy(model, x, *args, **kwargs):
        seen["x"] = x.clone()
        return original(model, x, *args, **kwargs)

    monkeypatch.setattr(five.run.evaluate, "fit_log_sigma", spy)
    evaluate_run(tmp_path, CPU, importance_samples=2, log=quiet, sigma="fitted")
    from five.data.datasets import load_dataset
    from five.run.validation import validation_batch

    torch.testing.assert_close(seen["x"], validation_batch(load_dataset("digits"), CPU, quiet))


def test_a_long_evaluation_says_how_far_it_is_within_a_batch(tmp_path, monkeypatch):
    """The importance-sample count is named before any sampling, and a batch's sampling reports its progress
    (here on every chunk of 256 samples: the reporting interval set to 0), so a long evaluation (10^12 samples
    ran silent) is never silent."""
    train(config(epochs=1), tmp_path, CPU, log=quiet)
    monkeypatch.setattr(five.run.evaluate, "PROGRESS_SECONDS", 0.0)
    lines = []
    evaluate_run(tmp_path, CPU, importance_samples=1024, batch_size=256, log=lines.append)
    start = next(i for i, line in enumerate(lines) if "importance samples, in" in line)
    assert lines[start].endswith("examples × 1024 importance samples, in 2 batches")
    progress = [f"batch 1/2: {256 * n}/1024 importance samples" for n in (1, 2, 3, 4)]
    assert lines[start + 1 : start + 6] == progress + ["evaluated batch 1/2"], lines


def test_without_a_validation_split_the_arrays_read_by_no_split_are_named(tmp_path):
    """An npz whose validation array is misnamed ('valid') falls back to training examples for monitoring: the
    line saying so names the array, which five otherwise ignores without a word."""
    import numpy as np

    from five.data.datasets import load_npz
    from five.run.validation import validation_batch

    arrays = {"train": np.zeros((20, 4), np.float32), "test": np.ones((10, 4), np.float32)}
    lines = []
    np.savez(tmp_path / "typo.npz", **arrays, valid=np.ones((5, 4), np.float32), labels=np.arange(20))
    validation_batch(load_npz(str(tmp_path / "typo.npz")), CPU, lines.append)
    assert "has no validation split (its arrays valid, labels are no split: one named 'validation' is)" in lines[0]
    np.savez(tmp_path / "plain.npz", **arrays)
    validation_batch(load_npz(str(tmp_path / "plain.npz")), CPU, lines.append)
    assert "plain.npz has no validation split: monitoring uses" in lines[1]


@pytest.mark.parametrize("with_validation", [True, False])
def test_a_fitted_sigma_names_the_examples_it_was_fitted_on(tmp_path, with_validation):
    """`--sigma fitted` fits σ on the validation split, or, where an npz has none, on the first training examples:
    the evaluation's log and its recorded proposal (which the tables' captions quote) say which."""
    import numpy as np

    generator = np.random.default_rng(0)
    arrays = {split: generator.normal(size=(40, 4)).astype(np.float32) for split in ("train", "test")}
    if with_validation:
        arrays["validation"] = generator.normal(size=(20, 4)).astype(np.float32)
    np.savez(tmp_path / "data.npz", **arrays)
    run_config = TrainConfig(model="vae", dataset=f"npz:{tmp_path / 'data.npz'}", latent_dim=2, epochs=1)
    train(run_config, tmp_path / "run", CPU, log=quiet)
    lines = []
    metrics = evaluate_run(tmp_path / "run", CPU, importance_samples=4, sigma="fitted", log=lines.append)
    source = "validation" if with_validation else "the first 40 training examples (no validation split)"
    assert metrics["proposal"].endswith(f"s fitted on {source}"), metrics["proposal"]
    assert any(line.startswith(f"σ fitted on {source}: ") for line in lines), lines


def test_the_best_epoch_of_a_tie_is_the_earliest():
    """Epochs with equal validation NLL: the earliest is the best (its checkpoint was saved first), and the later
    ones count towards patience."""
    from five.run.validation import best_epoch, evaluations_since_best

    history = [{"epoch": 1, "val_nll": 5.0}, {"epoch": 2, "val_nll": 5.0}, {"epoch": 3, "val_nll": 6.0}]
    assert best_epoch(history) == (1, 5.0) and evaluations_since_best(history) == 2
