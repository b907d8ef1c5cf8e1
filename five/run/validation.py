"""Fit quality during training (issue 7): on a fixed validation subset, the ELBO with the exact posterior
log-determinant (FIF/FIVE: from the full encoder Jacobian, spec §2), a short IWAE estimate, the
reconstruction error; plus the bookkeeping of the best epoch for model selection.

The FIF/FIVE training loss holds a surrogate whose value means nothing (spec §1.3): these are the numbers
to watch instead. Validation draws come from their own fixed generator, so monitoring changes nothing in
the training run (exact resume still holds).
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from five.base.config import TrainConfig
from five.data.datasets import Dataset, dequantize
from five.model.estimators import GaussianPosterior, iwae_log_likelihood
from five.model.models import Model

VALIDATION_EXAMPLES = 512
VALIDATION_SAMPLES = 16  # N of the short IWAE estimate
VALIDATION_SEED = 4242
EVALUATIONS_PER_RUN = 20  # the default eval_every is epochs / 20
SIGMA_SEARCH_HALF_WIDTH = 4.0  # ρ is searched within ±4 of the model's own (σ within a factor e⁴ ≈ 55)
SIGMA_SEARCH_TOLERANCE = 1e-3  # in ρ: σ to 0.1%


def default_eval_every(epochs: int) -> int:
    return max(1, round(epochs / EVALUATIONS_PER_RUN))


def validates_after(epoch: int, config: TrainConfig) -> bool:
    """Whether a run of `config` validates after `epoch`: every eval_every epochs (default epochs / 20) and
    after its last."""
    return epoch % (config.eval_every or default_eval_every(config.epochs)) == 0 or epoch == config.epochs


def stalled(history: list[dict], patience: int | None) -> bool:
    """The patience rule: `patience` validations in a row without a better validation NLL (None: never)."""
    return patience is not None and evaluations_since_best(history) >= patience


# what a validation adds to an epoch's history entry (validate's values and the time it took)
VALIDATION_FIELDS = ("val_nll", "val_elbo", "val_recon_mse", "validation_time_s")


def replayed_history(history: list[dict], config: TrainConfig) -> list[dict] | None:
    """What a run of `config` would have recorded over the epochs of `history` (a run with the same weights,
    validated on another schedule, or stopped by another patience): the validations off its schedule dropped,
    cut where its epochs or its patience end it. Validation is a function of the weights alone (its own fixed
    draws), so the values carry over. None where it would have validated after an epoch `history` did not."""
    replayed = []
    for entry in history:
        if entry["epoch"] > config.epochs:
            break
        on_schedule, validated = validates_after(entry["epoch"], config), entry.get("val_nll") is not None
        if on_schedule and not validated:
            return None
        if validated and not on_schedule:
            entry = {key: value for key, value in entry.items() if key not in VALIDATION_FIELDS}
        replayed.append(entry)
        if on_schedule and stalled(replayed, config.patience):
            break
    return replayed


def validation_source(dataset: Dataset) -> str:
    """What validation_batch draws from, in words (a σ fitted or a run monitored on it says so)."""
    if "validation" in dataset.splits:
        return "validation"
    return f"{first_training_examples(dataset)} (no validation split)"


def first_training_examples(dataset: Dataset) -> str:
    return f"the first {min(VALIDATION_EXAMPLES, len(dataset.split('train')))} training examples"


def validation_batch(dataset: Dataset, device: torch.device, log: Callable[[str], None]) -> torch.Tensor:
    """The first VALIDATION_EXAMPLES validation examples, dequantised once with a fixed seed."""
    if "validation" in dataset.splits:
        levels = dataset.split("validation")
    else:
        unread = (
            f" (its arrays {', '.join(dataset.unread)} are no split: one named 'validation' is)"
            if dataset.unread
            else ""
        )
        log(
            f"{dataset.name} has no validation split{unread}: monitoring uses {first_training_examples(dataset)} "
            "(fit, not generalisation)"
        )
        levels = dataset.split("train")
    generator = torch.Generator(device=device).manual_seed(VALIDATION_SEED)
    return dequantize(levels[:VALIDATION_EXAMPLES].to(device), dataset.discrete_levels, generator)


def posterior_log_det(scale_tril: torch.Tensor) -> torch.Tensor:
    """log det Σ_q = 2 Σ_i log L_ii from the proposal's Cholesky factor (exact for FIF/FIVE: s·J_f J_fᵀ)."""
    return 2 * torch.log(scale_tril.diagonal(dim1=-2, dim2=-1)).sum(-1)


