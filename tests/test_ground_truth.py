"""Estimators against exact answers: probabilistic PCA (spec §6), linear maps with J_g = J_f⁺, and the
closed forms of torch.distributions."""

import math

import pytest
import torch
from torch.distributions import MultivariateNormal, Normal, kl_divergence

from five.model import objectives
from five.model.estimators import (
    GaussianPosterior,
    decoder_probe_tangents,
    encoder_jacobian,
    encoder_jvps,
    iwae_log_likelihood,
    jacobian_covariance_scale_tril,
    log_det_surrogate,
    probe_vectors,
)


@pytest.fixture(autouse=True)
def _float64():
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


class PPCA:
    """x = W z + b + √s·ε: exact marginal N(b, WWᵀ + sI) and posterior N(M⁻¹Wᵀ(x − b), s·M⁻¹), M = WᵀW + sI."""

    def __init__(self, data_dim=6, latent_dim=3, s=0.3, seed=1):
        g = torch.Generator().manual_seed(seed)
        self.W = torch.randn(data_dim, latent_dim, generator=g)
        self.b = torch.randn(data_dim, generator=g)
        self.s = s
        self.log_sigma = torch.tensor(0.5 * math.log(s))

    def sample(self, n, generator):
        z = torch.randn(n, self.W.shape[1], generator=generator)
        return z @ self.W.T + self.b + math.sqrt(self.s) * torch.randn(n, self.W.shape[0], generator=generator)

    def exact_log_likelihood(self, x):
        covariance = self.W @ self.W.T + self.s * torch.eye(self.W.shape[0])
        return MultivariateNormal(self.b, covariance).log_prob(x)

    def exact_posterior(self, x):
        M = self.W.T @ self.W + self.s * torch.eye(self.W.shape[1])
        mean = (x - self.b) @ self.W @ torch.linalg.inv(M).T
        scale_tril = torch.linalg.cholesky(self.s * torch.linalg.inv(M)).expand(x.shape[0], -1, -1)
        return GaussianPosterior(mean, scale_tril)

    def log_joint(self, x, z):
        x_hat = z @ self.W.T + self.b
        return objectives.decoder_log_likelihood(x, x_hat, self.log_sigma) + objectives.prior_log_density(z)


def test_iwae_with_exact_posterior_is_exact_for_every_example():
    model, g = PPCA(), torch.Generator().manual_seed(0)
    x = model.sample(50, g)
    for samples in (1, 7, 300):
        result = iwae_log_likelihood(x, model.exact_posterior(x), model.log_joint, samples, g, chunk_size=64)
        torch.testing.assert_close(result.log_likelihood, model.exact_log_likelihood(x), atol=1e-4, rtol=0)
        # with the exact posterior every weight is log p(x): the ESS is N
        torch.testing.assert_close(result.effective_sample_size, torch.full((50,), float(samples)))


def test_iwae_with_a_wrong_proposal_is_below_and_converges_as_n_grows():
    model, g = PPCA(), torch.Generator().manual_seed(0)
    x = model.sample(400, g)
    exact = model.exact_log_likelihood(x).mean()
    exact_posterior = model.exact_posterior(x)
    wrong = GaussianPosterior(exact_posterior.mean + 0.3, 1.6 * exact_posterior.scale_tril)
    gaps = []
    for samples in (1, 10, 100, 2000):
        estimate = iwae_log_likelihood(x, wrong, model.log_joint, samples, g, chunk_size=256).log_likelihood.mean()
        gaps.append(float(exact - estimate))
    assert all(gap > 0 for gap in gaps), gaps
    assert gaps == sorted(gaps, reverse=True), gaps
    assert gaps[-1] < 0.05 * gaps[0], gaps


