"""Image grids of a run (torchvision.utils.save_image): reconstructions and samples from the prior."""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torchvision.utils import save_image

from five.base.errors import FiveError
from five.base.files import IMAGE_NAMES, atomic_write
from five.model.models import Model

GRID_EXAMPLES = 32
GRID_SAMPLES = 64


def as_images(x: torch.Tensor, example_shape: tuple[int, ...]) -> torch.Tensor:
    """(n, C, H, W) for image data; flat data with a square number of dims (digits: 64) become 1×8×8. Images of
    other than 1 or 3 channels show each channel as a grey image of its own (a PNG of 2 or 4 would read the last
    channel as transparency)."""
    if len(example_shape) == 3:
        return x if example_shape[0] in (1, 3) else x.reshape(-1, 1, *example_shape[1:])
    side = math.isqrt(example_shape[0])
    if len(example_shape) == 1 and side * side == example_shape[0]:
        return x.reshape(-1, 1, side, side)
    raise FiveError(f"image grids need images or a square number of dimensions, the data have shape {example_shape}")


def grid_columns(example_shape: tuple[int, ...]) -> int:
    """8 images a row; where an example is shown as its channels in grey (as_images), whole examples a row."""
    channels = example_shape[0] if len(example_shape) == 3 and example_shape[0] not in (1, 3) else 1
    return channels * max(1, 8 // channels)


def write_image_grids(model: Model, x: torch.Tensor, out_dir: Path, generator: torch.Generator) -> list[Path]:
    """`reconstructions.png` (rows of originals above rows of g(E[z|x])) and `samples.png` (g(z), z ~ N(0, I))."""
    out_dir.mkdir(parents=True, exist_ok=True)
    x = x[:GRID_EXAMPLES]
    with torch.no_grad():
        reconstructions = model.decode(model.posterior_mean(x))
        z = torch.randn(GRID_SAMPLES, model.latent_dim, generator=generator, device=x.device)
        samples = model.decode(z)
    shape = model.example_shape
    paths = [out_dir / name for name in IMAGE_NAMES]
    pairs = torch.cat([as_images(x, shape), as_images(reconstructions, shape)]).clamp(0, 1).cpu()
    grids = [pairs, as_images(samples, shape).clamp(0, 1).cpu()]
    columns = grid_columns(shape)
    for path, grid in zip(paths, grids):
        atomic_write(path, lambda file, grid=grid: save_image(grid, file, format="png", nrow=columns, pad_value=1.0))
    return paths
