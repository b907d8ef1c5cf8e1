"""Where gradients may flow (the stop-gradient of spec §1.3) and the collapse metrics of §3 on posteriors
built by hand."""

import math

import pytest
import torch
from torch import nn

from five.base.metrics import information_threshold
from five.model import objectives
from five.model.estimators import probe_vectors
from five.run.evaluate import collapse_metrics


def trainable_pair(data_dim=6, latent_dim=3, seed=0):
    torch.manual_seed(seed)
    encoder = nn.Sequential(nn.Linear(data_dim, 16), nn.SiLU(), nn.Linear(16, latent_dim))
    decoder = nn.Sequential(nn.Linear(latent_dim, 16), nn.SiLU(), nn.Linear(16, data_dim))
    return encoder, decoder


def surrogate_gradients(name):
    encoder, decoder = trainable_pair()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(8, 6, generator=g)
    probes = probe_vectors(8, 3, 2, g)
    if name == "fif":
        terms = objectives.fif_loss(x, encoder, decoder, probes, beta=10.0)
    else:
        terms = objectives.five_loss(x, encoder, decoder, torch.tensor(-1.0), torch.randn(8, 6, generator=g), probes)
    terms["surrogate"].sum().backward()
    return encoder, decoder


@pytest.mark.parametrize("name", ["fif", "five"])
def test_the_log_det_surrogate_trains_the_encoder_only(name):
    """∇S = tr(∂J_f · SG(J_g)): the decoder's Jacobian is a constant in S, so a trainable decoder receives no
    gradient from it (without the stop-gradient it would be pushed to change J_g, which S's value does not mean)."""
    encoder, decoder = surrogate_gradients(name)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in encoder.parameters())
    for parameter in decoder.parameters():
        assert parameter.grad is None or torch.count_nonzero(parameter.grad) == 0


def test_collapse_metrics_count_variances_above_the_threshold_and_are_rotation_aware():
    g = torch.Generator().manual_seed(0)
    # means whose per-dimension variances are exactly 1.0, 0.02, 0.011 and 0.009 (population variance)
    base = torch.randn(4000, 4, generator=g, dtype=torch.float64)
    base = (base - base.mean(0)) / base.std(0, unbiased=False)
    base = torch.linalg.qr(base).Q * math.sqrt(4000)  # uncorrelated columns, unit variance (mean ≈ 0)
    base = base - base.mean(0)
    base = base / base.std(0, unbiased=False)
    variances = torch.tensor([1.0, 0.02, 0.011, 0.009], dtype=torch.float64)
    means = base * variances.sqrt()
    covariance_sum = 4000 * torch.diag(torch.tensor([0.3, 0.9, 1.0, 1.0], dtype=torch.float64))
    metrics = collapse_metrics(means, covariance_sum)
    assert metrics["active_units"] == 3 and metrics["active_units_eigen"] == 3
    torch.testing.assert_close(torch.tensor(metrics["posterior_mean_variance"], dtype=torch.float64), variances)
    assert metrics["posterior_covariance_eigenvalues"] == pytest.approx([0.3, 0.9, 1.0, 1.0])
    # a rotation mixes the axes: axis-wise counting changes, the eigenvalue count does not
    rotation = torch.linalg.qr(torch.randn(4, 4, generator=g, dtype=torch.float64)).Q
    rotated = collapse_metrics(means @ rotation.T, covariance_sum)
    assert rotated["active_units_eigen"] == 3
    assert rotated["active_units"] == int((torch.var(means @ rotation.T, 0, unbiased=False) > 0.01).sum())
    # two perfectly correlated active axes are one direction
    line = torch.randn(4000, 1, generator=g, dtype=torch.float64)
    assert collapse_metrics(torch.cat([line, line, 0 * line], 1), torch.eye(3) * 4000)["active_units_eigen"] == 1


