"""Estimators: Hutchinson probes and the log-det surrogate (spec §1.3), exact encoder Jacobians and the
Gaussian proposals built from them (§2), and the IWAE log-likelihood shared by all four models (§2)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch.func import jacrev, jvp, vmap

LOG_2PI = math.log(2 * math.pi)
Function = Callable[[torch.Tensor], torch.Tensor]


# --- §1.3: the log-determinant surrogate ---------------------------------------------------------------------
def probe_vectors(
    batch_size: int, latent_dim: int, probes: int, generator: torch.Generator, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """The K = `probes` Hutchinson probe vectors V = √d·Q per example, Q the orthonormal factor of a d×K
    standard Gaussian matrix, so E[v vᵀ] = I and K = d gives the exact trace. Returned as (K, B, d): one stacked
    tangent per probe."""
    gaussian = torch.randn(batch_size, latent_dim, probes, generator=generator, device=device)
    return math.sqrt(latent_dim) * orthonormal_columns(gaussian.permute(2, 0, 1))


def orthonormal_columns(columns: torch.Tensor) -> torch.Tensor:
    """Q of the QR decomposition with R's diagonal positive, by classical Gram–Schmidt run twice over the K
    columns (K, B, d): a few elementwise kernels per column for the whole batch. (On CUDA torch.linalg.qr runs one
    solver call per matrix of the batch, which a CUDA graph would have to replay B times.) One pass loses
    orthogonality as the columns' condition number grows, which it does as K nears d (modified Gram–Schmidt: errors
    of 7·10⁻⁴ in float32 at K = d = 8); the second pass restores it to round-off ("twice is enough"). Q's column
    signs may differ from LAPACK's convention, which no estimate sees: every probe enters S quadratically."""
    basis = columns[:1] / columns[:1].norm(dim=-1, keepdim=True)
    for column in columns[1:]:
        for _ in range(2):
            column = column - ((basis * column).sum(-1, keepdim=True) * basis).sum(0)
        basis = torch.cat([basis, (column / column.norm(dim=-1, keepdim=True)).unsqueeze(0)])
    return basis


