"""Tiny data sets written in the exact on-disk formats torchvision reads (MNIST's IDX, CIFAR-10's pickles)."""

import gzip
import hashlib
import pickle
import struct
from pathlib import Path

import numpy as np


def write_idx(path: Path, array: np.ndarray) -> None:
    """IDX: magic (0, 0, type 0x08 = ubyte, number of dims), big-endian dim sizes, then the raw bytes."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def write_mnist(root: Path, n_train: int, n_test: int, seed: int = 0, gzipped_copy_to: Path | None = None):
    """Files under root/MNIST/raw as torchvision expects; returns the train and test images written."""
    rng = np.random.default_rng(seed)
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    train = rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8)
    test = rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8)
    files = {
        "train-images-idx3-ubyte": train,
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": test,
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    for name, array in files.items():
        write_idx(raw / name, array)
        if gzipped_copy_to is not None:
            gzipped_copy_to.mkdir(parents=True, exist_ok=True)
            (gzipped_copy_to / f"{name}.gz").write_bytes(gzip.compress((raw / name).read_bytes()))
    return train, test


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def write_cifar10(root: Path, per_batch: int, n_test: int, seed: int = 0):
    """root/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}: pickled dicts with `data`
    (n, 3072) uint8 in channel-major order and `labels`. Returns (train (n,3,32,32), test, md5 by file)."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    batches = {f"data_batch_{i}": per_batch for i in range(1, 6)} | {"test_batch": n_test}
    images = {}
    for name, n in batches.items():
        data = rng.integers(0, 256, (n, 3 * 32 * 32), dtype=np.uint8)
        images[name] = data.reshape(n, 3, 32, 32)
        with open(folder / name, "wb") as file:
            pickle.dump({"data": data, "labels": list(rng.integers(0, 10, n))}, file)
    with open(folder / "batches.meta", "wb") as file:
        pickle.dump({"label_names": [f"class{i}" for i in range(10)]}, file)
    train = np.concatenate([images[f"data_batch_{i}"] for i in range(1, 6)])
    checksums = {name: md5(folder / name) for name in [*batches, "batches.meta"]}
    return train, images["test_batch"], checksums
