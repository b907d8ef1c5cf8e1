"""Data sets: a registry name -> loader. Loaders return tensors; dequantisation happens per batch (spec §2).

Discrete data are stored as integer levels n in {0, …, L-1} (uint8 where L <= 256) and become model input
x = (n + u) / L with u ~ U[0,1)^D when a batch is drawn; continuous data are used as they are.
MNIST and CIFAR-10 (five.data.vision) read torchvision's files from a data directory and never download.
"""

from __future__ import annotations

import hashlib
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from five.base.config import DEFAULT_NETWORKS, FLOAT32_MAX, NPZ_HIDDEN_WIDTH
from five.base.errors import DataError
from five.base.files import (
    DATA_FINGERPRINT,
    MOVE_ASIDE_ADVICE,
    TRAIN_JSON,
    check_path,
    non_regular_kind,
    read_train_record,
)
from five.base.metrics import SPLITS
from five.data.catalog import NPZ_PREFIX, digits_file, resolve_data_dir

SPLIT_SEED = 0  # fixes which examples are train and which are test, independent of the run's seed
DIGITS_SHAPE = (1797, 64)  # images, pixels
REINSTALL_SCIKIT_LEARN = "reinstall it with `pip install --force-reinstall scikit-learn`"

# The collapse metrics are variances over the evaluated examples: one example would count 0 active units.
MIN_EVALUATED_EXAMPLES = 2
UNIT_SPREAD = (0.1, 10.0)  # a continuous npz whose standard deviation lies outside is told of the models' scales


@dataclass
class Dataset:
    name: str
    splits: dict[str, torch.Tensor]  # split name -> (n, *shape), integer levels or floats
    discrete_levels: int | None  # L for discrete data, None for continuous data
    default_architecture: str
    default_hidden_width: int
    fingerprint: str | None = None  # a user's npz: of its contents, so that a run notices the file changed
    unread: tuple[str, ...] = ()  # a user's npz: the arrays it holds that are no split (named where that matters)
    note: str = ""  # a user's npz: what a run on it should know, logged when training or evaluation starts

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
    """Spec §2: x = (n + u) / L, u ~ U[0,1)^D, for discrete data; continuous data pass through. In PyTorch's
    default float type (float32 unless a float64 test sets it)."""
    dtype = torch.get_default_dtype()
    if discrete_levels is None:
        return levels.to(dtype)
    noise = torch.rand(levels.shape, generator=generator, device=levels.device, dtype=dtype)
    return (levels.to(dtype) + noise) / discrete_levels


def _shuffled_split(array: np.ndarray, sizes: dict[str, int]) -> dict[str, torch.Tensor]:
    """A fixed shuffle (SPLIT_SEED); the named splits take their sizes in order, `train` takes the rest."""
    order = np.random.default_rng(SPLIT_SEED).permutation(len(array))
    splits, start = {}, 0
    for name, size in sizes.items():
        splits[name] = torch.from_numpy(array[order[start : start + size]])
        start += size
    return {"train": torch.from_numpy(array[order[start:]]), **splits}


def load_digits() -> Dataset:
    """scikit-learn's 8x8 handwritten digits (shipped with the package): 1797 images, 17 grey levels 0..16.

    A fixed shuffle (seed 0) puts 360 images in `test`, 180 in `validation` and the other 1257 in `train`.
    """
    path = digits_file()
    if path is None:
        raise DataError("the digits data set ships with scikit-learn, which is not installed: pip install scikit-learn")
    try:
        levels = _digits_levels(path)
    except Exception as error:  # gzip, zlib, a short file, a number that does not parse: the file is damaged
        cause = " ".join(str(error).split())[:300] or type(error).__name__
        what = f"digits file {path} is damaged" if path.exists() else "digits loader failed"  # its fallback's
        raise DataError(f"scikit-learn's {what} ({cause}); {REINSTALL_SCIKIT_LEARN}") from None
    return Dataset("digits", _shuffled_split(levels, {"test": 360, "validation": 180}), 17, *DEFAULT_NETWORKS["digits"])