def test_iwae_elbo_matches_the_closed_form_elbo_of_the_linear_gaussian_model():
    """The ELBO of pPCA under a Gaussian proposal N(m, S) in closed form:
    E_q[log p(x|z)] + E_q[log p(z)] + H[q], with E‖x − Wz − b‖² = ‖x − Wm − b‖² + tr(W S Wᵀ)."""
    model, g = PPCA(), torch.Generator().manual_seed(3)
    x = model.sample(20, g)
    mean = 0.3 * torch.randn(20, 3, generator=g)
    scale_tril = torch.linalg.cholesky(0.1 * torch.tensor([[0.5, 0.1, 0.0], [0.1, 0.4, 0.05], [0.0, 0.05, 0.3]]))
    covariance = scale_tril @ scale_tril.T
    D, d, s = x.shape[1], 3, model.s
    residual = (x - mean @ model.W.T - model.b).pow(2).sum(1) + torch.trace(model.W @ covariance @ model.W.T)
    expected_log_likelihood = -0.5 * D * math.log(2 * math.pi * s) - residual / (2 * s)
    expected_log_prior = -0.5 * d * math.log(2 * math.pi) - 0.5 * (mean.pow(2).sum(1) + torch.trace(covariance))
    entropy = 0.5 * d * (1 + math.log(2 * math.pi)) + torch.log(torch.diagonal(scale_tril)).sum()
    closed_form = expected_log_likelihood + expected_log_prior + entropy
    proposal = GaussianPosterior(mean, scale_tril.expand(20, 3, 3))
    result = iwae_log_likelihood(x, proposal, model.log_joint, 200_000, g, chunk_size=16384)
    torch.testing.assert_close(result.elbo, closed_form, atol=0.15, rtol=0)  # ≈ 5 Monte Carlo standard errors
    # and the IWAE bound at large N is strictly tighter than that ELBO (the proposal is not the posterior)
    assert bool((result.log_likelihood > closed_form + 0.05).all())


def linear_pair(data_dim=7, latent_dim=4, seed=0):
    """Encoder f(x) = A x and decoder g(z) = A⁺ z, so J_g = J_f⁺ exactly."""
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(latent_dim, data_dim, generator=g).requires_grad_()
    pinv = torch.linalg.pinv(A.detach())
    return A, (lambda x: x @ A.T), (lambda z: z @ pinv.T)


def surrogate_gradient(A, encode, decode, x, probes):
    tangents = decoder_probe_tangents(decode, encode(x), probes)
    _, encoder_tangents = encoder_jvps(encode, x, tangents)
    surrogate = log_det_surrogate(probes, encoder_tangents)
    return torch.autograd.grad(surrogate.mean(), A)[0]


def half_log_det_gradient(A):
    return torch.autograd.grad(0.5 * torch.logdet(A @ A.T), A)[0]


def test_surrogate_gradient_at_full_budget_equals_half_log_det_gradient():
    A, encode, decode = linear_pair()
    x = torch.randn(5, 7)
    probes = probe_vectors(5, 4, 4, torch.Generator().manual_seed(1))
    torch.testing.assert_close(surrogate_gradient(A, encode, decode, x, probes), half_log_det_gradient(A))


def test_surrogate_gradient_at_budget_one_is_unbiased():
    A, encode, decode = linear_pair()
    generator = torch.Generator().manual_seed(2)
    # Each example draws its own probe, so a group of examples averages independent draws.
    group_means = torch.stack(
        [
            surrogate_gradient(A, encode, decode, torch.randn(2000, 7), probe_vectors(2000, 4, 1, generator))
            for _ in range(20)
        ]
    )
    mean, standard_error = group_means.mean(0), group_means.std(0) / math.sqrt(20)
    truth = half_log_det_gradient(A)
    assert ((mean - truth).abs() / standard_error).max() < 5
    # and a single probe is not already exact (the test could tell a biased estimator apart)
    single = surrogate_gradient(A, encode, decode, torch.randn(1, 7), probe_vectors(1, 4, 1, generator))
    assert not torch.allclose(single, truth, atol=1e-3)


def test_probe_vectors_are_scaled_orthonormal_and_reject_nothing_valid():
    probes = probe_vectors(3, 5, 5, torch.Generator().manual_seed(0))  # (K, B, d)
    for example in probes.permute(1, 0, 2):  # (K, d)
        torch.testing.assert_close(example @ example.T, 5 * torch.eye(5), rtol=0, atol=1e-5)


