"""MNIST and CIFAR-10 through torchvision's real loaders, from tiny files in their exact formats; no downloads."""

import functools
import gzip
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.datasets import CIFAR10, MNIST
from vision_files import md5, write_cifar10, write_idx, write_mnist

import five.data.vision
from five.base.errors import DataError
from five.data.catalog import DATA_SHAPES  # what the dry run knows of each data set's shape
from five.data.datasets import dequantize, load_dataset
from five.run.evaluate import EVALUATION_SEED
from five.run.train import epoch_generator

REAL_URLOPEN = urllib.request.urlopen

FIVE = shutil.which("five", path=str(Path(sys.executable).parent)) or "five"


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Any attempt to open a URL fails the test: loading must never download."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"a network access was attempted: {args[:1]}")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setattr(urllib.request, "urlretrieve", refuse)


@pytest.fixture
def small_validation(monkeypatch):
    monkeypatch.setattr(five.data.vision, "VALIDATION_SIZE", 10)


def test_our_file_lists_are_the_files_torchvision_reads():
    mnist = [f"MNIST/raw/{Path(url).name.removesuffix('.gz')}" for url, _ in MNIST.resources]
    cifar = [f"{CIFAR10.base_folder}/{name}" for name, _ in CIFAR10.train_list + CIFAR10.test_list]
    assert five.data.catalog.FILES == {"mnist": mnist, "cifar10": cifar + [f"{CIFAR10.base_folder}/batches.meta"]}


def test_mnist_loads_through_torchvision_with_its_splits(tmp_path, small_validation):
    train, test = write_mnist(tmp_path, n_train=30, n_test=8)
    data = load_dataset("mnist", tmp_path)
    assert data.discrete_levels == 256 and data.example_shape == (1, 28, 28) == DATA_SHAPES["mnist"] and data.dim == 784
    assert data.default_architecture == "conv"
    assert data.split("train").dtype == torch.uint8
    # the validation split is the last VALIDATION_SIZE training images, in file order
    assert torch.equal(data.split("train"), torch.from_numpy(train[:20]).unsqueeze(1))
    assert torch.equal(data.split("validation"), torch.from_numpy(train[20:]).unsqueeze(1))
    assert torch.equal(data.split("test"), torch.from_numpy(test).unsqueeze(1))


def test_cifar10_loads_through_torchvision_in_channel_first_order(tmp_path, small_validation, monkeypatch):
    train, test, checksums = write_cifar10(tmp_path, per_batch=4, n_test=3)
    # torchvision checks the real files' MD5s; our tiny files have their own
    monkeypatch.setattr(CIFAR10, "train_list", [[f"data_batch_{i}", checksums[f"data_batch_{i}"]] for i in range(1, 6)])
    monkeypatch.setattr(CIFAR10, "test_list", [["test_batch", checksums["test_batch"]]])
    monkeypatch.setattr(CIFAR10, "meta", CIFAR10.meta | {"md5": checksums["batches.meta"]})
    data = load_dataset("cifar10", tmp_path)
    assert data.example_shape == (3, 32, 32) == DATA_SHAPES["cifar10"] and data.discrete_levels == 256
    assert {name: len(data.split(name)) for name in ("train", "validation", "test")} == {
        "train": 10,
        "validation": 10,
        "test": 3,
    }
    assert torch.equal(torch.cat([data.split("train"), data.split("validation")]), torch.from_numpy(train))
    assert torch.equal(data.split("test"), torch.from_numpy(test))


def test_corrupted_cifar10_is_a_clear_error(tmp_path, small_validation):
    write_cifar10(tmp_path, per_batch=4, n_test=3)  # MD5s differ from the real files'
    with pytest.raises(DataError, match="corrupted.*five download --dataset cifar10"):
        load_dataset("cifar10", tmp_path)


def _damage_mnist(raw: Path, how: str) -> None:
    images = raw / "train-images-idx3-ubyte"
    if how == "empty":
        images.write_bytes(b"")
    elif how == "header only":
        images.write_bytes(images.read_bytes()[:16])
    elif how == "bad magic":
        images.write_bytes(b"\x01\x02" + images.read_bytes()[2:])
    elif how == "type byte":
        images.write_bytes(images.read_bytes()[:2] + b"\x0a" + images.read_bytes()[3:])
    elif how == "20x20 images":
        write_idx(images, np.zeros((30, 20, 20), np.uint8))
    elif how == "a FIFO":
        images.unlink()
        os.mkfifo(images)
    else:  # torchvision's old processed files, which it reads instead of the raw ones
        (raw.parent / "processed").mkdir()
        for name, count in (("training.pt", 30), ("test.pt", 5)):
            torch.save(
                (torch.zeros(count, 28, 28, dtype=torch.uint8), torch.zeros(count)), raw.parent / "processed" / name
            )


@pytest.mark.parametrize(
    "how, cause",
    [
        ("empty", "corrupted"),
        ("header only", "corrupted"),
        ("bad magic", "corrupted"),
        ("type byte", "corrupted"),
        ("20x20 images", "training images of shape (1, 20, 20), not mnist's (1, 28, 28)"),
        ("a FIFO", "train-images-idx3-ubyte is a FIFO, not a data file"),
        ("legacy processed files", "processed/training.pt is torchvision's old processed MNIST"),
    ],
)
def test_damaged_mnist_files_are_one_clear_error(tmp_path, small_validation, how, cause):
    """torchvision's own parsers raise ValueError, AssertionError, KeyError…: each is a DataError naming the
    data set (a traceback before), as are images of another shape (trained on silently) and stale processed
    files (read instead of the raw files five checks)."""
    write_mnist(tmp_path, n_train=30, n_test=5)
    _damage_mnist(tmp_path / "MNIST" / "raw", how)
    with pytest.raises(DataError, match=re.escape(cause)):
        load_dataset("mnist", tmp_path)


