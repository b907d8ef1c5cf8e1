"""Evaluation of a trained run (spec §2–3): IWAE test log-likelihood through one code path for all models,
bits/dim, effective sample size, active units, per-dimension KL and reconstruction error; on the synthetic
manifold also the distance between the learned and the true posterior."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import math
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from five.base.config import INT64_MAX, MODEL_SELECTIONS, MODELS_WITH_FIXED_SIGMA, TrainConfig, short_integer
from five.base.errors import DataError, FiveError
from five.base.files import (
    BEST_NAME,
    CHECKPOINT_NAME,
    MOVE_ASIDE_ADVICE,
    TRAIN_JSON,
    check_output_dir,
    read_train_record,
    refuse_non_regular,
)
from five.base.metrics import TEST_METRICS, information_threshold, informative_count
from five.data import manifold
from five.data.datasets import MIN_EVALUATED_EXAMPLES, Dataset, check_same_data, dequantize, load_dataset
from five.model.estimators import iwae_log_likelihood, no_cholesky_factor
from five.model.models import Model, build_model
from five.model.objectives import kl_diagonal_per_dimension
from five.run.checkpoint import (
    check_finite_weights,
    load_checkpoint,
    load_checkpoint_file,
    load_weights,
    save_checkpoint,
)
from five.run.validation import fit_log_sigma, validation_batch, validation_source

EVALUATION_SEED = 20250602  # fixed: the test dequantisation and the importance samples are the same every time
ACTIVE_UNIT_THRESHOLD = 0.01  # §3 (Burda et al.)
PROGRESS_SECONDS = 30.0  # how often a batch's importance sampling says how far it is
SAMPLES_PER_CHUNK = 2**16  # importance samples × examples evaluated at once
POSTERIOR_EXAMPLES = 500  # manifold examples whose posterior is compared with the true one
POSTERIOR_SAMPLES = 1000  # draws from q per example for its data-space covariance


SIGMA_AT_FLOOR = 0.01  # a log σ this close to its floor sits on it (a fitted σ stops within its search tolerance)
SIGMA_CHOICES = ("own", "fitted")  # the model's own σ (learned, or FIF's fixed 1/√(2β)), or fitted on validation


def load_run(
    run_dir: Path,
    device: torch.device,
    data_dir: Path | None = None,
    model_selection: str = "last",
    load: Callable[[str, Path | None], Dataset] = load_dataset,
) -> tuple[TrainConfig, Model, Dataset, dict]:
    """The run's model at the selected checkpoint: `last` (checkpoint.pt) or `best` (best.pt, the epoch with
    the best validation NLL); its data set by `load(name, data_dir)`."""
    path, state = checked_checkpoint(Path(run_dir), model_selection, device)
    config = TrainConfig.from_dict(state["config"])
    check_record_matches(Path(run_dir), config, path)
    dataset = load(config.dataset, data_dir)
    check_same_data(dataset, Path(run_dir))
    model = build_model(config, dataset, device)
    load_weights(model, state["model"], path)
    return config, model.to(device).eval(), dataset, state


def checked_checkpoint(run_dir: Path, model_selection: str, device="cpu") -> tuple[Path, dict]:
    """The selected checkpoint's path and state, refused in one line where it can give no result: missing,
    damaged, nan or inf in its weights or selection NLL, or a σ² = exp(2 log σ) beyond float32's normal range."""
    if model_selection not in MODEL_SELECTIONS:
        raise FiveError(f"unknown model selection {model_selection!r} (choose from {', '.join(MODEL_SELECTIONS)})")
    path = run_dir / (BEST_NAME if model_selection == "best" else CHECKPOINT_NAME)
    if not path.exists():
        record = run_dir / TRAIN_JSON
        if model_selection == "last" and record.exists() and read_train_record(record).get("truncated_from"):
            raise FiveError(
                f"{run_dir} was cut from a longer run: only its best checkpoint exists (use --model-selection best)"
            )
        raise FiveError(f"no checkpoint at {path}; train the run first with `five train --out {run_dir}`")
    state = load_checkpoint(path, map_location=device)
    if isinstance(state["model"], dict):  # anything else: load_weights says it does not fit
        check_finite_weights(state["model"], path)
        check_sigma_representable(state["model"].get("log_sigma"), path)
    val_nll = state.get("val_nll")
    finite_number = isinstance(val_nll, (int, float)) and not isinstance(val_nll, bool) and math.isfinite(val_nll)
    if val_nll is not None and not finite_number:
        raise FiveError(f"{path} is damaged: its validation NLL is {val_nll!r}; {MOVE_ASIDE_ADVICE}")
    return path, state


