"""Where a job computes: the device it asks for, checked."""

from __future__ import annotations

import torch

from five.base.errors import ConfigError


def choose_device(name: str = "auto") -> torch.device:
    """`auto` is CUDA when present, else CPU; asking for CUDA where there is none is an error, not a fallback."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda was requested but no CUDA device is available")
    if name not in ("cpu", "cuda"):
        raise ConfigError(f"unknown device {name!r} (choose from auto, cpu, cuda)")
    return torch.device(name)
