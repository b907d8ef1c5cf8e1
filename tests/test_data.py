"""The data registry: digits, the synthetic manifold, user .npz files, dequantisation."""

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from five.base.errors import DataError
from five.data.catalog import resolve_data_dir
from five.data.datasets import dequantize, load_dataset


def test_digits_are_17_level_integers_split_1257_180_360():
    digits = load_dataset("digits")
    assert digits.discrete_levels == 17 and digits.example_shape == (64,) and digits.dim == 64
    sizes = {name: digits.split(name).shape for name in ("train", "validation", "test")}
    assert sizes == {"train": (1257, 64), "validation": (180, 64), "test": (360, 64)}
    assert digits.split("train").dtype == torch.uint8
    assert int(digits.split("train").max()) == 16 and int(digits.split("test").min()) == 0
    # the split is fixed: loading twice gives the same test set
    assert torch.equal(load_dataset("digits").split("test"), digits.split("test"))


def test_digits_read_from_scikit_learns_file_are_its_loaders_images_with_or_without_the_file(monkeypatch):
    from sklearn.datasets import load_digits as sklearn_digits

    import five.data.datasets as datasets

    images = torch.from_numpy(sklearn_digits().data.astype(np.uint8))
    fast = load_dataset("digits")
    assert torch.equal(
        torch.cat([fast.split(name) for name in ("train", "validation", "test")]).sort(0)[0], images.sort(0)[0]
    )  # each pixel takes the loader's 1797 values (columns sorted; the exact rows: the fallback's splits below)
    monkeypatch.setattr(datasets, "digits_file", lambda: Path("/nonexistent/digits.csv.gz"))
    slow = load_dataset("digits")
    for name in ("train", "validation", "test"):
        assert torch.equal(slow.split(name), fast.split(name)), name
    monkeypatch.setattr(datasets, "digits_file", lambda: None)  # scikit-learn not installed
    with pytest.raises(DataError, match="scikit-learn, which is not installed"):
        load_dataset("digits")


def _gzip_text(text: str) -> bytes:
    import gzip

    return gzip.compress(text.encode())


def _digits_csv(rows: int = 1797, value: str = "3") -> str:
    return "".join(",".join([value] * 64 + ["7"]) + "\n" for _ in range(rows))


DAMAGED_DIGITS = {
    "truncated": lambda: _gzip_text(_digits_csv())[:500],
    "not gzip": lambda: b"these are not the digits",
    "empty gzip": lambda: _gzip_text(""),
    "rows missing": lambda: _gzip_text(_digits_csv(rows=1000)),
    "a level above 16": lambda: _gzip_text(_digits_csv(value="17")),
    "a fraction": lambda: _gzip_text(_digits_csv(value="2.5")),
    "not a number": lambda: _gzip_text(_digits_csv(value="x")),
    "a FIFO": None,
}


@pytest.mark.parametrize("damage", DAMAGED_DIGITS)
def test_a_damaged_digits_file_is_one_data_error_naming_it_and_the_fix(monkeypatch, tmp_path, recwarn, damage):
    """scikit-learn's digits.csv.gz damaged in any way: one DataError naming the file and the reinstall, never a
    numpy/gzip traceback or warning, nor a data set of wrong shape or levels."""
    import os

    import five.data.datasets as datasets

    path = tmp_path / "digits.csv.gz"
    if DAMAGED_DIGITS[damage] is None:
        os.mkfifo(path)  # read, it would block forever
    else:
        path.write_bytes(DAMAGED_DIGITS[damage]())
    monkeypatch.setattr(datasets, "digits_file", lambda: path)
    with pytest.raises(DataError, match=f"digits file {path} is damaged .*pip install --force-reinstall scikit-learn"):
        load_dataset("digits")
    assert not recwarn.list, [str(warning.message) for warning in recwarn]