def _digits_levels(path: Path) -> np.ndarray:
    """The (1797, 64) grey levels 0..16 from scikit-learn's CSV (its last column is the label), checked."""
    kind = non_regular_kind(path)
    if kind is not None:
        raise ValueError(f"it is {kind}, not a file")
    if path.is_file():
        with warnings.catch_warnings():  # numpy warns of an empty file; the shape check below refuses it
            warnings.simplefilter("ignore")
            table = np.loadtxt(path, delimiter=",", ndmin=2)
    else:  # a scikit-learn that keeps the file elsewhere: its loader reads the same images, slower
        from sklearn.datasets import load_digits as sklearn_digits

        table = np.column_stack([sklearn_digits().data, np.zeros(DIGITS_SHAPE[0])])
    levels = table[:, :-1]
    if levels.shape != DIGITS_SHAPE or not np.all((levels == np.round(levels)) & (levels >= 0) & (levels <= 16)):
        raise ValueError(f"expected {DIGITS_SHAPE[0]} rows of {DIGITS_SHAPE[1]} levels 0..16 and a label")
    return levels.astype(np.uint8)


def load_manifold() -> Dataset:
    """Continuous synthetic data on a curved 2-d manifold in 10 dims with a known density and posterior."""
    from five.data import manifold

    return Dataset("manifold", manifold.generate_splits(SPLIT_SEED), None, *DEFAULT_NETWORKS["manifold"])


def whole_numbers(array: np.ndarray) -> bool:
    return bool(np.array_equal(array, np.round(array)))


def _continuous_npz_notes(file: Path, arrays: dict[str, np.ndarray]) -> list[str]:
    """What a run on a user's continuous data should know: whole numbers without discrete_levels (a forgotten L,
    most likely), and a spread far from 1, the scale the models' fixed constants are made for."""
    notes = []
    if all(map(whole_numbers, arrays.values())):
        notes.append(
            f"note: {file} holds whole numbers only and no discrete_levels: they are modelled as continuous data "
            "(a density; nats, no bits/dim); for levels 0..L−1, save discrete_levels=L beside them"
        )
    spread = feature_spread(arrays["train"])
    if math.isfinite(spread) and not UNIT_SPREAD[0] <= spread <= UNIT_SPREAD[1]:
        notes.append(
            f"note: {file}'s training data have a spread (root mean square of each feature's standard deviation) "
            f"of {spread:.3g}: FIF's fixed σ, its "
            "training noise and the floor of a learned σ are in the data's units and made for a spread near 1 "
            "(the paper's data lie in [0, 1]); the NLL of data rescaled by a is that in the original units plus "
            "D·log|a| nats"
        )
    return notes


def feature_spread(examples: np.ndarray, at_most: int = 1000) -> float:
    """√(mean over features of their variance over examples), from the first `at_most` examples: the scale each
    data dimension varies on (offsets left out), in float64 without copying a large array whole."""
    sample = examples[:at_most].reshape(min(len(examples), at_most), -1).astype(np.float64)
    return math.sqrt(float(sample.var(axis=0).mean())) if len(sample) > 1 else math.nan  # one example: unknown


