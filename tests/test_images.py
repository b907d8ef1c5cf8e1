"""Image grids written by `five evaluate --image-dir`."""

import pytest
import torch
from PIL import Image

from five.base.config import TrainConfig
from five.base.errors import FiveError
from five.run.evaluate import evaluate_run
from five.run.images import as_images, grid_columns
from five.run.train import train


def test_digits_grids_hold_originals_reconstructions_and_samples(tmp_path):
    config = TrainConfig(model="vae", dataset="digits", latent_dim=3, epochs=1, hidden_width=32)
    train(config, tmp_path / "run", torch.device("cpu"), log=lambda line: None)
    metrics = evaluate_run(
        tmp_path / "run", torch.device("cpu"), importance_samples=2, log=lambda line: None, image_dir=tmp_path / "grids"
    )
    assert metrics["image_grids"] == [
        str(tmp_path / "grids" / "reconstructions.png"),
        str(tmp_path / "grids" / "samples.png"),
    ]
    # 8 per row with 2-pixel padding: 64 images (32 originals + 32 reconstructions) of 8×8 make 8 rows
    side = 8 * (8 + 2) + 2
    assert Image.open(tmp_path / "grids" / "reconstructions.png").size == (side, side)
    assert Image.open(tmp_path / "grids" / "samples.png").size == (side, side)


def test_non_image_data_cannot_be_drawn_and_fails_before_evaluating(tmp_path):
    with pytest.raises(FiveError, match="need images or a square number"):
        as_images(torch.zeros(2, 10), (10,))
    train(
        TrainConfig(model="vae", dataset="manifold", latent_dim=2, epochs=1, hidden_width=16),
        tmp_path,
        torch.device("cpu"),
        log=lambda line: None,
    )
    lines = []
    with pytest.raises(FiveError, match="need images"):
        evaluate_run(
            tmp_path, torch.device("cpu"), importance_samples=2, log=lines.append, image_dir=tmp_path / "grids"
        )
    assert not any(line.startswith("evaluated batch") for line in lines)


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_images_of_other_than_one_or_three_channels_show_each_channel_in_grey(channels):
    """A PNG of 2 or 4 channels reads the last one as transparency (2-channel samples rendered nearly blank)."""
    x = torch.rand(5, channels, 6, 7)
    images = as_images(x, (channels, 6, 7))
    if channels in (1, 3):
        assert images is x
    else:
        assert images.shape == (5 * channels, 1, 6, 7) and torch.equal(images[1, 0], x[0, 1])
    columns = grid_columns((channels, 6, 7))  # a row holds whole examples: no example wraps onto the next row
    assert columns % (1 if channels in (1, 3) else channels) == 0 and columns >= 8 // channels


def test_an_example_of_many_channels_never_wraps_across_rows():
    assert [grid_columns((c, 8, 8)) for c in (1, 2, 3, 4, 5, 9)] == [8, 8, 8, 8, 5, 9]
    assert grid_columns((64,)) == 8  # flat data drawn as one grey square