def constructed_posterior(mean_variances, posterior_variances, rotation=None, examples=4000):
    """Means with exactly the given variances along orthogonal directions, and the given average posterior
    covariance along the same directions (both rotated by `rotation` if given)."""
    g = torch.Generator().manual_seed(1)
    base = torch.linalg.qr(torch.randn(examples, len(mean_variances), generator=g, dtype=torch.float64)).Q
    base = (base - base.mean(0)) / (base - base.mean(0)).std(0, unbiased=False)
    means = base * torch.tensor(mean_variances, dtype=torch.float64).sqrt()
    covariance = torch.diag(torch.tensor(posterior_variances, dtype=torch.float64))
    if rotation is not None:
        means, covariance = means @ rotation.T, rotation @ covariance @ rotation.T
    return means, examples * covariance


def test_information_per_direction_on_constructed_posteriors():
    """§3: ½·log((mean variance + posterior variance) / posterior variance) along each direction."""
    # an informative direction (mean variance 3, posterior 1: ½·log 4), a FIVE-style noise direction (mean
    # variance 0.5, posterior 0.5: ½·log 2 = 0.35 nats, "active" by Burda) and a VAE unit with a constant mean
    means, covariance_sum = constructed_posterior([3.0, 0.5, 0.0], [1.0, 0.5, 1.0])
    metrics = collapse_metrics(means, covariance_sum)
    expected = [0.5 * math.log(4), 0.5 * math.log(2), 0.0]
    assert metrics["information_per_direction"] == pytest.approx(expected, abs=1e-6)
    assert metrics["active_units"] == 2 and metrics["informative_directions"] == 1
    assert metrics["rate_nats"] == pytest.approx(sum(expected))
    # a rotated informative pair: the same information, found along the rotated directions
    rotation = torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)).Q
    pair = collapse_metrics(*constructed_posterior([3.0, 8.0, 0.0], [1.0, 2.0, 1.0], rotation))
    assert pair["information_per_direction"] == pytest.approx([0.5 * math.log(5), 0.5 * math.log(4), 0.0], abs=1e-6)
    assert pair["informative_directions"] == 2


@pytest.mark.parametrize("latent_dim", [32, 64])
def test_noise_directions_of_a_small_test_set_are_not_informative(latent_dim):
    """Directions that each carry ½·log 2 nats (mean variance = posterior variance, a direction left to the
    data's noise) estimated from digits' 360 test examples: sampling spreads their largest ratio to about
    (1 + √(d/N))² > e − 1, which a fixed 0.5-nat threshold counted in most draws at d ≥ 48; a real direction
    among them (mean variance 8) still counts."""
    g = torch.Generator().manual_seed(3)
    examples, draws = 360, 40
    counted, signal_counted = 0, 0
    for _ in range(draws):
        means = torch.randn(examples, latent_dim, generator=g, dtype=torch.float64)
        covariance_sum = torch.eye(latent_dim, dtype=torch.float64) * examples
        counted += collapse_metrics(means, covariance_sum)["informative_directions"]
        means[:, 0] *= 8**0.5
        signal_counted += collapse_metrics(means, covariance_sum)["informative_directions"]
    assert counted == 0
    assert signal_counted == draws


def test_the_information_threshold_is_the_variance_ratio_scaled_by_the_edge():
    """½·log(1 + (e − 1)(1 + √(d/N))²): 0.680 nats at d = 32, N = 360 (digits), 0.550 at d = 64, N = 10,000, and
    0.5 as N grows; evaluate records the value it counted with."""
    assert information_threshold(32, 360) == pytest.approx(
        0.5 * math.log(1 + (math.e - 1) * (1 + (32 / 360) ** 0.5) ** 2)
    )
    assert information_threshold(32, 360) == pytest.approx(0.680, abs=5e-4)
    assert information_threshold(64, 10_000) == pytest.approx(0.550, abs=5e-4)
    assert information_threshold(8, 10**12) == pytest.approx(0.5, abs=1e-5)
    means, covariance_sum = constructed_posterior([3.0, 0.5, 0.0], [1.0, 0.5, 1.0])
    recorded = collapse_metrics(means, covariance_sum)["information_threshold_nats"]
    assert recorded == pytest.approx(information_threshold(3, 4000))