def load_npz(path: str) -> Dataset:
    """A user's own `.npz`: `train` and `test` arrays (optionally `validation`) of shape (n, D) or
    (n, C, H, W), and an optional scalar `discrete_levels` L (then values must be integers in 0..L-1 and are
    dequantised; without it the data are continuous)."""
    file = Path(path)
    check_path(file, "npz data file")  # a newline, a NUL, a link loop: one line
    kind = non_regular_kind(file)
    if kind is not None:
        raise DataError(f"npz data file {file} is {kind}, not a file")
    if not file.exists():
        raise DataError(f"npz data file not found: {shown_npz(file)}")
    arrays, levels, unread = _read_npz(file)
    shapes = {split: array.shape for split, array in arrays.items()}
    example_shapes = {shape[1:] for shape in shapes.values()}
    if any(len(shape) not in (2, 4) for shape in shapes.values()) or len(example_shapes) != 1:
        raise DataError(f"{file}: the splits must all be (n, D) or (n, C, H, W) of equal example shape, got {shapes}")
    if levels is not None and levels < 2:
        raise DataError(f"{file}: discrete_levels={levels}, but discrete data need at least 2 levels")
    if shapes["test"][0] < MIN_EVALUATED_EXAMPLES:
        raise DataError(
            f"{file}: array 'test' holds {shapes['test'][0]} example; the collapse metrics (active units, information "
            f"per direction) are variances over test examples, which need at least {MIN_EVALUATED_EXAMPLES}"
        )
    splits = {}
    for split, array in arrays.items():
        if levels is None:
            splits[split] = torch.from_numpy(array.astype(np.float32))
            continue
        if not whole_numbers(array) or array.min() < 0 or array.max() > levels - 1:
            raise DataError(f"{file}: with discrete_levels={levels}, '{split}' must hold integers in 0..{levels - 1}")
        splits[split] = torch.from_numpy(array.astype(np.uint8 if levels <= 256 else np.int32))
    note = "\n".join(_continuous_npz_notes(file, arrays) if levels is None else [])
    architecture = "conv" if len(shapes["train"]) == 4 else "mlp"
    fingerprint = contents_hash(splits, levels)
    return Dataset(f"{NPZ_PREFIX}{file}", splits, levels, architecture, NPZ_HIDDEN_WIDTH, fingerprint, unread, note)


def contents_hash(splits: dict[str, torch.Tensor], levels: int | None) -> str:
    """SHA-256 of the splits' names, shapes and values and of L: the same data saved again hash the same."""
    digest = hashlib.sha256(repr(levels).encode())
    for name in sorted(splits):
        digest.update(f"{name}{tuple(splits[name].shape)}{splits[name].dtype}".encode())
        digest.update(np.ascontiguousarray(splits[name].numpy()))  # the buffer itself, not a copy
    return digest.hexdigest()


def shown_npz(file: Path) -> str:
    """A user's npz path for a message: a relative one with the folder it was looked up in."""
    return str(file) if file.is_absolute() else f"{file} (in {Path.cwd()})"


def check_same_data(dataset: Dataset, run_dir: Path) -> None:
    """A run trained on a user's npz goes on, or is evaluated, only on the contents it was trained on (its
    train.json's DATA_FINGERPRINT; none recorded, or a built-in data set: nothing to compare)."""
    record = Path(run_dir) / TRAIN_JSON
    if dataset.fingerprint is None or not record.exists():
        return
    recorded = read_train_record(record).get(DATA_FINGERPRINT)
    if recorded is not None and recorded != dataset.fingerprint:
        raise DataError(
            f"{run_dir} was trained on other contents of {shown_npz(Path(dataset.name.removeprefix(NPZ_PREFIX)))} "
            f"(the file changed since): restore that file, or {MOVE_ASIDE_ADVICE}"
        )


# x = (n + u)/L in float32: below 2^16 levels n + u keeps u to 2^-8 or finer; at 2^24 and beyond float32 keeps
# none of u, x is a lattice, and the dequantised bound (bits/dim) would not hold
MAX_DISCRETE_LEVELS = 2**16


