"""Shared trunks (spec §4). The four models use the same encoder trunk and decoder; only heads differ.

No BatchNorm anywhere: it couples examples, which breaks per-example Jacobians (vmap/JVP) and likelihoods.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from five.base.errors import ConfigError

CONV_CHANNELS = (32, 64, 128, 256)
RESIDUAL_WIDTH = 512


class ResidualMLP(nn.Module):
    """z + MLP(z) with blocks width→512→512→width (the latent residual MLP of the free-form flow setup)."""

    def __init__(self, width: int, hidden: int = RESIDUAL_WIDTH):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(width, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, width)
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z + self.net(z)


def mlp_encoder_trunk(example_shape: tuple[int, ...], width: int) -> nn.Module:
    """Flat data: D → width → width (SiLU); the model's head maps the width features to its outputs."""
    return nn.Sequential(
        nn.Flatten(), nn.Linear(math.prod(example_shape), width), nn.SiLU(), nn.Linear(width, width), nn.SiLU()
    )


def mlp_decoder(example_shape: tuple[int, ...], latent_dim: int, width: int) -> nn.Module:
    return nn.Sequential(
        nn.Linear(latent_dim, width),
        nn.SiLU(),
        nn.Linear(width, width),
        nn.SiLU(),
        nn.Linear(width, math.prod(example_shape)),
        nn.Unflatten(1, example_shape),
    )


def _conv_sizes(height: int, width: int) -> list[tuple[int, int]]:
    """Spatial sizes after each stride-2 4×4 conv with padding 1."""
    sizes = [(height, width)]
    for _ in CONV_CHANNELS:
        h, w = sizes[-1]
        sizes.append(((h - 2) // 2 + 1, (w - 2) // 2 + 1))
    if min(sizes[-1]) < 1:
        smallest = 2 ** len(CONV_CHANNELS)
        raise ConfigError(
            f"images of {height}×{width} are too small for the {len(CONV_CHANNELS)}-layer conv net (it takes at least "
            f"{smallest}×{smallest}, as (C, H, W)); the MLP (`--architecture mlp`, config `architecture: mlp`) takes any"
        )
    return sizes


def conv_encoder_trunk(example_shape: tuple[int, ...], width: int) -> nn.Module:
    """Images: stride-2 4×4 convs 32→64→128→256, a linear map to `width`, then a residual MLP."""
    channels, height, wide = example_shape
    h, w = _conv_sizes(height, wide)[-1]
    layers: list[nn.Module] = []
    for c_in, c_out in zip((channels, *CONV_CHANNELS), CONV_CHANNELS):
        layers += [nn.Conv2d(c_in, c_out, 4, stride=2, padding=1), nn.SiLU()]
    layers += [nn.Flatten(), nn.Linear(CONV_CHANNELS[-1] * h * w, width), nn.SiLU(), ResidualMLP(width)]
    return nn.Sequential(*layers)


class ConvDecoder(nn.Module):
    """Mirror of the conv encoder: residual MLP on z, linear map to 256×h×w, transposed convs up to the image.

    Each transposed conv is given its target size, so odd sizes (MNIST's 7→3) are restored exactly.
    """

    def __init__(self, example_shape: tuple[int, ...], latent_dim: int):
        super().__init__()
        channels, height, width = example_shape
        self.sizes = _conv_sizes(height, width)[::-1]  # smallest first
        h, w = self.sizes[0]
        self.latent = nn.Sequential(ResidualMLP(latent_dim), nn.Linear(latent_dim, CONV_CHANNELS[-1] * h * w))
        outs = (*CONV_CHANNELS[::-1][1:], channels)
        self.deconvs = nn.ModuleList(
            nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1) for c_in, c_out in zip(CONV_CHANNELS[::-1], outs)
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h, w = self.sizes[0]
        y = nn.functional.silu(self.latent(z)).reshape(z.shape[0], CONV_CHANNELS[-1], h, w)
        for i, deconv in enumerate(self.deconvs):
            y = deconv(y, output_size=self.sizes[i + 1])
            if i < len(self.deconvs) - 1:
                y = nn.functional.silu(y)
        return y


def build_trunks(architecture: str, example_shape: tuple[int, ...], latent_dim: int, width: int):
    """(encoder trunk producing `width` features, decoder ℝ^d → example shape)."""
    if architecture == "mlp":
        return mlp_encoder_trunk(example_shape, width), mlp_decoder(example_shape, latent_dim, width)
    if len(example_shape) != 3:
        raise ConfigError(f"the conv architecture needs (C, H, W) images, the data have shape {example_shape}")
    return conv_encoder_trunk(example_shape, width), ConvDecoder(example_shape, latent_dim)