def test_an_intact_digits_file_of_the_expected_shape_is_read_as_it_is(monkeypatch, tmp_path):
    """The checks of the damaged cases above let a well-formed file through, its levels as written."""
    import five.data.datasets as datasets

    path = tmp_path / "digits.csv.gz"
    path.write_bytes(_gzip_text(_digits_csv(value="16")))
    monkeypatch.setattr(datasets, "digits_file", lambda: path)
    digits = load_dataset("digits")
    assert digits.split("train").shape == (1257, 64) and bool((digits.split("test") == 16).all())


def test_dequantisation_stays_in_its_bin_and_is_fresh_per_draw():
    levels = torch.randint(0, 17, (500, 64), dtype=torch.uint8)
    generator = torch.Generator().manual_seed(0)
    first, second = dequantize(levels, 17, generator), dequantize(levels, 17, generator)
    assert first.dtype == torch.float32
    assert bool(((first * 17).floor() == levels.float()).all())  # x ∈ [n/L, (n+1)/L)
    assert 0.0 <= float(first.min()) and float(first.max()) < 1.0
    assert not torch.equal(first, second)
    continuous = torch.randn(3, 4)
    assert torch.equal(dequantize(continuous, None, generator), continuous)


def test_npz_with_discrete_levels_and_images(tmp_path):
    path = tmp_path / "images.npz"
    rng = np.random.default_rng(0)
    np.savez(path, train=rng.integers(0, 4, (20, 1, 8, 8)), test=rng.integers(0, 4, (5, 1, 8, 8)), discrete_levels=4)
    data = load_dataset(f"npz:{path}")
    assert data.discrete_levels == 4 and data.example_shape == (1, 8, 8) and data.dim == 64
    assert data.default_architecture == "conv" and data.split("train").dtype == torch.uint8


def test_npz_without_levels_is_continuous(tmp_path):
    path = tmp_path / "flat.npz"
    np.savez(path, train=np.random.randn(30, 5), test=np.random.randn(7, 5))
    data = load_dataset(f"npz:{path}")
    assert data.discrete_levels is None and data.default_architecture == "mlp"
    assert data.split("test").dtype == torch.float32 and data.split("test").shape == (7, 5)
    assert data.note == ""  # real-valued data: nothing to say


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, bool, np.float32])
def test_whole_numbers_without_levels_are_said_to_be_modelled_as_continuous(tmp_path, dtype):
    """Levels 0..255 saved without discrete_levels (forgotten, most likely) are a density of points on a lattice:
    the data set carries a note saying so, which training and evaluation log as they start."""
    path = tmp_path / "levels.npz"
    rng = np.random.default_rng(0)
    np.savez(path, train=rng.integers(0, 2, (30, 5)).astype(dtype), test=rng.integers(0, 2, (7, 5)).astype(dtype))
    data = load_dataset(f"npz:{path}")
    assert data.discrete_levels is None and "holds whole numbers only and no discrete_levels" in data.note
    assert "save discrete_levels=L" in data.note and len(data.note.splitlines()) == 1


@pytest.mark.parametrize(
    "spread, noted", [(1e-4, True), (0.09, True), (0.11, False), (1.0, False), (9.0, False), (11.0, True)]
)
def test_continuous_data_far_from_unit_spread_are_told_of_the_models_scales(tmp_path, spread, noted):
    """FIF's fixed σ, its training noise and the floor of a learned σ are in the data's units: continuous data whose
    features vary on a scale outside [0.1, 10] carry a note saying so (a model of data at spread 1e-4 sits at σ's
    floor of 1e-3 and its NLL is far too high). Each feature's own spread counts, not its offset; whole numbers of
    a large spread get both notes."""
    path = tmp_path / "scaled.npz"
    rng = np.random.default_rng(0)
    offsets = rng.uniform(-500, 500, size=5)  # far apart: pooled over features, they would be the spread
    np.savez(path, train=spread * rng.standard_normal((4000, 5)) + offsets, test=rng.standard_normal((7, 5)))
    data = load_dataset(f"npz:{path}")
    assert ("training data have a spread" in data.note) == noted, data.note
    if noted:
        shown = float(re.search(r"standard deviation\) of ([^:]+):", data.note).group(1))
        assert shown == pytest.approx(spread, rel=0.05) and "D·log|a| nats" in data.note
        assert len(data.note.splitlines()) == 1
    np.savez(path, train=np.round(1000 * rng.standard_normal((30, 5))), test=np.zeros((7, 5)))
    lines = load_dataset(f"npz:{path}").note.splitlines()
    assert len(lines) == 2 and "whole numbers" in lines[0] and "spread" in lines[1], lines
    np.savez(path, train=1e-4 * rng.standard_normal((1, 5)), test=np.zeros((7, 5)))  # one example: no spread known
    assert load_dataset(f"npz:{path}").note == ""


