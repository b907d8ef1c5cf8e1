"""MNIST and CIFAR-10 through torchvision (its own file parsing and integrity checks), offline-safe.

`load_vision_splits` never downloads: if files are missing it raises one DataError naming them and the
`five download` command that fetches them. `download_vision_dataset` is the only code path that touches the
network (torchvision verifies the MD5 checksums of what it fetches).

Splits: `train` = the first n − 10,000 training images, `validation` = the last 10,000 training images,
`test` = the official test set. Images are kept as uint8 (n, C, H, W) and dequantised per batch (256 levels).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from five.base.errors import DataError
from five.base.files import check_output_dir, non_regular_kind
from five.data.catalog import DATA_SHAPES, FILES, VALIDATION_SIZE

# torchvision's MNIST reads these (its pre-0.9 format) instead of the raw files when they are there
LEGACY_MNIST = ("MNIST/processed/training.pt", "MNIST/processed/test.pt")


def _sources() -> dict:
    from torchvision.datasets import CIFAR10, MNIST

    return {"mnist": MNIST, "cifar10": CIFAR10}


def expected_files(name: str, root: Path) -> list[Path]:
    """The files torchvision reads for `name` under `root`."""
    return [Path(root) / file for file in FILES[name]]


def download_command(name: str, root: Path) -> str:
    return f"five download --dataset {name} --data-dir {root}"


def _images(source):
    """torchvision's arrays as uint8 (n, C, H, W): MNIST holds (n, H, W) tensors, CIFAR (n, H, W, C) arrays."""
    import torch

    data = source.data
    if isinstance(data, torch.Tensor):
        return data.unsqueeze(1).contiguous()
    return torch.from_numpy(data).permute(0, 3, 1, 2).contiguous()


def load_vision_splits(name: str, root: Path) -> dict:
    """The train/validation/test images (uint8 tensors) of `name` in `root`, or one DataError naming what is
    missing or damaged."""
    for path in expected_files(name, root):
        kind = non_regular_kind(path)
        if kind is not None:
            raise DataError(
                f"{path} is {kind}, not a data file; fetch {name} again with `{download_command(name, root)}`"
            )
    legacy = [Path(root) / file for file in LEGACY_MNIST]
    if name == "mnist" and all(path.exists() for path in legacy):  # torchvision reads them only where both are
        raise DataError(
            f"{legacy[0]} is torchvision's old processed MNIST, which it would read instead of the raw files: "
            "move MNIST/processed away"
        )
    missing = [path for path in expected_files(name, root) if not path.is_file()]
    if missing:
        listed = ", ".join(str(path.relative_to(root)) for path in missing)
        raise DataError(
            f"{name} is not in {root} (missing {listed}); training never downloads: fetch it on a "
            f"machine with internet with `{download_command(name, root)}`"
        )
    source = _sources()[name]
    try:
        train, test = source(str(root), train=True), source(str(root), train=False)
    except Exception as error:  # its integrity check, or its parser on a damaged file (ValueError, KeyError, …)
        cause = " ".join(str(error).split()) or type(error).__name__
        raise DataError(
            f"{name} in {root} is corrupted ({cause}); fetch it again with `{download_command(name, root)}`"
        ) from None
    images = _images(train)
    for split, array in (("training", images), ("test", _images(test))):
        if tuple(array.shape[1:]) != DATA_SHAPES[name]:
            raise DataError(
                f"{name} in {root} has {split} images of shape {tuple(array.shape[1:])}, not {name}'s "
                f"{DATA_SHAPES[name]}; fetch it again with `{download_command(name, root)}`"
            )
    if images.shape[0] <= VALIDATION_SIZE:
        raise DataError(
            f"{name} in {root} has {images.shape[0]} training images, too few for a "
            f"{VALIDATION_SIZE}-image validation split"
        )
    return {"train": images[:-VALIDATION_SIZE], "validation": images[-VALIDATION_SIZE:], "test": _images(test)}


def download_vision_dataset(
    name: str, root: Path, origin: str = "--data-dir", log: Callable[[str], None] = print
) -> list[Path]:
    """Fetch `name` into `root` (named `origin` in messages: what chose it) with torchvision (checksums
    verified); returns the files now present."""
    if name not in FILES:
        raise DataError(f"cannot download {name!r}: only {', '.join(FILES)} are downloadable")
    check_output_dir(root, origin)
    root.mkdir(parents=True, exist_ok=True)
    log(f"downloading {name} into {root} (torchvision verifies the checksums)")
    for train in (True, False):
        try:
            _sources()[name](str(root), train=train, download=True)
        except Exception as error:  # network or checksum failure: name it, keep it one line
            message = " ".join(str(error).split())
            raise DataError(f"downloading {name} into {root} failed: {message}") from None
    return expected_files(name, root)