def validate(model: Model, x: torch.Tensor) -> dict[str, float]:
    """val_nll (IWAE, N = VALIDATION_SAMPLES), val_elbo and val_recon_mse on the validation batch, in nats."""
    generator = torch.Generator(device=x.device).manual_seed(VALIDATION_SEED)
    with torch.no_grad():
        posterior = model.posterior(x)
        result = iwae_log_likelihood(x, posterior, model.log_joint, VALIDATION_SAMPLES, generator)
        reconstruction = model.decode(posterior.mean.to(x.dtype))
    return {
        "val_nll": -float(result.log_likelihood.mean()),
        "val_elbo": float(result.elbo.mean()),
        "val_recon_mse": float((x - reconstruction).pow(2).mean()),
    }


def fit_log_sigma(model: Model, x: torch.Tensor, samples: int = VALIDATION_SAMPLES) -> dict[str, float]:
    """Spec §2: for the trained f and g, the ρ = log σ that maximises the validation IWAE (N = `samples`), by
    a bounded 1-D search (scipy's Brent) with the same draws at every candidate, so the objective is smooth.

    Any proposal gives a valid bound, so the NLL at the fitted σ is as valid as at the model's own. Where the
    proposal's covariance is s·C (FIF, FIVE), it moves with σ; the VAEs' proposal does not depend on σ. Where
    the model's own σ does at least as well on validation, it is kept (`kept_own`); `at_bound` says when the
    optimum sits at an end of the search interval (the best σ may lie beyond it).
    """
    from scipy.optimize import minimize_scalar

    own = float(model.log_sigma.detach())
    with torch.no_grad():
        base = model.posterior(x)

    def validation_nll(log_sigma: float) -> float:
        scale = math.exp(log_sigma - own) if model.posterior_scales_with_sigma else 1.0
        posterior = GaussianPosterior(base.mean, base.scale_tril * scale)
        rho = torch.tensor(log_sigma, dtype=x.dtype, device=x.device)
        generator = torch.Generator(device=x.device).manual_seed(VALIDATION_SEED)
        with torch.no_grad():
            result = iwae_log_likelihood(x, posterior, lambda x_, z: model.log_joint(x_, z, rho), samples, generator)
        return -float(result.log_likelihood.mean())

    centre = max(own, model.log_sigma_floor)  # an own σ below the floor (not one training leaves) searches above it
    bounds = (max(model.log_sigma_floor, centre - SIGMA_SEARCH_HALF_WIDTH), centre + SIGMA_SEARCH_HALF_WIDTH)
    found = minimize_scalar(validation_nll, bounds=bounds, method="bounded", options={"xatol": SIGMA_SEARCH_TOLERANCE})
    own_nll = validation_nll(own)
    at_bound = next(
        (
            name
            for name, bound in zip(("lower", "upper"), bounds)
            if abs(float(found.x) - bound) <= 2 * SIGMA_SEARCH_TOLERANCE
        ),
        None,
    )
    kept_own = own_nll <= float(found.fun)  # the search is local: never end worse than the model's own σ
    return {
        "log_sigma": own if kept_own else float(found.x),
        "val_nll_fitted": min(own_nll, float(found.fun)),
        "val_nll_own": own_nll,
        "kept_own": kept_own,
        "at_bound": None if kept_own else at_bound,
        "search_bounds": bounds,
        "search_evaluations": int(found.nfev),
    }


def best_epoch(history: list[dict]) -> tuple[int | None, float]:
    """The epoch with the lowest finite validation NLL so far, and that value."""
    scored = [
        (entry["val_nll"], entry["epoch"])
        for entry in history
        if entry.get("val_nll") is not None and math.isfinite(entry["val_nll"])
    ]
    if not scored:
        return None, math.inf
    value, epoch = min(scored)
    return epoch, value


def evaluations_since_best(history: list[dict]) -> int:
    """How many validation evaluations came after the best one (for the patience rule)."""
    epoch, _ = best_epoch(history)
    return sum(
        1 for entry in history if entry.get("val_nll") is not None and epoch is not None and entry["epoch"] > epoch
    )