def test_five_samples_have_covariance_s_jf_jft():
    torch.manual_seed(0)
    encoder = torch.nn.Sequential(torch.nn.Linear(5, 16), torch.nn.SiLU(), torch.nn.Linear(16, 3))
    decoder = torch.nn.Sequential(torch.nn.Linear(3, 16), torch.nn.SiLU(), torch.nn.Linear(16, 5))
    log_sigma = torch.tensor(math.log(0.3))
    n = 40000
    x = torch.randn(1, 5).expand(n, 5).contiguous()
    g = torch.Generator().manual_seed(0)
    u = torch.randn(n, 5, generator=g)
    terms = objectives.five_loss(x, encoder, decoder, log_sigma, u, probe_vectors(n, 3, 1, g))
    z = terms["z"].detach()
    jacobian = encoder_jacobian(encoder, x[:1])[0].detach()
    expected = 0.09 * jacobian @ jacobian.T
    torch.testing.assert_close(torch.cov(z.T), expected, atol=0.03 * expected.abs().max(), rtol=0)
    torch.testing.assert_close(z.mean(0), encoder(x[:1])[0].detach(), atol=0.02, rtol=0)
    # the evaluation proposal describes the same distribution
    scale_tril = jacobian_covariance_scale_tril(jacobian[None], log_sigma)[0]
    torch.testing.assert_close(scale_tril @ scale_tril.T, expected, atol=1e-6 * expected.abs().max(), rtol=1e-5)


def test_encoder_jacobian_matches_autograd():
    encoder = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    x = torch.randn(2, 4)
    jacobian = encoder_jacobian(encoder, x)
    for i in range(2):
        torch.testing.assert_close(jacobian[i], torch.autograd.functional.jacobian(encoder, x[i]))


