"""The synthetic manifold: its density, its true posterior (checked by Monte Carlo) and the posterior metric."""

import math

import pytest
import torch

from five.base.config import TrainConfig
from five.data import manifold
from five.model.estimators import GaussianPosterior
from five.run.evaluate import data_space_posterior_covariance, evaluate_run
from five.run.train import train


def test_log_joint_is_the_generating_density():
    z = torch.randn(4, 2, dtype=torch.float64)
    eps = torch.randn(4, 10, dtype=torch.float64)
    x = manifold.manifold_point(z) + manifold.NOISE_STD * eps
    expected = torch.distributions.Normal(0.0, manifold.NOISE_STD).log_prob(manifold.NOISE_STD * eps).sum(
        -1
    ) + torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)
    torch.testing.assert_close(manifold.log_joint(x, z), expected, rtol=1e-9, atol=1e-5)


def test_data_set_splits_are_continuous_and_fixed():
    from five.data.datasets import load_dataset

    data = load_dataset("manifold")
    assert data.discrete_levels is None and data.example_shape == (10,)
    assert {name: tuple(data.split(name).shape) for name in ("train", "validation", "test")} == {
        "train": (8000, 10),
        "validation": (1000, 10),
        "test": (2000, 10),
    }
    assert torch.equal(load_dataset("manifold").split("test"), data.split("test"))


def test_true_posterior_matches_a_monte_carlo_estimate():
    """Self-normalised importance sampling from the prior (an independent, slow estimator) agrees with the
    quadrature on the posterior mean, covariance and log p(x)."""
    generator = torch.Generator().manual_seed(0)
    x, _ = manifold.sample(4, generator)
    truth = manifold.true_posterior(x)
    z = torch.randn(1_000_000, 2, generator=generator, dtype=torch.float64)
    log_prior = -math.log(2 * math.pi) - 0.5 * (z**2).sum(-1)
    for i in range(4):
        log_w = manifold.log_joint(x[i], z) - log_prior
        w = torch.softmax(log_w, 0)
        ess = float(1 / (w**2).sum())
        assert ess > 100, ess
        mean = (w[:, None] * z).sum(0)
        covariance = (w[:, None, None] * (z - mean)[:, :, None] * (z - mean)[:, None, :]).sum(0)
        scale = truth.covariance[i].diagonal().sqrt()
        assert ((mean - truth.mean[i]).abs() / scale).max() < 8 / math.sqrt(ess)  # within a few MC errors
        torch.testing.assert_close(covariance, truth.covariance[i], atol=0.25 * float(scale.max() ** 2), rtol=0)
        log_px = float(torch.logsumexp(log_w, 0) - math.log(len(z)))
        assert log_px == pytest.approx(float(truth.log_likelihood[i]), abs=3 / math.sqrt(ess) + 0.01)


def test_true_posterior_is_covered_by_the_grid_and_is_not_diagonal():
    x, _ = manifold.sample(300, torch.Generator().manual_seed(1))
    truth = manifold.true_posterior(x)
    assert float(truth.mass_on_edge.max()) < 1e-8
    sd = truth.covariance.diagonal(dim1=-2, dim2=-1).sqrt()
    correlation = truth.covariance[:, 0, 1] / (sd[:, 0] * sd[:, 1])
    assert float(correlation.abs().max()) > 0.6  # strongly correlated somewhere
    assert float(correlation.max() - correlation.min()) > 0.5  # and the correlation changes across the manifold


class KnownPosterior:
    """A stand-in model whose decoder is the true map and whose posterior is a Gaussian we choose."""

    def __init__(self, mean, covariance):
        self.mean, self.covariance = mean, covariance

    def posterior(self, x):
        index = self.index(x)
        return GaussianPosterior(self.mean[index], torch.linalg.cholesky(self.covariance[index]))

    def index(self, x):
        return self.rows[: x.shape[0]]

    def decode(self, z):
        return manifold.manifold_point(z).float()


def posterior_error(truth, x, covariance):
    stand_in = KnownPosterior(truth.mean, covariance)
    stand_in.rows = torch.arange(x.shape[0])
    learned = data_space_posterior_covariance(stand_in, x.float(), 4000, torch.Generator().manual_seed(0))
    return float(manifold.normalised_frobenius_error(learned, truth.data_covariance).mean())