def test_dequantised_images_lie_in_the_unit_cube_and_change_between_epochs(tmp_path, small_validation):
    write_mnist(tmp_path, n_train=30, n_test=8)
    levels = load_dataset("mnist", tmp_path).split("train")
    epoch_one = dequantize(levels, 256, epoch_generator(0, 1, torch.device("cpu")))
    epoch_two = dequantize(levels, 256, epoch_generator(0, 2, torch.device("cpu")))
    for x in (epoch_one, epoch_two):
        assert 0.0 <= float(x.min()) and float(x.max()) < 1.0
        assert bool(((x * 256).floor() == levels.float()).all())
    assert not torch.equal(epoch_one, epoch_two)
    test = load_dataset("mnist", tmp_path).split("test")
    fixed = [dequantize(test, 256, torch.Generator().manual_seed(EVALUATION_SEED)) for _ in range(2)]
    assert torch.equal(*fixed)  # the test set is dequantised the same way every time


@pytest.mark.parametrize(
    "name, example", [("mnist", "MNIST/raw/train-images-idx3-ubyte"), ("cifar10", "cifar-10-batches-py/data_batch_1")]
)
def test_missing_data_names_the_files_and_the_download_command(tmp_path, name, example):
    with pytest.raises(DataError) as caught:
        load_dataset(name, tmp_path / "empty")
    message = str(caught.value)
    assert example in message and f"five download --dataset {name} --data-dir {tmp_path / 'empty'}" in message
    assert "\n" not in message


@pytest.fixture
def local_mirror(tmp_path, monkeypatch):
    """MNIST's .gz files served over HTTP on 127.0.0.1 from a temp folder, with the real urlopen."""
    folder = tmp_path / "mirror"
    write_mnist(tmp_path / "made", n_train=12, n_test=4, gzipped_copy_to=folder)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setattr(urllib.request, "urlopen", REAL_URLOPEN)
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    monkeypatch.setattr(MNIST, "mirrors", [f"http://127.0.0.1:{server.server_port}/"])
    yield folder
    server.shutdown()


def test_download_fetches_through_torchvision_and_verifies_checksums(tmp_path, monkeypatch, local_mirror):
    gz_files = sorted(local_mirror.glob("*.gz"))
    monkeypatch.setattr(MNIST, "resources", [(path.name, md5(path)) for path in gz_files])
    files = five.data.vision.download_vision_dataset("mnist", tmp_path / "data", log=lambda line: None)
    assert len(files) == 4 and all(path.is_file() for path in files)
    assert files[0].read_bytes() == gzip.decompress(
        gz_files[[p.name for p in gz_files].index(files[0].name + ".gz")].read_bytes()
    )
    # a checksum mismatch is an error, not a silently accepted file
    monkeypatch.setattr(MNIST, "resources", [(path.name, "0" * 32) for path in gz_files])
    with pytest.raises(DataError, match="downloading mnist .* failed"):
        five.data.vision.download_vision_dataset("mnist", tmp_path / "other", log=lambda line: None)


def test_cli_trains_on_mnist_files_and_explains_missing_data(tmp_path):
    write_mnist(tmp_path / "data", n_train=10_040, n_test=16)  # the real 10,000-image validation split fits
    run = tmp_path / "run"
    trained = subprocess.run(
        [
            FIVE,
            "train",
            "--model",
            "five",
            "--dataset",
            "mnist",
            "--latent-dim",
            "4",
            "--epochs",
            "1",
            "--hidden-width",
            "32",
            "--device",
            "cpu",
            "--data-dir",
            tmp_path / "data",
            "--out",
            run,
        ],
        capture_output=True,
        text=True,
    )
    assert trained.returncode == 0, trained.stderr
    assert json.loads((run / "train.json").read_text())["epochs_completed"] == 1
    evaluated = subprocess.run(
        [
            FIVE,
            "evaluate",
            "--run",
            run,
            "--importance-samples",
            "2",
            "--device",
            "cpu",
            "--data-dir",
            tmp_path / "data",
            "--image-dir",
            tmp_path / "grids",
            "--out",
            tmp_path / "eval.json",
        ],
        capture_output=True,
        text=True,
    )
    assert evaluated.returncode == 0, evaluated.stderr
    metrics = json.loads((tmp_path / "eval.json").read_text())
    assert metrics["n_examples"] == 16 and np.isfinite(metrics["bits_per_dim"])
    assert (tmp_path / "grids" / "samples.png").is_file()

    missing = subprocess.run(
        [
            FIVE,
            "train",
            "--model",
            "vae",
            "--dataset",
            "mnist",
            "--latent-dim",
            "4",
            "--data-dir",
            tmp_path / "nowhere",
            "--out",
            tmp_path / "run2",
        ],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "no_proxy": "*"},
    )
    lines = missing.stderr.strip().splitlines()
    assert missing.returncode == 2 and len(lines) == 1, missing.stderr
    assert "five download --dataset mnist" in lines[0] and "train-images-idx3-ubyte" in lines[0]
