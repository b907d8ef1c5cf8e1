"""What is known of each built-in data set without loading it: the shape of one example, and the files and
split sizes of the torchvision data sets. Free of torch: the workflow checks configs and names input files with
it while it parses."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from five.base.files import check_path

NPZ_PREFIX = "npz:"  # a data set of one's own: npz:PATH names the .npz file
DATA_DIR_VARIABLE = "FIVE_DATA_DIR"
DATA_SHAPES = {"digits": (64,), "manifold": (10,), "mnist": (1, 28, 28), "cifar10": (3, 32, 32)}
VALIDATION_SIZE = 10_000
OFFICIAL_SIZES = {"mnist": (60_000, 10_000), "cifar10": (50_000, 10_000)}  # (training, test) images
# The files torchvision's MNIST and CIFAR10 read, relative to the data root (tests check this against
# torchvision's own lists). Kept free of imports so that the workflow can name them without loading torch.
FILES = {
    "mnist": [
        f"MNIST/raw/{name}"
        for name in (
            "train-images-idx3-ubyte",
            "train-labels-idx1-ubyte",
            "t10k-images-idx3-ubyte",
            "t10k-labels-idx1-ubyte",
        )
    ],
    "cifar10": [
        f"cifar-10-batches-py/{name}"
        for name in (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta")
    ],
}


def digits_file() -> Path | None:
    """The CSV of scikit-learn's digits, located without importing scikit-learn (1.5 s of every job's start-up,
    which its loader would cost): its last column is the label. None where scikit-learn is not installed."""
    package = importlib.util.find_spec("sklearn")
    if package is None:
        return None
    return Path(package.submodule_search_locations[0]) / "datasets" / "data" / "digits.csv.gz"


def data_dir_choice(data_dir: str | Path | None = None) -> tuple[Path, str]:
    """The data root and what chose it, as a message names it: an explicit value (config or --data-dir), else
    $FIVE_DATA_DIR, else ./data."""
    if data_dir is not None:
        return Path(data_dir), "--data-dir"
    if os.environ.get(DATA_DIR_VARIABLE):
        return Path(os.environ[DATA_DIR_VARIABLE]), f"${DATA_DIR_VARIABLE}"
    return Path("data"), "the default data folder"


def resolve_data_dir(data_dir: str | Path | None = None) -> Path:
    return data_dir_choice(data_dir)[0]


def input_files(name: str, data_dir: str | Path | None = None) -> list[Path]:
    """The files a job on the data set `name` reads (which no output of it may replace): a user's npz, the
    torchvision files under the data root, scikit-learn's digits; none for the generated manifold."""
    if name.startswith(NPZ_PREFIX):
        file = Path(name.removeprefix(NPZ_PREFIX))
        check_path(file, "npz data file")  # before any resolve(), which on Python < 3.13 raises on a link loop
        return [file]
    if name in FILES:
        return [resolve_data_dir(data_dir) / file for file in FILES[name]]
    return [digits_file()] if name == "digits" and digits_file() is not None else []
