"""Data sets: a registry name -> loader. Loaders return tensors; dequantisation happens per batch (spec §2).

Discrete data are stored as integer levels n in {0, …, L-1} (uint8 where L <= 256) and become model input
x = (n + u) / L with u ~ U[0,1)^D when a batch is drawn; continuous data are used as they are.
MNIST and CIFAR-10 slot into `REGISTRY` as further loaders (a later issue).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from five.errors import DataError

SPLIT_SEED = 0  # fixes which examples are train and which are test, independent of the run's seed


@dataclass
class Dataset:
    name: str
    splits: dict[str, torch.Tensor]  # split name -> (n, *shape), integer levels or floats
    discrete_levels: int | None  # L for discrete data, None for continuous data
    default_architecture: str
    default_hidden_width: int

    @property
    def example_shape(self) -> tuple[int, ...]:
        return tuple(self.splits["train"].shape[1:])

    @property
    def dim(self) -> int:
        """D, the number of dimensions of one example."""
        return math.prod(self.example_shape)

    def split(self, name: str) -> torch.Tensor:
        if name not in self.splits:
            raise DataError(f"data set {self.name!r} has no split {name!r} (it has {', '.join(self.splits)})")
        return self.splits[name]


def dequantize(levels: torch.Tensor, discrete_levels: int | None, generator: torch.Generator) -> torch.Tensor:
    """Spec §2: x = (n + u) / L, u ~ U[0,1)^D, for discrete data; continuous data pass through as float32."""
    if discrete_levels is None:
        return levels.float()
    noise = torch.rand(levels.shape, generator=generator, device=levels.device)
    return (levels.float() + noise) / discrete_levels


def _shuffled_split(array: np.ndarray, n_test: int) -> dict[str, torch.Tensor]:
    order = np.random.default_rng(SPLIT_SEED).permutation(len(array))
    return {"train": torch.from_numpy(array[order[n_test:]]), "test": torch.from_numpy(array[order[:n_test]])}


def load_digits() -> Dataset:
    """scikit-learn's 8x8 handwritten digits (shipped with the package): 1797 images, 17 grey levels 0..16.

    A fixed shuffle (seed 0) puts 360 images (20%) in `test`, the other 1437 in `train`.
    """
    from sklearn.datasets import load_digits as sklearn_digits

    levels = sklearn_digits().data.astype(np.uint8)  # (1797, 64), values 0..16
    return Dataset("digits", _shuffled_split(levels, n_test=360), 17, "mlp", 256)


# --- The synthetic curved manifold -------------------------------------------------------------------------
# Generating model: z ~ N(0, I_2), x = A·φ(z) + σ₀·ε with ε ~ N(0, I_D), a fixed curved feature map φ and a
# fixed A with orthonormal columns. p(z) and p(x|z) are closed form, so the density is known exactly.
MANIFOLD_LATENT_DIM = 2
MANIFOLD_DATA_DIM = 10
MANIFOLD_NOISE_STD = 0.05
MANIFOLD_SIZES = {"train": 8000, "test": 2000}


def manifold_features(z: torch.Tensor) -> torch.Tensor:
    """φ(z): a smooth curved map ℝ² → ℝ⁵ (its curvature is what a diagonal posterior cannot follow)."""
    z1, z2 = z[..., 0], z[..., 1]
    return torch.stack([z1, z2, torch.sin(2 * z1), torch.sin(2 * z2), torch.cos(z1 + z2)], dim=-1)


def manifold_mixing() -> torch.Tensor:
    """A (D × 5) with orthonormal columns, fixed by a seed so that every run sees the same manifold."""
    gaussian = torch.randn(MANIFOLD_DATA_DIM, 5, generator=torch.Generator().manual_seed(12345), dtype=torch.float64)
    return torch.linalg.qr(gaussian).Q


def manifold_mean(z: torch.Tensor) -> torch.Tensor:
    """The noise-free manifold point A·φ(z)."""
    return manifold_features(z.to(torch.float64)) @ manifold_mixing().T


def manifold_log_joint(x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """log p(x, z) = log N(x; A·φ(z), σ₀² I) + log N(z; 0, I) of the generating model, in nats."""
    x, z = x.to(torch.float64), z.to(torch.float64)
    D, d = x.shape[-1], z.shape[-1]
    residual = ((x - manifold_mean(z)) ** 2).sum(-1)
    log_likelihood = -0.5 * D * math.log(2 * math.pi * MANIFOLD_NOISE_STD**2) - residual / (2 * MANIFOLD_NOISE_STD**2)
    log_prior = -0.5 * d * math.log(2 * math.pi) - 0.5 * (z**2).sum(-1)
    return log_likelihood + log_prior


def load_manifold() -> Dataset:
    """Continuous synthetic data on a curved 2-d manifold in 10 dims (see `manifold_log_joint`)."""
    generator = torch.Generator().manual_seed(SPLIT_SEED)
    splits = {}
    for split, n in MANIFOLD_SIZES.items():
        z = torch.randn(n, MANIFOLD_LATENT_DIM, generator=generator, dtype=torch.float64)
        noise = torch.randn(n, MANIFOLD_DATA_DIM, generator=generator, dtype=torch.float64)
        splits[split] = (manifold_mean(z) + MANIFOLD_NOISE_STD * noise).float()
    return Dataset("manifold", splits, None, "mlp", 128)


def load_npz(path: str) -> Dataset:
    """A user's own `.npz`: `train` and `test` arrays of shape (n, D) or (n, C, H, W), optional scalar
    `discrete_levels` L (then values must be integers in 0..L-1 and are dequantised; else continuous)."""
    file = Path(path)
    if not file.is_file():
        raise DataError(f"npz data file not found: {file}")
    with np.load(file) as archive:
        missing = [key for key in ("train", "test") if key not in archive.files]
        if missing:
            raise DataError(f"{file} lacks the array(s) {', '.join(missing)} (it has {', '.join(archive.files)})")
        arrays = {split: archive[split] for split in ("train", "test")}
        levels = int(archive["discrete_levels"]) if "discrete_levels" in archive.files else None
    shapes = {split: array.shape for split, array in arrays.items()}
    if any(len(shape) not in (2, 4) for shape in shapes.values()) or shapes["train"][1:] != shapes["test"][1:]:
        raise DataError(f"{file}: train/test must both be (n, D) or (n, C, H, W) of equal example shape, got {shapes}")
    splits = {}
    for split, array in arrays.items():
        if levels is None:
            splits[split] = torch.from_numpy(array.astype(np.float32))
            continue
        if levels < 2 or not np.all(array == np.round(array)) or array.min() < 0 or array.max() > levels - 1:
            raise DataError(f"{file}: with discrete_levels={levels}, '{split}' must hold integers in 0..{levels - 1}")
        splits[split] = torch.from_numpy(array.astype(np.uint8 if levels <= 256 else np.int32))
    architecture = "conv" if len(shapes["train"]) == 4 else "mlp"
    return Dataset(f"npz:{file}", splits, levels, architecture, 512)


REGISTRY: dict[str, Callable[[], Dataset]] = {"digits": load_digits, "manifold": load_manifold}


def dataset_names() -> list[str]:
    return [*REGISTRY, "npz:PATH"]


def load_dataset(name: str) -> Dataset:
    if name.startswith("npz:"):
        return load_npz(name.removeprefix("npz:"))
    if name not in REGISTRY:
        raise DataError(f"unknown dataset {name!r} (choose from {', '.join(dataset_names())})")
    return REGISTRY[name]()