def _read_npz(file: Path) -> tuple[dict[str, np.ndarray], int | None, tuple[str, ...]]:
    """The split arrays and discrete_levels of a user's .npz, and the names of the arrays it does not read, each
    problem one DataError naming the file: not a readable zip, pickled objects (never loaded), non-numeric,
    empty or non-finite arrays."""
    import zipfile

    if not zipfile.is_zipfile(file):  # np.load would try it as a pickle
        raise DataError(f"{file} is not a readable .npz (not a zip archive: truncated or another format)")
    try:
        with np.load(file, allow_pickle=False) as archive:
            missing = [key for key in ("train", "test") if key not in archive.files]
            if missing:
                raise DataError(f"{file} lacks the array(s) {', '.join(missing)} (it has {', '.join(archive.files)})")
            arrays = {split: archive[split] for split in SPLITS if split in archive.files}
            levels = archive["discrete_levels"] if "discrete_levels" in archive.files else None
            unread = tuple(name for name in archive.files if name not in (*arrays, "discrete_levels"))
    except DataError:
        raise
    except ValueError as error:
        if "allow_pickle" in str(error):
            raise DataError(f"{file} holds pickled Python objects, which are never loaded; save numeric arrays")
        raise DataError(f"{file} is not a readable .npz ({error})") from None
    except Exception as error:  # zipfile.BadZipFile, EOFError, OSError, …: truncated or not an archive
        raise DataError(f"{file} is not a readable .npz ({type(error).__name__}: {error})") from None
    for name, value in (*arrays.items(), ("discrete_levels", levels)):  # numpy hands a member without npy header
        if value is not None and not isinstance(value, np.ndarray):  # over as bytes
            raise DataError(f"{file} is not a readable .npz (its member '{name}' is not a saved numpy array)")
    for split, array in arrays.items():
        _check_numbers(file, split, array)
    if levels is not None:
        if levels.ndim != 0 or levels.dtype.kind not in "iu":
            raise DataError(
                f"{file}: discrete_levels must be one integer, got shape {levels.shape} dtype {levels.dtype}"
            )
        levels = int(levels)
        if levels > MAX_DISCRETE_LEVELS:
            raise DataError(
                f"{file}: discrete_levels {levels} exceeds {MAX_DISCRETE_LEVELS:,}: dequantised in float32, x = (n + u)/L "
                "would keep too little of the noise u for the likelihood bound to hold; save such data as continuous"
            )
    return arrays, levels, unread


def _check_numbers(file: Path, split: str, array: np.ndarray) -> None:
    """One split array of a user's .npz: numeric, not empty, finite, and within float32 (training's precision)."""
    if array.dtype.kind not in "biuf":
        raise DataError(f"{file}: array '{split}' has dtype {array.dtype}; numbers are needed")
    if array.shape[:1] == (0,) or array.size == 0:
        raise DataError(f"{file}: array '{split}' is empty {array.shape}")
    if array.dtype.kind == "f":
        nan, inf = int(np.isnan(array).sum()), int(np.isinf(array).sum())
        if nan or inf:
            raise DataError(
                f"{file}: array '{split}' contains {nan} NaN and {inf} infinite values of {array.size}; clean the data"
            )
        largest = float(np.abs(array).max())
        if largest > FLOAT32_MAX:
            raise DataError(
                f"{file}: array '{split}' holds values up to {largest:.3g}, beyond float32, which training "
                "computes in; rescale the data"
            )


def _vision(name: str) -> Callable[[Path], Dataset]:
    def load(data_dir: Path) -> Dataset:
        from five.data.vision import load_vision_splits  # imports torchvision only when needed

        return Dataset(name, load_vision_splits(name, data_dir), 256, *DEFAULT_NETWORKS[name])

    return load


# name -> loader(data_dir); the data directory matters only to data sets read from files.
REGISTRY: dict[str, Callable[[Path], Dataset]] = {
    "digits": lambda data_dir: load_digits(),
    "manifold": lambda data_dir: load_manifold(),
    "mnist": _vision("mnist"),
    "cifar10": _vision("cifar10"),
}


def dataset_names() -> list[str]:
    return [*REGISTRY, f"{NPZ_PREFIX}PATH"]


def load_dataset(name: str, data_dir: str | Path | None = None) -> Dataset:
    if name.startswith(NPZ_PREFIX):
        return load_npz(name.removeprefix(NPZ_PREFIX))
    if name not in REGISTRY:
        raise DataError(f"unknown dataset {name!r} (choose from {', '.join(dataset_names())})")
    return REGISTRY[name](resolve_data_dir(data_dir))
