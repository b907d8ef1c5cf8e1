"""The training objectives of spec §1, one function per equation; per-example values, the loss is their mean.

Pure functions of tensors and `encode`/`decode` callables: models own the networks and call these.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch.func import jvp

from five.model.estimators import (
    LOG_2PI,
    decoder_jvps,
    decoder_probe_tangents,
    encoder_jvps,
    encoder_vjps,
    log_det_surrogate,
)

Function = Callable[[torch.Tensor], torch.Tensor]
FIF_TRAIN_NOISE = 0.01  # x̃ = x + 0.01·ε (§1.3)


def per_row(value: torch.Tensor) -> torch.Tensor:
    """A scalar, or one value per row (a pack's σ, five.model.pack), as a column that scales the rows of (B, d)."""
    return value.reshape(-1, 1)


def squared_error(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    """‖x − x̂‖² per example."""
    return (x - x_hat).flatten(1).pow(2).sum(1)


def decoder_log_likelihood(x: torch.Tensor, x_hat: torch.Tensor, log_sigma: torch.Tensor) -> torch.Tensor:
    """§0: log p(x|z) = −(D/2)·log 2π − D·ρ − ‖x − g(z)‖²/(2s), s = exp(2ρ); every constant kept."""
    D = x[0].numel()
    return -0.5 * D * LOG_2PI - D * log_sigma - squared_error(x, x_hat) / (2 * torch.exp(2 * log_sigma))


def prior_log_density(z: torch.Tensor) -> torch.Tensor:
    """log N(z; 0, I_d)."""
    return -0.5 * z.shape[-1] * LOG_2PI - 0.5 * (z**2).sum(-1)


# --- §1.1 VAE ------------------------------------------------------------------------------------------------
def kl_diagonal_per_dimension(mu: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
    """The i-th term of the diagonal KL: ½ (μ_i² + exp(2ℓ_i) − 1 − 2ℓ_i) (also the per-dimension KL of §3)."""
    return 0.5 * (mu**2 + torch.exp(2 * log_std) - 1 - 2 * log_std)


def kl_diagonal(mu: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
    """KL(N(μ, diag exp 2ℓ) ‖ N(0, I)) = ½ Σ_i (μ_i² + exp(2ℓ_i) − 1 − 2ℓ_i)."""
    return kl_diagonal_per_dimension(mu, log_std).sum(-1)


def vae_loss(x, mu, log_std, decode: Function, log_sigma, eps) -> dict[str, torch.Tensor]:
    """−log p(x|z) + KL with z = μ + exp(ℓ)⊙ε."""
    z = mu + torch.exp(log_std) * eps
    reconstruction = -decoder_log_likelihood(x, decode(z), log_sigma)
    kl = kl_diagonal(mu, log_std)
    return {"loss": reconstruction + kl, "reconstruction": reconstruction, "kl": kl}


# --- §1.2 FC-VAE ---------------------------------------------------------------------------------------------
def cholesky_factor(log_diag: torch.Tensor, off_diag: torch.Tensor) -> torch.Tensor:
    """L = diag(exp ℓ) + strict_lower(m), m holding the d(d−1)/2 entries below the diagonal row by row."""
    d = log_diag.shape[-1]
    rows, cols = torch.tril_indices(d, d, offset=-1, device=log_diag.device)
    lower = torch.zeros(*log_diag.shape, d, dtype=log_diag.dtype, device=log_diag.device)
    lower[..., rows, cols] = off_diag
    return lower + torch.diag_embed(torch.exp(log_diag))


def kl_cholesky(mu: torch.Tensor, scale_tril: torch.Tensor, log_diag: torch.Tensor) -> torch.Tensor:
    """KL(N(μ, LLᵀ) ‖ N(0, I)) = ½(‖L‖_F² + ‖μ‖² − d) − Σ_i ℓ_i."""
    d = mu.shape[-1]
    return 0.5 * (scale_tril.pow(2).sum((-2, -1)) + (mu**2).sum(-1) - d) - log_diag.sum(-1)


def log_q_cholesky(log_diag: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """log q(z|x) at z = μ + Lε: −(d/2)·log 2π − Σ_i ℓ_i − ½‖ε‖² (Σℓ, not ½Σℓ: log|L| = Σℓ)."""
    return -0.5 * eps.shape[-1] * LOG_2PI - log_diag.sum(-1) - 0.5 * (eps**2).sum(-1)


def fcvae_loss(x, mu, log_diag, off_diag, decode: Function, log_sigma, eps) -> dict[str, torch.Tensor]:
    """−log p(x|z) + KL with z = μ + Lε."""
    scale_tril = cholesky_factor(log_diag, off_diag)
    z = mu + (scale_tril @ eps.unsqueeze(-1)).squeeze(-1)
    reconstruction = -decoder_log_likelihood(x, decode(z), log_sigma)
    kl = kl_cholesky(mu, scale_tril, log_diag)
    return {"loss": reconstruction + kl, "reconstruction": reconstruction, "kl": kl}


# --- §1.3 FIF ------------------------------------------------------------------------------------------------
def fif_loss(
    x_noisy, encode: Function, decode: Function, v, beta: float, encoder_product: str = "reverse"
) -> dict[str, torch.Tensor]:
    """β·‖x̃ − g(f(x̃))‖² + ½‖f(x̃)‖² − S(x̃); `x_noisy` is x̃ = x + 0.01·ε, `v` the K probe vectors (K, B, d).
    The decoder JVP's primal g(f(x̃)) is the reconstruction (one decoder pass for both); `encoder_product`
    ("forward" or "reverse", estimators.choose_encoder_product) only changes how S is computed, not its value or gradient."""
    if encoder_product == "reverse":
        x_noisy = x_noisy.detach().requires_grad_()  # the VJP is w.r.t. the encoder's input
    z = encode(x_noisy)
    x_hat, tangents = decoder_jvps(decode, z, v)
    surrogate = encoder_product_surrogate(encode, x_noisy, z, v, tangents, encoder_product)
    reconstruction = squared_error(x_noisy, x_hat)
    prior = 0.5 * (z**2).sum(-1)
    return {
        "loss": beta * reconstruction + prior - surrogate,
        "reconstruction": reconstruction,
        "prior": prior,
        "surrogate": surrogate,
    }


def encoder_product_surrogate(encode: Function, x, z, v, decoder_tangents, encoder_product: str):
    """S(x) from the decoder tangents w_k = SG(J_g v_k), with z = f(x) already computed: reverse mode
    differentiates z back to x; forward mode pushes the w_k through the encoder (recomputing f(x))."""
    if encoder_product == "reverse":
        return log_det_surrogate(encoder_vjps(z, x, v), decoder_tangents)
    _, encoder_tangents = encoder_jvps(encode, x, decoder_tangents)
    return log_det_surrogate(v, encoder_tangents)


# --- §1.4 FIVE -----------------------------------------------------------------------------------------------
def five_loss(
    x,
    encode: Function,
    decode: Function,
    log_sigma,
    u,
    v,
    surrogate_point: str = "mean",
    encoder_product: str = "reverse",
) -> dict[str, torch.Tensor]:
    """−ELBO of q(z|x) = N(f(x), s·J_f J_fᵀ), per example:
    ‖x − g(z)‖²/(2s) + ½‖z‖² − S(x) + ((D−d)/2)·log s + (D/2)·log 2π − d/2,
    with z = f(x) + σ·J_f(x)·u, u ~ N(0, I_D) (reparameterised), and S(x) of §1.3 at x, its decoder tangents
    taken at f(x) (`surrogate_point` "mean") or at z ("sample": the decoder pass at z then serves both)."""
    if encoder_product == "forward" and surrogate_point == "mean":
        return five_loss_forward(x, encode, decode, log_sigma, u, v)
    if encoder_product == "reverse":
        x = x.detach().requires_grad_()  # the VJP is w.r.t. the encoder's input
    mean, sampling_tangent = jvp(encode, (x,), (u,))
    z = mean + per_row(torch.exp(log_sigma)) * sampling_tangent
    if surrogate_point == "sample":
        x_hat, tangents = decoder_jvps(decode, z, v)
    else:
        tangents, x_hat = decoder_probe_tangents(decode, mean, v), decode(z)
    surrogate = encoder_product_surrogate(encode, x, mean, v, tangents, encoder_product)
    return five_terms(x, z, x_hat, surrogate, log_sigma)


def five_loss_forward(x, encode: Function, decode: Function, log_sigma, u, v) -> dict[str, torch.Tensor]:
    """five_loss at the mean in forward mode: one encoder pass carries the sampling tangent u and the K probe
    tangents together (cheapest at large K), at the price of a first no-grad encoder pass that places them."""
    with torch.no_grad():
        mean_detached = encode(x)
    tangents = decoder_probe_tangents(decode, mean_detached, v)
    mean, encoder_tangents = encoder_jvps(encode, x, torch.cat([u.unsqueeze(0), tangents]))
    z = mean + per_row(torch.exp(log_sigma)) * encoder_tangents[0]
    surrogate = log_det_surrogate(v, encoder_tangents[1:])
    return five_terms(x, z, decode(z), surrogate, log_sigma)


def five_terms(x, z, x_hat, surrogate, log_sigma) -> dict[str, torch.Tensor]:
    """The −ELBO's terms from the sample z, its reconstruction g(z) and the surrogate S(x)."""
    D, d = x[0].numel(), z.shape[-1]
    log_s = 2 * log_sigma
    reconstruction = squared_error(x, x_hat) / (2 * torch.exp(log_s))
    prior = 0.5 * (z**2).sum(-1)
    constant = 0.5 * (D - d) * log_s + 0.5 * D * LOG_2PI - 0.5 * d
    return {
        "loss": reconstruction + prior - surrogate + constant,
        "reconstruction": reconstruction,
        "prior": prior,
        "surrogate": surrogate,
        "z": z,
    }
