"""The synthetic curved manifold: a data set whose generating density and true posterior are known.

Generating model: z ~ N(0, I₂), x = A·φ(z) + σ₀·ε, ε ~ N(0, I_D), with a fixed curved feature map φ and a
fixed A with orthonormal columns. Its posterior p(z|x) is not diagonal and its principal axes turn from
point to point (φ couples z₁ and z₂ through cos(z₁ + z₂)), which is what a diagonal VAE cannot follow.

The true posterior is computed numerically by quadrature on a fine 2-d grid around (Aᵀx)₁,₂ (where the
mode lies, since φ₁ = z₁ and φ₂ = z₂ are observed with noise σ₀). Learned models have their own latent
coordinates, so posteriors are compared in data space: Cov_q[g(z)] against Cov_p[A·φ(z)], the spread of the
noise-free point the posterior allows, which does not depend on how a model parameterises its latent.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

LATENT_DIM = 2
DATA_DIM = 10
NOISE_STD = 0.1
SIZES = {"train": 8000, "validation": 1000, "test": 2000}
GRID_POINTS = 161  # per axis
GRID_HALF_WIDTH = 0.8  # ≥ 6 posterior standard deviations; `mass_on_edge` checks the cover


def features(z: torch.Tensor) -> torch.Tensor:
    """φ(z): a smooth curved map ℝ² → ℝ⁵."""
    z1, z2 = z[..., 0], z[..., 1]
    return torch.stack([z1, z2, torch.sin(2 * z1), torch.sin(2 * z2), 2 * torch.cos(z1 + z2)], dim=-1)


def mixing() -> torch.Tensor:
    """A (D × 5) with orthonormal columns, fixed by a seed so that every run sees the same manifold."""
    gaussian = torch.randn(DATA_DIM, 5, generator=torch.Generator().manual_seed(12345), dtype=torch.float64)
    return torch.linalg.qr(gaussian).Q


def manifold_point(z: torch.Tensor) -> torch.Tensor:
    """The noise-free point A·φ(z)."""
    return features(z.to(torch.float64)) @ mixing().T


def log_joint(x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """log p(x, z) = log N(x; A·φ(z), σ₀² I) + log N(z; 0, I), in nats."""
    x, z = x.to(torch.float64), z.to(torch.float64)
    residual = ((x - manifold_point(z)) ** 2).sum(-1)
    log_likelihood = -0.5 * DATA_DIM * math.log(2 * math.pi * NOISE_STD**2) - residual / (2 * NOISE_STD**2)
    return log_likelihood + (-0.5 * LATENT_DIM * math.log(2 * math.pi) - 0.5 * (z**2).sum(-1))


def sample(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(x, z) from the generating model, float64."""
    z = torch.randn(n, LATENT_DIM, generator=generator, dtype=torch.float64)
    noise = torch.randn(n, DATA_DIM, generator=generator, dtype=torch.float64)
    return manifold_point(z) + NOISE_STD * noise, z


@dataclass
class TruePosterior:
    """Moments of p(z|x) and log p(x) per example (float64), computed by quadrature."""

    log_likelihood: torch.Tensor  # (B,)
    mean: torch.Tensor  # (B, 2)
    covariance: torch.Tensor  # (B, 2, 2)
    data_covariance: torch.Tensor  # Cov_p[A·φ(z)], (B, D, D)
    mass_on_edge: torch.Tensor  # posterior mass on the grid's border, ≈ 0 when the grid covers it, (B,)


def _quadrature(x: torch.Tensor) -> dict[str, torch.Tensor]:
    offsets = torch.linspace(-GRID_HALF_WIDTH, GRID_HALF_WIDTH, GRID_POINTS, dtype=torch.float64)
    grid = torch.stack(torch.meshgrid(offsets, offsets, indexing="ij"), -1).reshape(-1, 2)  # (G, 2)
    centre = (x @ mixing())[:, :LATENT_DIM]  # (B, 2): the observed z₁, z₂
    z = centre[:, None, :] + grid[None]  # (B, G, 2)
    log_weights = log_joint(x[:, None, :], z)  # (B, G)
    cell_area = (offsets[1] - offsets[0]) ** 2
    weights = torch.softmax(log_weights, 1)
    edge = (grid.abs() >= GRID_HALF_WIDTH - 1e-12).any(-1)
    mean = (weights[..., None] * z).sum(1)
    centred = z - mean[:, None, :]
    points = manifold_point(z)  # (B, G, D)
    centred_points = points - (weights[..., None] * points).sum(1, keepdim=True)
    return {
        "log_likelihood": torch.logsumexp(log_weights, 1) + torch.log(cell_area),
        "mean": mean,
        "covariance": torch.einsum("bg,bgi,bgj->bij", weights, centred, centred),
        "data_covariance": torch.einsum("bg,bgi,bgj->bij", weights, centred_points, centred_points),
        "mass_on_edge": weights[:, edge].sum(1),
    }


def true_posterior(x: torch.Tensor, chunk: int = 64) -> TruePosterior:
    """p(z|x) for a batch of x, in chunks of `chunk` examples to bound memory."""
    parts = [_quadrature(part.to(torch.float64)) for part in x.split(chunk)]
    return TruePosterior(**{name: torch.cat([part[name] for part in parts]) for name in parts[0]})


def normalised_frobenius_error(estimate: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """‖estimate − truth‖_F / ‖truth‖_F per example."""
    return torch.linalg.matrix_norm(estimate - truth) / torch.linalg.matrix_norm(truth)


def generate_splits(seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {split: sample(n, generator)[0].float() for split, n in SIZES.items()}
