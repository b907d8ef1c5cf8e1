"""The two ways of computing the log-det surrogate's encoder product (forward and reverse mode) give the same
loss and gradients, and FIVE's `surrogate_point` variant takes the decoder tangents where spec §1.4 says:
checked against the surrogate written out with exact Jacobians, S = (1/K) Σ_k v_kᵀ J_f(x) J_g(·) v_k."""

import pytest
import torch
from torch import nn
from torch.func import jacrev, vmap

from five.model import objectives
from five.model.estimators import choose_encoder_product, encoder_jacobian, probe_vectors

D, d, B = 6, 3, 5


def nets(seed=0, linear_decoder=False):
    torch.manual_seed(seed)
    encoder = nn.Sequential(nn.Linear(D, 16), nn.SiLU(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, d)).double()
    decoder = (
        nn.Linear(d, D) if linear_decoder else nn.Sequential(nn.Linear(d, 16), nn.SiLU(), nn.Linear(16, D))
    ).double()
    return encoder, decoder


def inputs(probes, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, D, generator=g, dtype=torch.float64)
    u = torch.randn(B, D, generator=g, dtype=torch.float64)
    return x, u, probe_vectors(B, d, probes, g).double()


def loss_and_gradients(name, encoder, decoder, x, u, v, product, point="mean"):
    log_sigma = torch.tensor(-1.2, dtype=torch.float64, requires_grad=True)
    if name == "fif":
        terms = objectives.fif_loss(x, encoder, decoder, v, 10.0, product)
    else:
        terms = objectives.five_loss(x, encoder, decoder, log_sigma, u, v, point, product)
    parameters = [*encoder.parameters(), *decoder.parameters()] + ([log_sigma] if name == "five" else [])
    gradients = torch.autograd.grad(terms["loss"].mean(), parameters)
    return terms, gradients


@pytest.mark.parametrize("name,point", [("fif", "mean"), ("five", "mean"), ("five", "sample")])
@pytest.mark.parametrize("probes", [1, 3])
def test_forward_and_reverse_encoder_products_give_the_same_loss_and_gradients(name, point, probes):
    encoder, decoder = nets()
    x, u, v = inputs(probes)
    forward, forward_gradients = loss_and_gradients(name, encoder, decoder, x, u, v, "forward", point)
    reverse, reverse_gradients = loss_and_gradients(name, encoder, decoder, x, u, v, "reverse", point)
    for key in ("loss", "surrogate"):
        torch.testing.assert_close(reverse[key], forward[key], rtol=1e-12, atol=1e-12)
    for a, b in zip(reverse_gradients, forward_gradients):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def exact_surrogate(encoder, decoder, x, at, probes):
    """(1/K) Σ_k v_kᵀ J_f(x) J_g(at) v_k per example, from the full Jacobians."""
    j_f = encoder_jacobian(encoder, x)  # (B, d, D)
    j_g = vmap(jacrev(decoder))(at)  # (B, D, d)
    product = j_f @ j_g  # (B, d, d)
    return torch.einsum("kbi,bij,kbj->b", probes, product, probes) / probes.shape[0]


@pytest.mark.parametrize("product", ["forward", "reverse"])
@pytest.mark.parametrize("point", ["mean", "sample"])
def test_five_surrogate_takes_the_decoder_tangents_at_the_configured_point(point, product):
    encoder, decoder = nets()
    x, u, v = inputs(2)
    terms, _ = loss_and_gradients("five", encoder, decoder, x, u, v, product, point)
    at = encoder(x) if point == "mean" else terms["z"]
    expected = exact_surrogate(encoder, decoder, x, at.detach(), v)
    torch.testing.assert_close(terms["surrogate"], expected, rtol=1e-10, atol=1e-12)
    other = exact_surrogate(encoder, decoder, x, (terms["z"] if point == "mean" else encoder(x)).detach(), v)
    assert not torch.allclose(terms["surrogate"], other, rtol=1e-6)  # the two points differ on this decoder


def test_surrogate_points_agree_when_the_decoder_is_linear():
    """J_g is then the same everywhere, so `sample` equals `mean` exactly: the variant only moves J_g."""
    encoder, decoder = nets(linear_decoder=True)
    x, u, v = inputs(1)
    _, mean = loss_and_gradients("five", encoder, decoder, x, u, v, "reverse", "mean")
    _, sample = loss_and_gradients("five", encoder, decoder, x, u, v, "reverse", "sample")
    for a, b in zip(mean, sample):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_encoder_product_choice_follows_the_measurements_and_compilation():
    assert choose_encoder_product("fif", 1) == choose_encoder_product("fif", 16) == "reverse"
    assert choose_encoder_product("fif", 64) == "forward"  # beyond what was measured: the batched forward pass
    assert (
        choose_encoder_product("fif", 2, "conv") == "reverse" and choose_encoder_product("fif", 4, "conv") == "forward"
    )
    assert choose_encoder_product("five", 1, "mlp", "mean") == "forward"
    assert choose_encoder_product("five", 1, "mlp", "sample") == "reverse"
    assert choose_encoder_product("fif", 1, compiled=True) == "forward"  # torch.compile cannot differentiate twice