def test_posterior_error_is_small_for_the_truth_and_large_for_wrong_posteriors():
    x, _ = manifold.sample(40, torch.Generator().manual_seed(2))
    truth = manifold.true_posterior(x)
    exact = posterior_error(truth, x, truth.covariance)
    diagonal = posterior_error(truth, x, torch.diag_embed(truth.covariance.diagonal(dim1=-2, dim2=-1)))
    inflated = posterior_error(truth, x, 4 * truth.covariance)
    assert exact < 0.15, exact
    assert diagonal > exact + 0.1, (diagonal, exact)
    assert inflated > 2.0, inflated


def test_evaluate_reports_posterior_distance_and_true_nll_on_the_manifold(tmp_path):
    config = TrainConfig(model="five", dataset="manifold", latent_dim=2, epochs=1, hidden_width=32)
    train(config, tmp_path, torch.device("cpu"), log=lambda line: None)
    metrics = evaluate_run(tmp_path, torch.device("cpu"), importance_samples=8, log=lambda line: None)
    assert metrics["bits_per_dim"] is None  # continuous data: nats only
    assert metrics["posterior_examples"] == 500
    # the true NLL is the generating density's, by quadrature, on the first 500 test points (computed here anew)
    from five.data.datasets import load_dataset

    test_points = load_dataset("manifold").split("test")[:500].double()
    expected = -float(manifold.true_posterior(test_points).log_likelihood.mean())
    assert metrics["true_nll_nats"] == pytest.approx(expected, abs=1e-6)
    # one epoch of a 32-wide net is far from that density and from its posterior
    assert metrics["model_nll_nats_same_examples"] > metrics["true_nll_nats"] + 0.5
    assert metrics["posterior_covariance_error"] > 0.15  # an exact posterior scores < 0.15 (test above)
    per_example = metrics["posterior_covariance_error_per_example"]  # what the claims pair example by example
    assert len(per_example) == 500 and sum(per_example) / 500 == pytest.approx(
        metrics["posterior_covariance_error"], abs=1e-5
    )


def test_the_true_posterior_is_computed_once_per_cache_and_read_back_exactly(tmp_path, monkeypatch):
    from five.run.evaluate import cached_true_posterior

    x = manifold.sample(20, torch.Generator().manual_seed(5))[0]
    first = cached_true_posterior(x, tmp_path)
    assert len(list(tmp_path.glob("manifold-true-posterior-*.pt"))) == 1

    def must_not_recompute(_x):
        raise AssertionError("recomputed although cached")

    monkeypatch.setattr(manifold, "true_posterior", must_not_recompute)
    second = cached_true_posterior(x, tmp_path)
    assert torch.equal(first.log_likelihood, second.log_likelihood)
    assert torch.equal(first.data_covariance, second.data_covariance)
    with pytest.raises(AssertionError, match="recomputed"):  # other points: another key
        cached_true_posterior(x[:10], tmp_path)


@pytest.mark.parametrize(
    "damage",
    [
        lambda truth: {"foo": 1},
        lambda truth: truth | {"mean": truth["mean"][:3]},
        lambda truth: truth | {"log_likelihood": torch.full_like(truth["log_likelihood"], float("nan"))},
    ],
    ids=["other keys", "other length", "nan"],
)
def test_a_damaged_cached_true_posterior_is_computed_again_and_replaced(tmp_path, damage):
    """The cache is shared by every manifold evaluation of a sweep: a damaged file must not fail them all."""
    import dataclasses

    from five.run.checkpoint import save_checkpoint
    from five.run.evaluate import cached_true_posterior

    x = manifold.sample(20, torch.Generator().manual_seed(5))[0]
    first = cached_true_posterior(x, tmp_path)
    (path,) = tmp_path.glob("manifold-true-posterior-*.pt")
    save_checkpoint(path, damage(dataclasses.asdict(first)))
    again = cached_true_posterior(x, tmp_path)
    assert torch.equal(again.log_likelihood, first.log_likelihood) and torch.equal(again.mean, first.mean)
    assert torch.equal(cached_true_posterior(x, tmp_path).covariance, first.covariance)  # the file was replaced
