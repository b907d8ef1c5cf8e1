"""Atomic checkpoint and JSON writes: a temp file in the same folder, fsync, then rename over the target,
so a killed job leaves either the old file or the new one, never a half-written file."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch

CHECKPOINT_NAME = "checkpoint.pt"
BEST_NAME = "best.pt"  # the weights of the epoch with the best validation NLL
TRAIN_JSON = "train.json"


def _atomic_write(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def remove_stale_temporaries(path: Path) -> list[Path]:
    """Temp files a killed writer left beside `path` (never loaded: only a completed rename counts)."""
    stale = list(Path(path).parent.glob(f".{Path(path).name}.*.tmp"))
    for file in stale:
        file.unlink(missing_ok=True)
    return stale


def save_checkpoint(path: Path, state: dict) -> None:
    _atomic_write(path, lambda file: torch.save(state, file))


def load_checkpoint(path: Path, map_location="cpu") -> dict:
    return torch.load(path, map_location=map_location, weights_only=True)


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())


def write_json(path: Path, payload: dict) -> None:
    _atomic_write(path, lambda file: file.write((json.dumps(payload, indent=2) + "\n").encode()))