def decoder_jvps(decode: Function, z: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """g(z), differentiable (the reconstruction), and SG(J_g(z)·v_k) for all K probe vectors v (K, B, d): one
    decoder pass whose primal is computed once and reused (§1.3)."""
    x_hat, tangents = vmap(lambda v_k: jvp(decode, (z,), (v_k,)), out_dims=(None, 0))(v)
    return x_hat, tangents.detach()


def decoder_probe_tangents(decode: Function, z: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """SG(J_g(z)·v_k) for all K probe vectors v at once (forward mode, K tangents batched by vmap);
    (K, B, *x_shape)."""
    z = z.detach()
    with torch.no_grad():
        return vmap(lambda v_k: jvp(decode, (z,), (v_k,))[1])(v)


def encoder_jvps(encode: Function, x: torch.Tensor, tangents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """f(x) (computed once) and J_f(x)·t for a stack of data-space tangents t: (T, B, *x_shape) → (T, B, d).
    Both stay differentiable w.r.t. the encoder's parameters."""
    return vmap(lambda t: jvp(encode, (x,), (t,)), out_dims=(None, 0))(tangents)


def encoder_vjps(z: torch.Tensor, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """v_kᵀ·J_f(x) for the K probe vectors v (K, B, d), (K, B, *x_shape), by reverse mode from an encoder
    output z = f(x) that is already in the graph (`x` requires grad); kept differentiable (create_graph) so that
    the loss's backward differentiates it: spec §1.3's VJP form."""
    if v.shape[0] == 1:
        return torch.autograd.grad(z, x, v[0], create_graph=True)[0].unsqueeze(0)
    return torch.autograd.grad(z, x, v, create_graph=True, is_grads_batched=True)[0]


def log_det_surrogate(left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    """S(x) = (1/K) Σ_k v_kᵀ · J_f(x) · SG(J_g(f(x))·v_k), per example, from the K factors of either form:
    forward (`left` = V, `right` = J_f·w_k) or reverse (`left` = v_kᵀJ_f, `right` = w_k), w_k = SG(J_g v_k);
    both (K, B, ...). ∇_θ S = tr(∂J_f · J_g), the gradient of ½·log det(J_f J_fᵀ) when J_g = J_f⁺.
    The *value* of S means nothing: never report it as a log-det.
    """
    return (left * right).flatten(2).sum(-1).mean(0)


# Where the encoder product v_kᵀ·J_f·w_k comes from (same value and gradient, different cost). Forward mode
# pushes the K tangents w_k through the encoder in one batched pass, but needs f(x) before it can form them
# (FIF: a second encoder primal; FIVE at the mean: a no-grad encoder pass), and PyTorch's forward-mode rule
# for a linear or conv layer also multiplies by an all-zero weight tangent. Reverse mode reuses the loss's
# encoder pass, but batches K probes through a vmapped double backward, which conv layers do poorly.
# Measured (benchmarks/README.md, CPU, d = 16): FIF is faster in reverse mode at every K up to 16 on the MLP
# and up to 2 on the conv net; FIVE at the mean in forward mode (its sampling tangent u needs a forward pass
# anyway, and the probes ride along); FIVE at the sample needs z before its tangents, so reverse mode.
FIF_REVERSE_MODE_MAX_PROBES = {"mlp": 16, "conv": 2}


def choose_encoder_product(
    model: str, probes: int, architecture: str = "mlp", surrogate_point: str | None = None, compiled: bool = False
) -> str:
    """The faster encoder product for this model, budget K and trunk. Compiled objectives take forward mode:
    torch.compile does not differentiate twice, which the reverse-mode product needs."""
    if compiled:
        return "forward"
    if model == "fif":
        return "reverse" if probes <= FIF_REVERSE_MODE_MAX_PROBES[architecture] else "forward"
    return "reverse" if surrogate_point == "sample" else "forward"


# --- §2: exact Jacobians and Gaussian proposals --------------------------------------------------------------
def encoder_jacobian(encode: Function, x: torch.Tensor) -> torch.Tensor:
    """J_f(x) for every example, (B, d, D), by reverse mode (d VJPs per example, vmapped over the batch)."""

    def single(example: torch.Tensor) -> torch.Tensor:
        return encode(example.unsqueeze(0)).squeeze(0)

    jacobian = vmap(jacrev(single))(x)
    return jacobian.flatten(2)


def jacobian_covariance_scale_tril(jacobian: torch.Tensor, log_sigma: torch.Tensor) -> torch.Tensor:
    """Cholesky factor of s·(C + δI), C = J_f J_fᵀ, δ = 1e-6·tr(C)/d, in float64 (spec §2, §5)."""
    j = jacobian.to(torch.float64)
    c = j @ j.transpose(-1, -2)
    d = c.shape[-1]
    delta = 1e-6 * c.diagonal(dim1=-2, dim2=-1).sum(-1) / d
    c = c + delta[:, None, None] * torch.eye(d, dtype=c.dtype, device=c.device)
    return torch.exp(log_sigma.to(torch.float64)) * torch.linalg.cholesky(c)


def no_cholesky_factor(error: torch.linalg.LinAlgError) -> str:
    """Why a FIF/FIVE posterior has no likelihood bound: s·(C + δI) is not positive definite where J_f is 0 (an
    encoder saturated flat: C = 0 and δ with it) or not finite."""
    return (
        "its posterior covariance s·J_f J_fᵀ has no Cholesky factor: J_f is 0 or not finite at some example "
        f"({str(error).splitlines()[0][:200]})"
    )


@dataclass
class GaussianPosterior:
    """q(z|x) = N(mean, L Lᵀ) per example: mean (B, d), scale_tril L (B, d, d), float64."""

    mean: torch.Tensor
    scale_tril: torch.Tensor

    @property
    def covariance(self) -> torch.Tensor:
        return self.scale_tril @ self.scale_tril.transpose(-1, -2)

    def sample(self, samples: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """z = mean + L ε for `samples` draws, (N, B, d), and log q(z|x), (N, B)."""
        eps = torch.randn(
            (samples, *self.mean.shape), generator=generator, device=self.mean.device, dtype=self.mean.dtype
        )
        z = self.mean + (self.scale_tril @ eps.unsqueeze(-1)).squeeze(-1)
        log_det = torch.log(self.scale_tril.diagonal(dim1=-2, dim2=-1)).sum(-1)
        log_q = -0.5 * self.mean.shape[-1] * LOG_2PI - log_det - 0.5 * (eps**2).sum(-1)
        return z, log_q


# --- §2: IWAE ------------------------------------------------------------------------------------------------
@dataclass
class IWAEResult:
    log_likelihood: torch.Tensor  # log p̂(x) = logsumexp_n w_n − log N, (B,)
    elbo: torch.Tensor  # mean_n w_n (N = 1 would be the usual ELBO), (B,)
    effective_sample_size: torch.Tensor  # (Σ w)² / Σ w² of the normalised weights, (B,)


def iwae_log_likelihood(
    x: torch.Tensor,
    posterior: GaussianPosterior,
    log_joint: Callable,
    samples: int,
    generator: torch.Generator,
    chunk_size: int = 128,
    on_chunk: Callable[[int], None] | None = None,
) -> IWAEResult:
    """IWAE with N = `samples` draws from `posterior`, chunked over N so memory does not grow with N;
    `on_chunk(done)` after each chunk (progress).

    w_n = log p(x, z_n) − log q(z_n|x) with `log_joint(x, z)` → (B,) = log p(x|z) + log p(z).
    Streams logsumexp(w), logsumexp(2w) and Σw over chunks; all in float64.
    """
    lse_w = torch.full((x.shape[0],), -math.inf, dtype=torch.float64, device=x.device)
    lse_2w = lse_w.clone()
    sum_w = torch.zeros_like(lse_w)
    done = 0
    while done < samples:
        n = min(chunk_size, samples - done)
        z, log_q = posterior.sample(n, generator)
        x_rep = x.unsqueeze(0).expand(n, *x.shape).reshape(n * x.shape[0], *x.shape[1:])
        log_p = log_joint(x_rep, z.reshape(n * x.shape[0], -1)).reshape(n, x.shape[0]).to(torch.float64)
        w = log_p - log_q
        lse_w = torch.logaddexp(lse_w, torch.logsumexp(w, 0))
        lse_2w = torch.logaddexp(lse_2w, torch.logsumexp(2 * w, 0))
        sum_w += w.sum(0)
        done += n
        if on_chunk is not None:
            on_chunk(done)
    return IWAEResult(lse_w - math.log(samples), sum_w / samples, torch.exp(2 * lse_w - lse_2w))