@pytest.mark.parametrize(
    "arrays, message",
    [
        (dict(train=np.zeros((3, 4))), "lacks the array"),
        (dict(train=np.zeros((3, 4)), test=np.zeros((3, 5))), "equal example shape"),
        (dict(train=np.zeros((3, 4)), test=np.zeros((3, 4)), validation=np.zeros((3, 2))), "equal example shape"),
        (dict(train=np.zeros((3, 4, 2)), test=np.zeros((3, 4, 2))), r"\(n, D\) or \(n, C, H, W\)"),
        (dict(train=np.full((3, 4), 0.5), test=np.zeros((3, 4)), discrete_levels=4), "integers in 0..3"),
        (dict(train=np.full((3, 4), 7), test=np.zeros((3, 4)), discrete_levels=4), "integers in 0..3"),
        (dict(train=np.full((3, 4), 4), test=np.zeros((3, 4)), discrete_levels=4), "integers in 0..3"),  # L itself
        (dict(train=np.zeros((3, 4)), test=np.zeros((3, 4)), discrete_levels=-3), "discrete_levels=-3, but discrete"),
        (dict(train=np.zeros((3, 4)), test=np.zeros((3, 4)), discrete_levels=1), "need at least 2 levels"),
    ],
)
def test_malformed_npz_files_are_named_errors(tmp_path, arrays, message):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(DataError, match=message):
        load_dataset(f"npz:{path}")


def test_the_most_discrete_levels_load_and_the_fingerprint_tells_levels_apart(tmp_path):
    """2^16 levels (the bound, whose top level L − 1 is an integer of its own) load as integers; the contents
    fingerprint of a run's data includes L: the same arrays saved with another L are other data."""
    path, levels = tmp_path / "fine.npz", 2**16
    train = np.arange(levels * 2).reshape(-1, 4) % levels
    np.savez(path, train=train, test=train[:8], discrete_levels=levels)
    data = load_dataset(f"npz:{path}")
    assert data.discrete_levels == levels and int(data.split("train").max()) == levels - 1
    fingerprints = []
    for levels in (4, 8):
        np.savez(path, train=train % 4, test=train[:8] % 4, discrete_levels=levels)
        fingerprints.append(load_dataset(f"npz:{path}").fingerprint)
    assert fingerprints[0] != fingerprints[1]


def test_unknown_and_missing_data_sets_are_named_errors(tmp_path):
    with pytest.raises(DataError, match="unknown dataset 'digitz'"):
        load_dataset("digitz")
    with pytest.raises(DataError, match="not found"):
        load_dataset(f"npz:{tmp_path / 'absent.npz'}")
    with pytest.raises(DataError, match="no split 'valid'"):
        load_dataset("digits").split("valid")


def test_data_dir_precedence_is_explicit_then_environment_then_data(monkeypatch, tmp_path):
    monkeypatch.delenv("FIVE_DATA_DIR", raising=False)
    assert resolve_data_dir() == Path("data")
    monkeypatch.setenv("FIVE_DATA_DIR", str(tmp_path / "from-env"))
    assert resolve_data_dir() == tmp_path / "from-env"
    assert resolve_data_dir(tmp_path / "explicit") == tmp_path / "explicit"
