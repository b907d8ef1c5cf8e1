"""Training-step timing shared by the benchmarks (ratios to the diagonal VAE, interleaved repetitions, medians,
so that machine load affects all models alike) and by `five estimate` (seconds per step of a sweep's runs)."""

from __future__ import annotations

import statistics
import time

import torch

from five.config import TrainConfig
from five.data import Dataset, dequantize
from five.models import build_model
from five.steps import GraphedStep, training_step
from five.train import build_optimizer


def synthetic_dataset(shape: tuple[int, ...], architecture: str, n: int = 1024) -> Dataset:
    levels = torch.randint(0, 256, (n, *shape), dtype=torch.uint8)
    return Dataset("bench", {"train": levels, "test": levels[:256]}, 256, architecture, 512)


def make_step(model_name: str, dataset: Dataset, latent_dim: int, probes: int | None, device: torch.device,
              batch_size: int = 128, include_data: bool = True, compile_objective: bool = False,
              encoder_product: str | None = None, objective=None, surrogate_point: str | None = None,
              architecture: str | None = None, hidden_width: int = 512, cuda_graph: bool = False):
    """A closure running one optimiser step, as train_epoch does (data preparation optional); fif/five with
    `encoder_product` forced, or with another `objective(model, x, *noise)` (the reference formulation);
    `cuda_graph`: the step captured as a CUDA graph, as training runs it on a GPU (five.steps)."""
    torch.manual_seed(0)
    config = TrainConfig(model=model_name, dataset=dataset.name, latent_dim=latent_dim, probes=probes,
                         hidden_width=hidden_width, batch_size=batch_size, surrogate_point=surrogate_point,
                         architecture=architecture)
    model = build_model(config, dataset).to(device)
    if encoder_product:
        model.forced_encoder_product = encoder_product
    if objective is not None:
        model.objective = lambda x, *noise: objective(model, x, *noise)
    if compile_objective:
        model.compile_objective()
    optimizer = build_optimizer(model, config, capturable=cuda_graph)
    data = dataset.split("train").to(device)
    generator = torch.Generator(device=device).manual_seed(0)
    fixed_x = dequantize(data[:batch_size], dataset.discrete_levels, generator)
    if cuda_graph:
        graphed = GraphedStep(model, optimizer, data, dataset.discrete_levels, generator, [batch_size])

        def step():  # the batch drawn by the graph, from indices drawn outside it as train_epoch does
            graphed(torch.randint(0, data.shape[0], (batch_size,), generator=generator, device=device))

        step.model = model
        return step

    def step():
        if include_data:
            indices = torch.randint(0, data.shape[0], (batch_size,), generator=generator, device=device)
            x = dequantize(data[indices], dataset.discrete_levels, generator)
        else:
            x = fixed_x
        training_step(model, optimizer, x, generator)

    step.model = model
    return step


def time_steps(steps: dict[str, callable], repeats: int, inner: int, device: torch.device,
               warmup: int = 3) -> dict[str, float]:
    """Median seconds per step of each closure; the closures take turns, round after round."""
    for step in steps.values():  # warm-up (allocator, lazy init, compilation)
        for _ in range(warmup):
            step()
    samples: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            if device.type == "cuda":
                torch.cuda.synchronize()
            started = time.perf_counter()
            for _ in range(inner):
                step()
            if device.type == "cuda":
                torch.cuda.synchronize()
            samples[name].append((time.perf_counter() - started) / inner)
    return {name: statistics.median(values) for name, values in samples.items()}


def slope(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of ys against xs."""
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
    return sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys)) / sum((x - mean_x) ** 2 for x in xs)