def test_fcvae_kl_and_log_q_match_torch_distributions():
    g = torch.Generator().manual_seed(0)
    mu, log_diag = torch.randn(6, 4, generator=g), 0.5 * torch.randn(6, 4, generator=g)
    off_diag = torch.randn(6, 6, generator=g)
    L = objectives.cholesky_factor(log_diag, off_diag)
    q = MultivariateNormal(mu, scale_tril=L)
    prior = MultivariateNormal(torch.zeros(4), torch.eye(4))
    torch.testing.assert_close(objectives.kl_cholesky(mu, L, log_diag), kl_divergence(q, prior))
    eps = torch.randn(6, 4, generator=g)
    z = mu + (L @ eps.unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(objectives.log_q_cholesky(log_diag, eps), q.log_prob(z))
    # L is lower triangular with exp(ℓ) on the diagonal
    torch.testing.assert_close(L.diagonal(dim1=-2, dim2=-1), torch.exp(log_diag))
    assert torch.count_nonzero(torch.triu(L, diagonal=1)) == 0


def test_diagonal_kl_and_decoder_likelihood_match_torch_distributions():
    g = torch.Generator().manual_seed(0)
    mu, log_std = torch.randn(5, 3, generator=g), torch.randn(5, 3, generator=g)
    expected = kl_divergence(Normal(mu, torch.exp(log_std)), Normal(0.0, 1.0)).sum(-1)
    torch.testing.assert_close(objectives.kl_diagonal(mu, log_std), expected)
    x, x_hat, log_sigma = torch.randn(5, 8, generator=g), torch.randn(5, 8, generator=g), torch.tensor(-0.7)
    expected = Normal(x_hat, torch.exp(log_sigma)).log_prob(x).sum(-1)
    torch.testing.assert_close(objectives.decoder_log_likelihood(x, x_hat, log_sigma), expected)


def test_five_loss_is_the_negative_elbo_for_a_linear_gaussian_model():
    """For linear f, g the FIVE −ELBO has a closed form: with q = N(Ax, s·AAᵀ) and decoder g(z) = Wz,
    E_q‖x − Wz‖² = ‖x − WAx‖² + s·tr(WAAᵀWᵀ), E‖z‖² = ‖Ax‖² + s·tr(AAᵀ). Averaged over many u the loss
    (with the surrogate replaced by its meaningful counterpart ½ log det) must match."""
    g = torch.Generator().manual_seed(0)
    D, d, n = 5, 2, 200000
    A, W = torch.randn(d, D, generator=g) * 0.5, torch.randn(D, d, generator=g)
    log_sigma = torch.tensor(math.log(0.4))
    s = 0.16
    x = torch.randn(1, D, generator=g).expand(n, D).contiguous()
    terms = objectives.five_loss(
        x, lambda v: v @ A.T, lambda z: z @ W.T, log_sigma, torch.randn(n, D, generator=g), probe_vectors(n, d, d, g)
    )
    C = A @ A.T
    x0 = x[0]
    expected_reconstruction = (((x0 - W @ A @ x0) ** 2).sum() + s * torch.trace(W @ C @ W.T)) / (2 * s)
    expected_prior = 0.5 * ((A @ x0) ** 2).sum() + 0.5 * s * torch.trace(C)
    half_log_det = 0.5 * torch.logdet(C)
    constant = 0.5 * (D - d) * math.log(s) + 0.5 * D * math.log(2 * math.pi) - 0.5 * d
    loss_without_surrogate = terms["loss"] + terms["surrogate"]
    expected = expected_reconstruction + expected_prior + constant
    torch.testing.assert_close(loss_without_surrogate.mean(), expected, rtol=5e-3, atol=0)
    # The −ELBO of this model also follows from the general formula E[−log p(x|z) − log p(z) + log q(z|x)]
    entropy = 0.5 * d * (1 + math.log(2 * math.pi)) + 0.5 * torch.logdet(s * C)
    log_joint = objectives.decoder_log_likelihood(x, terms["z"] @ W.T, log_sigma) + objectives.prior_log_density(
        terms["z"]
    )
    torch.testing.assert_close(-(log_joint.mean() + entropy), expected - half_log_det, rtol=5e-3, atol=0)


def test_fif_loss_surrogate_and_reconstruction_match_their_definitions():
    """Inside fif_loss (decoder primal reused for the reconstruction), the surrogate's gradient at K = d is
    still ∇ ½ log det(J_f J_fᵀ) and the reconstruction is ‖x̃ − g(f(x̃))‖²."""
    A, encode, decode = linear_pair()
    x = torch.randn(6, 7)
    terms = objectives.fif_loss(x, encode, decode, probe_vectors(6, 4, 4, torch.Generator().manual_seed(3)), beta=10.0)
    gradient = torch.autograd.grad(terms["surrogate"].mean(), A, retain_graph=True)[0]
    torch.testing.assert_close(gradient, half_log_det_gradient(A))
    torch.testing.assert_close(terms["reconstruction"], ((x - decode(encode(x))) ** 2).sum(-1))
    torch.testing.assert_close(terms["loss"], 10.0 * terms["reconstruction"] + terms["prior"] - terms["surrogate"])


def test_fif_trains_on_x_plus_a_hundredth_of_its_noise_with_half_the_squared_norm_as_prior():
    """§1.3 at the model: x̃ = x + 0.01·ε, the reconstruction ‖x̃ − g(f(x̃))‖² and the prior ½‖f(x̃)‖² (the loss test
    above takes x̃ and the prior term as given)."""
    from five.base.config import TrainConfig
    from five.model.models import build_model
    from five.run.timing import synthetic_dataset

    dataset = synthetic_dataset((6,), "mlp", n=16)
    model = build_model(TrainConfig(model="fif", dataset=dataset.name, latent_dim=2, hidden_width=8), dataset).double()
    x = torch.rand(5, 6, dtype=torch.float64)
    noise, probes = model.draw_noise(x, torch.Generator().manual_seed(0))
    terms = model.objective(x, noise, probes)
    x_noisy = x + 0.01 * noise
    z = model.encode(x_noisy)
    torch.testing.assert_close(terms["prior"], 0.5 * (z**2).sum(-1))
    torch.testing.assert_close(terms["reconstruction"], ((x_noisy - model.decode(z)) ** 2).sum(-1))