def check_evaluable(
    run_dirs: list[Path],
    model_selection: str,
    data_dir: Path | None = None,
    image_dirs: list | None = None,
    load: Callable[[str, Path | None], Dataset] | None = None,
) -> None:
    """evaluate_run's refusals of the run folders of a job, made before any of them is evaluated (a broken second
    seed must not cost the first one's evaluation): a diverged run is reported as such; any other needs a
    checkpoint that can give a result (checked_checkpoint), with a valid config that is the one its train.json
    records, whose weights fit the model that config builds (load_run on the CPU; each data set loaded once),
    and, where an image folder is given, data that can be drawn as images. `load`: as load_run's (default: each
    data set loaded once)."""
    load = load or cached_loader()
    for run_dir, image_dir in zip(run_dirs, image_dirs or [None] * len(run_dirs)):
        record_path = run_dir / TRAIN_JSON
        if not (record_path.exists() and read_train_record(record_path)["status"] == "diverged"):
            dataset = load_run(run_dir, torch.device("cpu"), data_dir, model_selection, load)[2]
            if image_dir is not None:
                check_images_possible(dataset)


def cached_loader() -> Callable[[str, Path | None], Dataset]:
    """load_dataset that loads each data set once: a job's check and its evaluations share what it loaded."""
    return functools.lru_cache(maxsize=None)(load_dataset)


def check_sigma_representable(log_sigma, path: Path) -> None:
    """The likelihood divides by σ² = exp(2 log σ), computed in float32: beyond its normal range σ² is inf, 0 or
    subnormal and the likelihood ±inf, nan or without precision (a checkpoint five writes keeps log σ at or above
    its floor, far inside)."""
    if not isinstance(log_sigma, torch.Tensor) or log_sigma.numel() != 1 or not log_sigma.is_floating_point():
        return  # not a state five writes: load_weights says it does not fit
    variance = float(torch.exp(2 * log_sigma.detach().float()))
    if not torch.finfo(torch.float32).tiny <= variance < math.inf:
        raise FiveError(
            f"{path} holds log σ = {float(log_sigma):g}, whose σ² is {variance:g} in float32, the precision the "
            f"likelihood is computed in: it has no result to evaluate; {MOVE_ASIDE_ADVICE}"
        )


IDENTITY = ("model", "dataset", "latent_dim", "probes", "surrogate_point", "seed")


def check_record_matches(run_dir: Path, config: TrainConfig, checkpoint: Path) -> None:
    """A run folder whose train.json and checkpoint describe different runs (files copied in by hand) is
    refused: evaluating it would label one run's numbers with the other's settings."""
    record_path = run_dir / TRAIN_JSON
    if not record_path.exists():
        return
    recorded = TrainConfig.resolved(read_train_record(record_path)["config"])
    differ = [
        f"{key} {recorded[key]!r} in {TRAIN_JSON}, {getattr(config, key)!r} in {checkpoint.name}"
        for key in IDENTITY
        if key in recorded and recorded[key] != getattr(config, key)
    ]
    if differ:
        raise FiveError(f"{run_dir} holds two different runs ({'; '.join(differ)}); {MOVE_ASIDE_ADVICE}")


def own_sigma_policy(model_name: str) -> str:
    return "fixed" if model_name in MODELS_WITH_FIXED_SIGMA else "learned"


def proposal_description(model: Model, sigma_policy: str, dataset: Dataset) -> str:
    """The proposal and the σ of p(x|z) behind a number (spec §2: say which)."""
    fitted = f"s fitted on {validation_source(dataset)}"
    s = {"fixed": "s = 1/(2β) fixed", "learned": "the learned s", "fitted": fitted}[sigma_policy]
    if model.posterior_scales_with_sigma:
        return f"N(f(x), s·J_f J_fᵀ) with {s}"
    return f"the model's own posterior q(z|x); p(x|z) with {s}"


