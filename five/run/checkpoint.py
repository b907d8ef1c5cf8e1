"""Checkpoints (torch state files) of a run folder, written atomically (five.base.files) and read as weights only."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from five.base.errors import FiveError
from five.base.files import CHECKPOINT_NAME, MOVE_ASIDE_ADVICE, atomic_write, refuse_non_regular_input

CHECKPOINT_KEYS = ("config", "epoch", "model")
RESUME_KEYS = ("optimizer", "history", "wall_time_s")  # what checkpoint.pt holds besides, for a resumed run


def save_checkpoint(path: Path, state: dict) -> None:
    atomic_write(path, lambda file: torch.save(state, file))


def load_checkpoint(path: Path, map_location="cpu") -> dict:
    """A checkpoint's state (weights only: nothing in it is executed); a damaged file is one clear error."""
    refuse_non_regular_input(path)
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # truncated, empty, random bytes, not a torch file: say so, not torch's advice
        cause = "empty file" if Path(path).stat().st_size == 0 else f"unreadable ({type(error).__name__})"
        raise FiveError(f"{path} is damaged: {cause}; {MOVE_ASIDE_ADVICE}") from None
    missing = [key for key in CHECKPOINT_KEYS if not isinstance(state, dict) or key not in state]
    if missing:
        raise FiveError(f"{path} is damaged: it lacks {', '.join(missing)}; {MOVE_ASIDE_ADVICE}")
    epoch = state["epoch"]
    if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0 or not isinstance(state["config"], dict):
        raise FiveError(f"{path} is damaged: its epoch or config is not as five writes it; {MOVE_ASIDE_ADVICE}")
    if Path(path).name == CHECKPOINT_NAME:
        problem = resume_state_problem(state)
        if problem:
            raise FiveError(f"{path} is damaged: {problem}; {MOVE_ASIDE_ADVICE}")
    return state


def resume_state_problem(state: dict) -> str:
    """What of checkpoint.pt's resume state (Adam's state, the history, the wall time) is not as five writes it
    ("" where all is): a run resumed from it would fail in a traceback. Non-finite values are not refused here:
    a run whose last update overflowed is saved so, and its next step records the divergence."""
    missing = [key for key in RESUME_KEYS if key not in state]
    if missing:
        return f"it lacks {', '.join(missing)}"
    history, wall_time = state["history"], state["wall_time_s"]
    if not isinstance(history, list) or not all(
        isinstance(entry, dict) and type(entry.get("epoch")) is int for entry in history
    ):
        return "its history is not a list of epochs as five writes it"
    if type(wall_time) not in (int, float) or not 0 <= wall_time < math.inf:
        return "its wall time is not a finite number of seconds"
    if state.get("cuda_graph") not in (None, True, False):
        return "its cuda_graph is not a bool"
    optimizer = state["optimizer"]
    moments = optimizer.get("state") if isinstance(optimizer, dict) else None
    if not isinstance(moments, dict) or not all(
        isinstance(moment, dict)
        and all(isinstance(value, torch.Tensor) and value.is_floating_point() for value in moment.values())
        for moment in moments.values()
    ):
        return "its optimizer state is not Adam's as five writes it"
    if any(
        bool((moment[key] < 0).any()) for moment in moments.values() for key in ("step", "exp_avg_sq") if key in moment
    ):
        return "its optimizer state holds a negative step or second moment"
    return ""


def check_finite_weights(weights, path: Path) -> None:
    """Weights with a nan or an inf give no result (a resumed run may still go on: its next step diverges and is
    recorded as such); refused in one line naming at most three of them."""
    if not isinstance(weights, dict):
        return  # not a state_dict: load_weights says it does not fit
    names = [
        name
        for name, value in weights.items()
        if isinstance(value, torch.Tensor) and value.is_floating_point() and not bool(torch.isfinite(value).all())
    ]
    if names:
        named = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        raise FiveError(f"{path} holds nan or inf in {named}: it has no result to evaluate; {MOVE_ASIDE_ADVICE}")


def load_checkpoint_file(path: Path) -> dict | None:
    """A cache file's tensors, or None when it cannot be read (then the caller recomputes it)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        return None


def load_weights(module: torch.nn.Module | torch.optim.Optimizer, state: dict, path: Path) -> None:
    """module.load_state_dict, with a mismatch (unknown or missing keys, wrong shapes, or for a model a tensor of
    another kind, which load_state_dict would cast: a bool log σ loaded as 1.0) as one clear error."""
    try:
        if isinstance(module, torch.nn.Module) and isinstance(state, dict):
            check_tensor_kinds(module.state_dict(), state)
        module.load_state_dict(state)
    except (RuntimeError, ValueError, KeyError, TypeError) as error:
        first = str(error).strip().splitlines()[0][:200]
        raise FiveError(f"{path} does not fit this model ({first}); {MOVE_ASIDE_ADVICE}") from None


def tensor_kind(tensor: torch.Tensor) -> str:
    return "complex" if tensor.is_complex() else "floating" if tensor.is_floating_point() else "integer or bool"


def check_tensor_kinds(expected: dict, state: dict) -> None:
    """Each tensor of `state` is of the kind (floating, complex, integer or bool) of the model's tensor of its name."""
    for name, value in state.items():
        target = expected.get(name)
        if (
            isinstance(value, torch.Tensor)
            and isinstance(target, torch.Tensor)
            and tensor_kind(value) != tensor_kind(target)
        ):
            raise TypeError(f"{name} is a {value.dtype} tensor where the model has {target.dtype}")
