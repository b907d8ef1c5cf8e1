"""Training-step timing shared by the benchmarks (ratios to the diagonal VAE, interleaved repetitions, medians,
so that machine load affects all models alike) and by `five estimate` (seconds per step of a sweep's runs)."""

from __future__ import annotations

import math
import statistics
import time

import torch

from five.base.config import STEP_TIMING_ROUNDS, TrainConfig, point_label
from five.data.datasets import Dataset
from five.model.models import build_model
from five.model.pack import pack_models
from five.run.steps import GraphedStep, eager_step, model_batch
from five.run.train import build_optimizer


def synthetic_dataset(shape: tuple[int, ...], architecture: str, n: int = 1024) -> Dataset:
    levels = torch.randint(0, 256, (n, *shape), dtype=torch.uint8)
    return Dataset("bench", {"train": levels, "test": levels[:256]}, 256, architecture, 512)


def make_step(
    model_name: str,
    dataset: Dataset,
    latent_dim: int,
    probes: int,
    device: torch.device,
    batch_size: int = 128,
    include_data: bool = True,
    compile_objective: bool = False,
    encoder_product: str | None = None,
    objective=None,
    surrogate_point: str | None = None,
    architecture: str | None = None,
    hidden_width: int = 512,
    cuda_graph: bool = False,
    pack: int = 1,
):
    """A closure running one optimiser step, as train_epoch does (data preparation optional); fif/five with
    `encoder_product` forced, or with another `objective(model, x, *noise)` (the reference formulation);
    `cuda_graph`: the step captured as a CUDA graph, as training runs it on a GPU (five.run.steps); `pack`: that
    many seeds trained as one packed model (five.model.pack), each member with its own batch."""
    config = TrainConfig(
        model=model_name,
        dataset=dataset.name,
        latent_dim=latent_dim,
        probes=probes,
        hidden_width=hidden_width,
        batch_size=batch_size,
        surrogate_point=surrogate_point,
        architecture=architecture,
    )
    model = timed_model(config, dataset, device, pack, encoder_product, objective, compile_objective)
    optimizer = build_optimizer(model, config, capturable=cuda_graph)
    data = dataset.split("train").to(device)
    generators = [torch.Generator(device=device).manual_seed(seed) for seed in range(pack)]
    shape = (batch_size,) if pack == 1 else (pack, batch_size)
    batch = batch_source(model, data, dataset.discrete_levels, generators, shape, include_data)
    run = (
        GraphedStep(model, optimizer, batch, generators, [shape])
        if cuda_graph
        else eager_step(model, optimizer, batch, generators)
    )

    def step():  # the indices drawn outside the step, as train_epoch does
        run(torch.randint(0, data.shape[0], shape, generator=generators[0], device=device))

    step.model = model
    return step


def timed_model(
    config: TrainConfig, dataset: Dataset, device, pack: int, encoder_product, objective, compile_objective
):
    """The model of make_step: seeds 0 … pack − 1 (packed when more than one), its estimator or objective
    replaced where asked."""
    members = []
    for seed in range(pack):
        torch.manual_seed(seed)
        members.append(build_model(config, dataset, device, members=pack).to(device))
    model = members[0] if pack == 1 else pack_models(members)
    if encoder_product:
        model.forced_encoder_product = encoder_product
    if objective is not None:
        model.objective = lambda x, *noise: objective(model, x, *noise)
    if compile_objective:
        model.compile_objective()
    return model


def batch_source(model, data: torch.Tensor, levels, generators, shape: tuple[int, ...], include_data: bool):
    """make_step's `batch(indices, generators)`: the examples at `indices` dequantised and the model's noise,
    as training draws them; without `include_data` the same examples every step, with fresh noise."""
    batch = model_batch(model, data, levels, 1 if len(shape) == 1 else shape[0])
    if include_data:
        return batch
    fixed_x = batch(torch.arange(math.prod(shape), device=data.device).reshape(shape), generators)[0]
    return lambda indices, gens: (fixed_x, model.draw_noise(fixed_x, gens[0]))


def time_steps(
    steps: dict[str, callable], repeats: int, inner: int, device: torch.device, warmup: int = 3
) -> dict[str, float]:
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


def side_by_side_step_times(
    configs: list[TrainConfig],
    dataset: Dataset,
    device: torch.device,
    graphed: bool,
    rounds: int = STEP_TIMING_ROUNDS,
    repeats: int = 1,
    inner: int = 20,
    compile_objective: bool = False,
    log=print,
) -> list[dict]:
    """Seconds per training step of each configuration, timed in one process on one device, the configurations
    taking turns within each round (time_steps), in an order that rotates from round to round (a drift within
    a round then favours no configuration): round r of two configurations is a pair measured under the same
    conditions, which a cost claim compares (C3), unlike epoch times of jobs on whatever host ran them."""
    steps = {
        index: step_of(config, dataset, device, graphed, compile_objective) for index, config in enumerate(configs)
    }
    rows = []
    for round_index in range(rounds):
        shift = round_index % len(configs)
        order = list(steps)[shift:] + list(steps)[:shift]
        seconds = time_steps(
            {index: steps[index] for index in order}, repeats, inner, device, warmup=3 if round_index == 0 else 0
        )
        rows += [{"round": round_index, "step_time_s": seconds[index], **configs[index].to_dict()} for index in steps]
        labels = [point_label(c.model, c.surrogate_point, c.latent_dim, c.probes) for c in configs]
        log(
            f"round {round_index + 1}/{rounds}: "
            + ", ".join(f"{label} {1e3 * seconds[index]:.2f} ms" for index, label in enumerate(labels))
        )
    return rows


def step_of(config: TrainConfig, dataset: Dataset, device: torch.device, graphed: bool, compile_objective: bool):
    """`config`'s training step as its job runs it (make_step): a batch of at most the training examples."""
    return make_step(
        config.model,
        dataset,
        config.latent_dim,
        config.probes,
        device,
        batch_size=min(config.batch_size, dataset.split("train").shape[0]),
        surrogate_point=config.surrogate_point,
        architecture=config.architecture,
        hidden_width=config.hidden_width,
        cuda_graph=graphed,
        compile_objective=compile_objective,
    )
