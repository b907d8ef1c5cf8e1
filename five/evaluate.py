"""Evaluation of a trained run (spec §2–3): IWAE test log-likelihood through one code path for all models,
bits/dim, effective sample size, active units, per-dimension KL and reconstruction error."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Callable

import torch

from five.checkpoint import CHECKPOINT_NAME, load_checkpoint
from five.config import TrainConfig
from five.data import dequantize, load_dataset
from five.errors import FiveError
from five.estimators import iwae_log_likelihood
from five.models import Model, build_model
from five.objectives import kl_diagonal_per_dimension

EVALUATION_SEED = 20250602  # fixed: the test dequantisation and the importance samples are the same every time
ACTIVE_UNIT_THRESHOLD = 0.01  # §3 (Burda et al.)
SAMPLES_PER_CHUNK = 2**16  # importance samples × examples evaluated at once


def load_run(run_dir: Path, device: torch.device) -> tuple[TrainConfig, Model, dict]:
    path = Path(run_dir) / CHECKPOINT_NAME
    if not path.exists():
        raise FiveError(f"no checkpoint at {path}; train the run first with `five train --out {run_dir}`")
    state = load_checkpoint(path, map_location=device)
    config = TrainConfig.from_dict(state["config"])
    dataset = load_dataset(config.dataset)
    model = build_model(config, dataset)
    model.load_state_dict(state["model"])
    return config, model.to(device).eval(), state


def proposal_description(model: Model) -> str:
    if model.name == "fif":
        return "N(f(x), s·J_f J_fᵀ) with s = 1/(2β) fixed"
    if model.name == "five":
        return "N(f(x), s·J_f J_fᵀ) with the learned s"
    return "the model's own posterior q(z|x)"


def evaluate_run(run_dir: Path, device: torch.device, importance_samples: int = 1000, split: str = "test",
                 batch_size: int = 256, log: Callable[[str], None] = print) -> dict:
    """All metrics of spec §2–3 for the run in `run_dir` on `split`."""
    if importance_samples < 1:
        raise FiveError(f"--importance-samples must be >= 1, got {importance_samples}")
    started = time.perf_counter()
    config, model, state = load_run(run_dir, device)
    dataset = load_dataset(config.dataset)
    generator = torch.Generator(device=device).manual_seed(EVALUATION_SEED)
    x_all = dequantize(dataset.split(split).to(device), dataset.discrete_levels, generator)
    samples_per_chunk = max(1, SAMPLES_PER_CHUNK // batch_size)
    log_likelihood, elbo, ess, means, squared_errors, kls = [], [], [], [], [], []
    covariance_sum = torch.zeros(config.latent_dim, config.latent_dim, dtype=torch.float64, device=device)
    batches = x_all.split(batch_size)
    for index, x in enumerate(batches):
        with torch.no_grad():
            posterior = model.posterior(x)
            result = iwae_log_likelihood(x, posterior, model.log_joint, importance_samples, generator,
                                         samples_per_chunk)
            reconstruction = model.decode(posterior.mean.to(x.dtype))
            if model.name == "vae":
                mu, log_std = model.split_head(x)
                kls.append(kl_diagonal_per_dimension(mu, log_std).double())
        log_likelihood.append(result.log_likelihood)
        elbo.append(result.elbo)
        ess.append(result.effective_sample_size)
        means.append(posterior.mean)
        covariance_sum += posterior.covariance.sum(0)
        squared_errors.append((x - reconstruction).flatten(1).pow(2).mean(1).double())
        log(f"evaluated batch {index + 1}/{len(batches)}")
    log_likelihood, elbo, ess = torch.cat(log_likelihood), torch.cat(elbo), torch.cat(ess)
    means = torch.cat(means)
    n = means.shape[0]
    # §3: active units, axis-wise and rotation-invariant.
    mean_variance = means.var(0, unbiased=False)
    mean_covariance = torch.cov(means.T, correction=0).reshape(config.latent_dim, config.latent_dim)
    eigen_of_means = torch.linalg.eigvalsh(mean_covariance)
    expected_posterior_covariance = covariance_sum / n
    D = dataset.dim
    nll = -float(log_likelihood.mean())
    levels = dataset.discrete_levels
    metrics = {
        "nll_nats": nll,
        "bits_per_dim": nll / (D * math.log(2)) + math.log2(levels) if levels else None,
        "elbo_nats": float(elbo.mean()),
        "ess_mean": float(ess.mean()),
        "active_units": int((mean_variance > ACTIVE_UNIT_THRESHOLD).sum()),
        "active_units_eigen": int((eigen_of_means > ACTIVE_UNIT_THRESHOLD).sum()),
        "recon_mse": float(torch.cat(squared_errors).mean()),
        "n_examples": n,
        "importance_samples": importance_samples,
        "split": split,
        "data_dim": D,
        "discrete_levels": levels,
        "sigma": float(torch.exp(model.log_sigma.detach())),
        "proposal": proposal_description(model),
        "model_selection": "last",
        "checkpoint_epoch": state["epoch"],
        "posterior_mean_variance": mean_variance.tolist(),
        "posterior_covariance_eigenvalues": torch.linalg.eigvalsh(expected_posterior_covariance).tolist(),
        "kl_per_dimension": torch.cat(kls).mean(0).tolist() if kls else None,
        "wall_time_s": time.perf_counter() - started,
        "config": config.to_dict(),
    }
    return metrics