def bits_per_dim(nll_nats: float, dataset: Dataset) -> float | None:
    """§2: NLL/(D·ln 2) + log₂ L for discrete data; undefined (None) for continuous data."""
    levels = dataset.discrete_levels
    return nll_nats / (dataset.dim * math.log(2)) + math.log2(levels) if levels else None


def every(seconds: float, report: Callable[[int], None]) -> Callable[[int], None]:
    """`report`, passed on at most once per `seconds` (progress of long work without a line per step)."""
    last = time.monotonic()

    def call(value: int) -> None:
        nonlocal last
        if time.monotonic() - last >= seconds:
            last = time.monotonic()
            report(value)

    return call


def likelihood_pass(
    model: Model,
    x_all: torch.Tensor,
    importance_samples: int,
    batch_size: int,
    generator: torch.Generator,
    log: Callable[[str], None],
) -> dict[str, torch.Tensor]:
    """Per-example IWAE results, posterior means, reconstruction errors, and Σ_x Σ_q(x), batch by batch."""
    samples_per_chunk = max(1, SAMPLES_PER_CHUNK // batch_size)
    parts: dict[str, list[torch.Tensor]] = {
        key: [] for key in ("log_likelihood", "elbo", "ess", "mean", "squared_error", "kl")
    }
    covariance_sum = 0
    batches = x_all.split(batch_size)
    log(f"{len(x_all)} examples × {importance_samples} importance samples, in {len(batches)} batches")
    for index, x in enumerate(batches):
        progress = every(
            PROGRESS_SECONDS,
            lambda done: log(f"batch {index + 1}/{len(batches)}: {done}/{importance_samples} importance samples"),
        )
        with torch.no_grad():
            posterior = model.posterior(x)
            result = iwae_log_likelihood(
                x, posterior, model.log_joint, importance_samples, generator, samples_per_chunk, progress
            )
            reconstruction = model.decode(posterior.mean.to(x.dtype))
            if model.name == "vae":
                parts["kl"].append(kl_diagonal_per_dimension(*model.split_head(x)).double())
        parts["log_likelihood"].append(result.log_likelihood)
        parts["elbo"].append(result.elbo)
        parts["ess"].append(result.effective_sample_size)
        parts["mean"].append(posterior.mean)
        parts["squared_error"].append((x - reconstruction).flatten(1).pow(2).mean(1).double())
        covariance_sum = covariance_sum + posterior.covariance.sum(0)
        log(f"evaluated batch {index + 1}/{len(batches)}")
    merged = {key: torch.cat(value) for key, value in parts.items() if value}
    merged["covariance_sum"] = covariance_sum
    return merged


def collapse_metrics(means: torch.Tensor, covariance_sum: torch.Tensor) -> dict:
    """§3: active units (axis-wise and rotation-invariant), the spectrum of E_x[Σ_q(x)], and the information per
    direction with its sum (the rate) and the count of informative directions."""
    variance = means.var(0, unbiased=False)
    d = means.shape[1]
    mean_covariance = torch.cov(means.T, correction=0).reshape(d, d)
    average_covariance = covariance_sum / means.shape[0]
    eigen_of_means = torch.linalg.eigvalsh(mean_covariance)
    information = direction_information(mean_covariance, average_covariance)
    threshold = information_threshold(d, means.shape[0])
    return {
        "active_units": int((variance > ACTIVE_UNIT_THRESHOLD).sum()),
        "active_units_eigen": int((eigen_of_means > ACTIVE_UNIT_THRESHOLD).sum()),
        "informative_directions": informative_count(information.tolist(), means.shape[0]),
        "rate_nats": float(information.sum()),
        "information_per_direction": information.tolist(),
        "information_threshold_nats": threshold,
        "posterior_mean_variance": variance.tolist(),
        "posterior_covariance_eigenvalues": torch.linalg.eigvalsh(average_covariance).tolist(),
    }


def direction_information(mean_covariance: torch.Tensor, average_covariance: torch.Tensor) -> torch.Tensor:
    """§3: ½·log λ_i nats per direction, largest first, λ the generalised eigenvalues of (M + S) against S, with
    M = Cov_x[E_q[z|x]] and S = E_x[Σ_q(x)]: the aggregate posterior's variance over the average posterior
    variance along each direction (a Gaussian approximation of I(x; z) split into directions)."""
    from scipy.linalg import eigh

    m, s = (0.5 * (c + c.T).double().cpu().numpy() for c in (mean_covariance, average_covariance))
    # a direction of (nearly) zero posterior variance would make S singular
    s = s + np.eye(len(s)) * max(np.trace(s) / len(s), 1e-300) * 1e-12
    ratios = np.maximum(eigh(m + s, s, eigvals_only=True), 1.0)  # ascending; M ⪰ 0 makes each at least 1
    return 0.5 * torch.log(torch.from_numpy(ratios.copy())).flip(0)


def data_space_posterior_covariance(
    model: Model, x: torch.Tensor, samples: int, generator: torch.Generator
) -> torch.Tensor:
    """Cov_q[g(z)] per example, (B, D, D), from `samples` draws of q(z|x): the spread of the noise-free
    reconstruction that the posterior allows, comparable across latent parameterisations."""
    with torch.no_grad():
        z, _ = model.posterior(x).sample(samples, generator)  # (N, B, d)
        points = model.decode(z.reshape(-1, z.shape[-1]).to(x.dtype)).reshape(samples, x.shape[0], -1).double()
    centred = points - points.mean(0)
    return torch.einsum("nbi,nbj->bij", centred, centred) / (samples - 1)


TRUE_POSTERIOR_CACHE = "manifold-true-posterior-"  # the prefix of its files in the cache folder


def check_cache_dir(cache_dir: Path) -> None:
    """Before compute: a cache folder's true-posterior files are regular (a FIFO there blocked the job forever,
    after its whole evaluation), and the folder can be written."""
    check_output_dir(cache_dir, "--cache-dir")
    for path in Path(cache_dir).glob(f"{TRUE_POSTERIOR_CACHE}*"):
        refuse_non_regular(path, "--cache-dir file")


def cached_true_posterior(x: torch.Tensor, cache_dir: Path | None) -> manifold.TruePosterior:
    """true_posterior(x), read from `cache_dir` when an earlier job computed it for the same points (the key
    is a hash of x and of the quadrature grid), else computed and stored there (atomically: concurrent jobs
    may both compute it, never read half a file). Every evaluation of a sweep asks for the same test points."""
    if cache_dir is None:
        return manifold.true_posterior(x)
    x = x.to(torch.float64).contiguous()
    grid = repr((manifold.GRID_POINTS, manifold.GRID_HALF_WIDTH, manifold.NOISE_STD)).encode()
    key = hashlib.sha256(x.numpy().tobytes() + grid).hexdigest()
    path = Path(cache_dir) / f"{TRUE_POSTERIOR_CACHE}{key[:20]}.pt"
    stored = load_checkpoint_file(path) if path.is_file() else None
    if fits_true_posterior(stored, x):
        return manifold.TruePosterior(**stored)
    truth = manifold.true_posterior(x)  # none stored, or a damaged file: computed again and replaced
    save_checkpoint(path, dataclasses.asdict(truth))
    return truth


def fits_true_posterior(stored, x: torch.Tensor) -> bool:
    """Whether a cached file holds the true posterior of x: its fields, finite, one row per example of x."""
    fields = [field.name for field in dataclasses.fields(manifold.TruePosterior)]
    return (
        isinstance(stored, dict)
        and sorted(stored) == sorted(fields)
        and all(isinstance(value, torch.Tensor) and value.shape[:1] == x.shape[:1] for value in stored.values())
        and all(bool(torch.isfinite(value).all()) for value in stored.values())
    )


def manifold_posterior_metrics(
    model: Model,
    x: torch.Tensor,
    model_log_likelihood: torch.Tensor,
    generator: torch.Generator,
    cache_dir: Path | None = None,
) -> dict:
    """Learned vs true posterior on the first POSTERIOR_EXAMPLES examples of the synthetic manifold."""
    x, model_log_likelihood = x[:POSTERIOR_EXAMPLES], model_log_likelihood[:POSTERIOR_EXAMPLES]
    truth = cached_true_posterior(x.cpu(), cache_dir)
    learned = torch.cat(
        [data_space_posterior_covariance(model, part, POSTERIOR_SAMPLES, generator).cpu() for part in x.split(50)]
    )
    error = manifold.normalised_frobenius_error(learned, truth.data_covariance)
    return {
        "posterior_examples": x.shape[0],
        "posterior_covariance_error": float(error.mean()),
        "posterior_covariance_error_per_example": per_example_list(error),
        "true_nll_nats": -float(truth.log_likelihood.mean()),
        "model_nll_nats_same_examples": -float(model_log_likelihood.mean()),
    }


def fit_sigma(
    model: Model,
    x_all: torch.Tensor,
    dataset: Dataset,
    importance_samples: int,
    batch_size: int,
    device: torch.device,
    log: Callable[[str], None],
) -> dict:
    """Set the model's σ to the one fitted on validation data; FIF (σ fixed by its definition) is first
    evaluated at its own σ too, with draws of its own so that the main numbers do not depend on it."""
    fit = fit_log_sigma(model, validation_batch(dataset, device, log))
    sigma_own = float(torch.exp(model.log_sigma.detach()))
    log(
        f"σ fitted on {validation_source(dataset)}: {math.exp(fit['log_sigma']):.4f} (own {sigma_own:.4f}); NLL "
        f"{fit['val_nll_fitted']:.3f} (own σ: {fit['val_nll_own']:.3f}) after {fit['search_evaluations']} trials"
        + ("; the model's own σ did as well and is kept" if fit["kept_own"] else "")
    )
    if fit["at_bound"]:
        low, high = fit["search_bounds"]
        fit["warning"] = (
            f"the fitted σ sits at the {fit['at_bound']} end of its search interval (log σ in "
            f"[{low:.3f}, {high:.3f}]): the best σ may lie beyond"
        )
        log(f"warning: {fit['warning']}")
    metrics = {"sigma_fit": fit}
    if own_sigma_policy(model.name) == "fixed":
        own_generator = torch.Generator(device=device).manual_seed(EVALUATION_SEED + 1)
        own = likelihood_pass(model, x_all, importance_samples, batch_size, own_generator, log)
        nll_own = -float(own["log_likelihood"].mean())
        metrics |= {"nll_nats_own_sigma": nll_own, "bits_per_dim_own_sigma": bits_per_dim(nll_own, dataset)}
    model.set_log_sigma(fit["log_sigma"])
    return metrics


def check_evaluation_options(importance_samples: int, batch_size: int, sigma: str) -> None:
    for option, value in (("--importance-samples", importance_samples), ("--batch-size", batch_size)):
        if not 1 <= value <= INT64_MAX:
            raise FiveError(
                f"{option} must be a whole number from 1 to 2^63 - 1 (torch's integers), got {short_integer(value)}"
            )
    if sigma not in SIGMA_CHOICES:
        raise FiveError(f"unknown --sigma {sigma!r} (choose from {', '.join(SIGMA_CHOICES)})")


class NoLikelihoodBound(FiveError):
    """The trained model gives no finite likelihood bound on the evaluated examples: a posterior s·J_f J_fᵀ
    without a Cholesky factor, or a pass that came out nan or inf. Training records the same at validation as a
    divergence (five.run.train._validate); so does the evaluation, and a sweep goes on."""


def diverged_metrics(record: dict, sigma: str, importance_samples: int, split: str, error: str | None = None) -> dict:
    """eval.json of a diverged run: no metric, the divergence (training's, else `error`), and how it would have
    been evaluated."""
    return {
        "status": "diverged",
        "error": error or record.get("error"),
        **{key: None for key in (*TEST_METRICS, "n_examples")},
        "sigma_policy": "fitted" if sigma == "fitted" else own_sigma_policy(record["config"]["model"]),
        "importance_samples": importance_samples,
        "split": split,
        "config": record["config"],
    }


def per_example_list(values: torch.Tensor) -> list[float]:
    """One value per example for eval.json (five.base.metrics.PER_EXAMPLE_LISTS), to 5 decimals."""
    return [round(value, 5) for value in values.double().tolist()]


def split_metrics(passed: dict, dataset) -> dict:
    """The metrics of one pass over the test examples (likelihood_pass): spec §2–3."""
    log_likelihood = passed["log_likelihood"].double()
    nll = -float(passed["log_likelihood"].mean())  # in the pass's precision, as the tables always had it
    return {
        "nll_nats": nll,
        # the test set is a sample too: the standard error of the mean over its examples (none from one example)
        "nll_standard_error": float(log_likelihood.std() / math.sqrt(log_likelihood.shape[0]))
        if log_likelihood.shape[0] > 1
        else None,
        # per test example, in the split's order: the claims' intervals pair models example by example
        "log_likelihood_per_example": per_example_list(log_likelihood),
        "bits_per_dim": bits_per_dim(nll, dataset),
        "elbo_nats": float(passed["elbo"].mean()),
        "elbo_per_example": per_example_list(passed["elbo"]),
        "ess_mean": float(passed["ess"].mean()),
        "ess_per_example": per_example_list(passed["ess"]),
        "recon_mse": float(passed["squared_error"].mean()),
        **collapse_metrics(passed["mean"], passed["covariance_sum"]),
        "kl_per_dimension": passed["kl"].mean(0).tolist() if "kl" in passed else None,
        "n_examples": log_likelihood.shape[0],
        "data_dim": dataset.dim,
        "discrete_levels": dataset.discrete_levels,
    }


def likelihood_metrics(
    model: Model,
    x_all: torch.Tensor,
    dataset: Dataset,
    sigma: str,
    importance_samples: int,
    batch_size: int,
    generator: torch.Generator,
    device: torch.device,
    log: Callable[[str], None],
) -> tuple[dict, dict]:
    """The metrics of one pass over `x_all` at the model's `own` σ or one `fitted` on validation, with the σ
    behind them; and the pass itself (likelihood_pass). NoLikelihoodBound where the pass has no finite bound."""
    sigma_own = float(torch.exp(model.log_sigma.detach()))
    sigma_policy = "fitted" if sigma == "fitted" else own_sigma_policy(model.name)
    sigma_metrics = {}
    try:
        if sigma == "fitted":
            sigma_metrics = fit_sigma(model, x_all, dataset, importance_samples, batch_size, device, log)
        passed = likelihood_pass(model, x_all, importance_samples, batch_size, generator, log)
    except torch.linalg.LinAlgError as error:
        raise NoLikelihoodBound(no_cholesky_factor(error)) from None
    broken = non_finite(passed)  # before the metrics: the spectrum of a nan covariance would fail in scipy
    if broken:
        raise NoLikelihoodBound(f"the likelihood pass gave nan or inf for {', '.join(broken)}")
    metrics = {
        "status": "complete",
        **split_metrics(passed, dataset),
        "importance_samples": importance_samples,
        "sigma": float(torch.exp(model.log_sigma.detach())),
        "sigma_policy": sigma_policy,
        "sigma_own": sigma_own,
        **sigma_metrics,
        "proposal": proposal_description(model, sigma_policy, dataset),
    }
    warning = sigma_floor_warning(model, dataset, sigma_policy)
    if warning:
        metrics["sigma_warning"] = warning
        log(f"warning: {warning}")
    return metrics, passed


def sigma_floor_warning(model: Model, dataset: Dataset, sigma_policy: str) -> str:
    """Where a learned or fitted σ ends at the floor of continuous data (five.model.models), the data's noise may
    lie below it, and then the likelihood is too low: say so. Not for FIF's own σ, fixed by β and never floored,
    nor for discrete data, whose floor is their quantisation."""
    log_sigma = float(model.log_sigma.detach())
    floored = sigma_policy == "fitted" or model.learns_sigma
    if dataset.discrete_levels is not None or not floored or abs(log_sigma - model.log_sigma_floor) > SIGMA_AT_FLOOR:
        return ""
    return (
        f"σ = {math.exp(log_sigma):.3g} sits at the floor of a learned σ on continuous data "
        f"({math.exp(model.log_sigma_floor):g} in the data's units, made for a spread near 1): if the data's noise "
        "is smaller, the NLL is higher than the model's would be without the floor"
    )


def check_images_possible(dataset: Dataset) -> None:
    """Fail before the long work where the data set's examples cannot be drawn as image grids."""
    from five.run.images import as_images  # torchvision, only when images are asked for

    as_images(torch.empty(0, *dataset.example_shape), dataset.example_shape)


def evaluated_examples(dataset: Dataset, split: str) -> torch.Tensor:
    """The split's examples, refused where too few for the collapse metrics (variances over them)."""
    examples = dataset.split(split)
    if len(examples) < MIN_EVALUATED_EXAMPLES:
        raise DataError(
            f"split {split!r} of {dataset.name} holds {len(examples)} example; the collapse metrics are "
            f"variances over the evaluated examples, which need at least {MIN_EVALUATED_EXAMPLES}"
        )
    return examples


def evaluate_run(
    run_dir: Path,
    device: torch.device,
    importance_samples: int = 1000,
    split: str = "test",
    batch_size: int = 256,
    log: Callable[[str], None] = print,
    data_dir: Path | None = None,
    image_dir: Path | None = None,
    model_selection: str = "best",
    sigma: str = "own",
    cache_dir: Path | None = None,
    load: Callable[[str, Path | None], Dataset] = load_dataset,
) -> dict:
    """All metrics of spec §2–3 for the run in `run_dir` on `split`, at the `best` (validation NLL) or the
    `last` checkpoint, with the model's `own` σ or one `fitted` on validation data (FIF, whose σ is part of
    its definition, then also reports its NLL at its own σ); with `image_dir`, also PNG grids; `cache_dir`
    keeps what every evaluation of a sweep computes alike (the manifold's true posterior); `load`: as load_run's.
    A model with no finite likelihood bound there (NoLikelihoodBound) is recorded as diverged, with the reason."""
    check_evaluation_options(importance_samples, batch_size, sigma)
    started = time.perf_counter()
    record_path = Path(run_dir) / TRAIN_JSON
    record = read_train_record(record_path) if record_path.exists() else {}
    if record.get("status") == "diverged":  # its last checkpoint (if any) is not a result: report the divergence
        log(f"{run_dir} diverged ({record.get('error')}); not evaluated")
        return diverged_metrics(record, sigma, importance_samples, split)
    config, model, dataset, state = load_run(run_dir, device, data_dir, model_selection, load)
    if image_dir is not None:
        check_images_possible(dataset)
    if dataset.note:
        log(dataset.note)
    generator = torch.Generator(device=device).manual_seed(EVALUATION_SEED)
    x_all = dequantize(evaluated_examples(dataset, split).to(device), dataset.discrete_levels, generator)
    evaluated = {"split": split, "model_selection": model_selection, "checkpoint_epoch": state["epoch"]}
    try:
        metrics, passed = likelihood_metrics(
            model, x_all, dataset, sigma, importance_samples, batch_size, generator, device, log
        )
    except NoLikelihoodBound as error:
        reason = f"no likelihood bound on the {split} split at epoch {state['epoch']}: {error}"
        log(f"{run_dir}: {reason}; recorded as diverged")
        return diverged_metrics({"config": config.to_dict()}, sigma, importance_samples, split, reason) | evaluated
    metrics |= evaluated | {"selection_val_nll": state.get("val_nll"), "train_status": record.get("status")}
    if config.dataset == "manifold":
        log(f"comparing the posterior with the true one on {min(POSTERIOR_EXAMPLES, len(x_all))} examples")
        metrics.update(manifold_posterior_metrics(model, x_all, passed["log_likelihood"], generator, cache_dir))
    check_finite(metrics, f"evaluating {run_dir}")
    if image_dir is not None:
        from five.run.images import write_image_grids

        metrics["image_grids"] = [str(path) for path in write_image_grids(model, x_all, Path(image_dir), generator)]
    metrics["wall_time_s"] = time.perf_counter() - started
    metrics["config"] = config.to_dict()
    return metrics


def all_finite(value) -> bool:
    """No nan or inf in a number, a tensor, or a list or dict of them (anything else counts as finite)."""
    if isinstance(value, torch.Tensor):
        return not value.is_floating_point() or bool(torch.isfinite(value).all())
    if isinstance(value, (float, np.floating)):
        return math.isfinite(value)
    if isinstance(value, (list, tuple)):
        return all(all_finite(item) for item in value)
    if isinstance(value, dict):
        return all(all_finite(item) for item in value.values())
    return True


def check_finite(values: dict, what: str) -> None:
    """eval.json holds only numbers JSON can: a value that came out nan or inf (weights so large that an
    activation overflows, say) is one clear error, not the non-standard NaN/Infinity most JSON readers refuse."""
    broken = non_finite(values)
    if broken:
        raise FiveError(f"{what} gave nan or inf for {', '.join(broken)}; nothing was written")


def non_finite(values: dict) -> list[str]:
    return [key for key, value in values.items() if not all_finite(value)]
