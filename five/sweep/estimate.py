"""What a sweep will cost before it runs (`five estimate`): per run, the predicted training and evaluation
time on the chosen device, from a few timed steps of the real model of each distinct configuration.

Timing is per distinct configuration (seeds share it): a few warmed-up optimiser steps (five.run.timing, the
benchmarks' code), one posterior and one IWAE chunk on a few examples. Extrapolation: training = epochs ×
steps per epoch × step time + validations × one validation; evaluation = the σ fit (if any) + the test
set's IWAE passes. Absent MNIST/CIFAR-10 files are replaced by random images of their shape and official
split sizes: the cost does not depend on the pixels. Patience can only stop a run earlier: the training
figure is its cost at the configured epochs.
"""

from __future__ import annotations

import math
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import pandas as pd
import torch

from five.base.config import DEFAULT_BATCH_SIZE, cuda_graph_mode, model_dir, point_label
from five.base.errors import DataError
from five.base.files import atomic_write
from five.data import catalog
from five.data.catalog import DATA_SHAPES
from five.data.datasets import Dataset, dequantize, load_dataset
from five.model.estimators import iwae_log_likelihood
from five.run.steps import check_cuda_graph_mode, graphed_or_eager, uses_cuda_graph
from five.run.timing import make_step, time_steps
from five.run.validation import VALIDATION_EXAMPLES, VALIDATION_SAMPLES, default_eval_every
from five.sweep.estimate_files import ESTIMATE_FILES
from five.sweep.table import estimate_key

TIMING_KEYS = [
    "dataset",
    "model",
    "latent_dim",
    "probes",
    "surrogate_point",
    "batch_size",
    "architecture",
    "hidden_width",
]
SIGMA_SEARCH_EVALUATIONS = 25  # validation IWAEs of a σ fit (scipy's bounded Brent, measured 20–30)
EXAMPLES, SAMPLES = 8, 32  # the evaluation chunk that is timed
STAND_IN_EXAMPLES = 1024


def dataset_for_timing(name: str, data_dir: Path | None) -> tuple[Dataset, dict[str, int], bool]:
    """(data set, split sizes, real?): the real data where present, else random images of the data set's
    shape and official split sizes (MNIST, CIFAR-10 before their download)."""
    try:
        dataset = load_dataset(name, data_dir)
        return dataset, {split: int(part.shape[0]) for split, part in dataset.splits.items()}, True
    except DataError:
        if name not in catalog.OFFICIAL_SIZES:
            raise
    training, test = catalog.OFFICIAL_SIZES[name]
    images = torch.randint(0, 256, (STAND_IN_EXAMPLES, *DATA_SHAPES[name]), dtype=torch.uint8)
    splits = {"train": images, "validation": images[:VALIDATION_EXAMPLES], "test": images[:EXAMPLES]}
    sizes = {"train": training - catalog.VALIDATION_SIZE, "validation": catalog.VALIDATION_SIZE, "test": test}
    return Dataset(name, splits, 256, "conv", 512), sizes, False


def time_configuration(
    row: dict,
    dataset: Dataset,
    device: torch.device,
    compiled: bool,
    steps: int = 1,
    cuda_graph: bool = False,
    pack: int = 1,
) -> dict[str, float]:
    """Seconds per training step (as a CUDA graph where the jobs will capture it), per example of a posterior,
    per example × importance sample of IWAE; with `pack` > 1 also the seconds per member of a step of that many
    seeds packed into one model (five.model.pack)."""

    def timed_step(members: int) -> tuple[float, torch.nn.Module]:
        step = make_step(
            row["model"],
            dataset,
            int(row["latent_dim"]),
            int(row["probes"]),
            device,
            batch_size=int(row["batch_size"]),
            compile_objective=compiled,
            surrogate_point=row["surrogate_point"] or None,
            architecture=row["architecture"],
            hidden_width=int(row["hidden_width"]),
            cuda_graph=cuda_graph,
            pack=members,
        )
        return time_steps({"step": step}, repeats=steps, inner=1, device=device, warmup=1)["step"], step.model

    step_s, model = timed_step(1)
    packed = {"step_s_packed": timed_step(pack)[0] / pack} if pack > 1 else {}
    generator = torch.Generator(device=device).manual_seed(0)
    x = dequantize(dataset.split("test")[:EXAMPLES].to(device), dataset.discrete_levels, generator)
    with torch.no_grad():
        posterior = model.posterior(x)
        chunk = {
            "posterior": lambda: model.posterior(x),
            "iwae": lambda: iwae_log_likelihood(x, posterior, model.log_joint, SAMPLES, generator, SAMPLES),
        }
        chunk_s = time_steps(chunk, repeats=1, inner=1, device=device, warmup=1)
    posterior_s, iwae_s = chunk_s["posterior"], chunk_s["iwae"]
    return {
        "step_s": step_s,
        "posterior_s_per_example": posterior_s / x.shape[0],
        "iwae_s_per_sample": iwae_s / (x.shape[0] * SAMPLES),
        **packed,
    }


def interpolated_timing(row: dict, timings: dict) -> dict[str, float]:
    """The timing at budget K between the timed smallest and largest budgets of the same configuration."""
    position = TIMING_KEYS.index("probes")
    same = {
        key[position]: value
        for key, value in timings.items()
        if key[:position] + key[position + 1 :] == tuple(row[k] for k in TIMING_KEYS if k != "probes")
    }
    low, high = min(same), max(same)
    weight = (row["probes"] - low) / (high - low)
    return {name: (1 - weight) * same[low][name] + weight * same[high][name] for name in same[low]}


def predicted_seconds(row: dict, timing: dict, sizes: dict[str, int], sigma: str) -> dict[str, float]:
    """Training and evaluation time of one run from its configuration's timing."""
    epochs = int(row["epochs"])
    eval_every = int(row["eval_every"]) if pd.notna(row.get("eval_every")) else default_eval_every(epochs)
    validations = epochs // eval_every + (epochs % eval_every != 0)
    validation_size = min(VALIDATION_EXAMPLES, sizes.get("validation", sizes["train"]))
    one_validation = validation_size * (
        timing["posterior_s_per_example"] + VALIDATION_SAMPLES * timing["iwae_s_per_sample"]
    )
    steps = epochs * math.ceil(sizes["train"] / int(row["batch_size"]))
    train_s = steps * timing["step_s"] + validations * one_validation
    packed = (
        {"predicted_train_s_packed": steps * timing["step_s_packed"] + validations * one_validation}
        if "step_s_packed" in timing
        else {}
    )
    test_pass = sizes["test"] * (
        timing["posterior_s_per_example"] + int(row["importance_samples"]) * timing["iwae_s_per_sample"]
    )
    evaluate_s = test_pass
    if sigma == "fitted":
        evaluate_s += validation_size * (
            timing["posterior_s_per_example"]
            + SIGMA_SEARCH_EVALUATIONS * VALIDATION_SAMPLES * timing["iwae_s_per_sample"]
        )
        if row["model"] == "fif":
            evaluate_s += test_pass  # FIF is also evaluated at its own σ
    return {"predicted_train_s": train_s, "predicted_evaluate_s": evaluate_s, **packed}


def job_startup_seconds() -> float:
    """A job's fixed cost before its first step: a fresh Python importing five's training code."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import five.run.train, five.run.evaluate, five.run.tracking"], check=True)
    return time.perf_counter() - started


def estimate_sweep(
    config: dict,
    sweep: pd.DataFrame,
    device: torch.device,
    data_dir: Path | None,
    log: Callable[[str], None] = print,
    pack_seeds: bool = False,
) -> pd.DataFrame:
    """One row per run of `sweep`: its predicted training and evaluation seconds on `device`; with `pack_seeds`,
    also its training seconds were all seeds of its sweep point trained as one packed model."""
    datasets = {name: dataset_for_timing(name, data_dir) for name in sweep["dataset"].unique()}
    sweep = with_defaults(sweep, {name: dataset for name, (dataset, _, _) in datasets.items()})
    distinct = sweep.drop_duplicates(TIMING_KEYS)
    timed = budget_ends(distinct)
    log(
        f"timing {len(timed)} of the {len(distinct)} distinct configurations of {len(sweep)} runs on {device} "
        "(budgets between the smallest and largest interpolated)"
    )
    modes = {name: cuda_graph_mode(settings.get("cuda_graph", "auto")) for name, settings in config["datasets"].items()}
    for mode in modes.values():
        check_cuda_graph_mode(mode, device)  # `on` where the jobs could not capture: one line, before timing
    graphed = {name: uses_cuda_graph(mode, device) for name, mode in modes.items()}  # as the jobs will step
    pack = len(config["seeds"]) if pack_seeds else 1
    timings = time_configurations(timed, datasets, config, device, modes, graphed, pack, log)
    for row in distinct.to_dict("records"):
        key = tuple(row[k] for k in TIMING_KEYS)
        if key not in timings:
            timings[key] = interpolated_timing(row, timings)
    startup = job_startup_seconds()
    rows = []
    for row in sweep.to_dict("records"):
        _, sizes, real = datasets[row["dataset"]]
        timing = timings[tuple(row[key] for key in TIMING_KEYS)]
        rows.append(
            {
                **run_identity(row),
                "estimate_key": estimate_key(row, config),
                **timing,
                **predicted_seconds(row, timing, sizes, config.get("sigma", "fitted")),
                "job_startup_s": startup,
                "real_data": real,
                "device": str(device),
                "cuda_graph": graphed[row["dataset"]],
                **({"packed_members": pack} if pack > 1 else {}),  # the pack its *_packed times are of
            }
        )
    return pd.DataFrame(rows)


def budget_ends(distinct: pd.DataFrame) -> pd.DataFrame:
    """The configurations to time: cost is linear in the budget K (one batched tangent per probe,
    benchmarks/README.md), so only the smallest and largest K of each are timed and the rest interpolated."""
    others = [key for key in TIMING_KEYS if key != "probes"]
    budgets = distinct.groupby(others, dropna=False)["probes"]
    return distinct[(distinct["probes"] == budgets.transform("min")) | (distinct["probes"] == budgets.transform("max"))]


def run_identity(row: dict) -> dict:
    """Which run a row of the estimate is about."""
    return {
        "run_dir": row["run_dir"],
        "dataset": row["dataset"],
        "model": model_dir(row["model"], row["surrogate_point"] or None),
        "latent_dim": row["latent_dim"],
        "probes": row["probes"],
        "seed": row["seed"],
        "epochs": row["epochs"],
    }


def with_defaults(sweep: pd.DataFrame, datasets: dict) -> pd.DataFrame:
    """The sweep with each run's architecture, width and batch size filled in as its job will train it."""
    sweep = sweep.copy()
    for column, default in (("architecture", "default_architecture"), ("hidden_width", "default_hidden_width")):
        sweep[column] = sweep[column].fillna(sweep["dataset"].map(lambda name: getattr(datasets[name], default)))
    sweep["batch_size"] = sweep["batch_size"].fillna(DEFAULT_BATCH_SIZE)
    sweep["surrogate_point"] = sweep["surrogate_point"].fillna("")  # "" for the models without the variant
    return sweep


def time_configurations(timed, datasets, config, device, modes, graphed, pack, log) -> dict[tuple, dict]:
    """The timing of each configuration of `timed`, as its job will step (threads, CUDA graph or eager); where a
    capture fails under `auto`, that data set's steps are timed eagerly (`graphed` records it)."""
    timings, threads = {}, torch.get_num_threads()
    for index, row in enumerate(timed.to_dict("records"), 1):
        dataset, _, _ = datasets[row["dataset"]]
        torch.set_num_threads(int(config["datasets"][row["dataset"]].get("threads", 1)))  # as the job will
        started = time.perf_counter()
        timing, graphed[row["dataset"]] = graphed_or_eager(
            lambda graph: time_configuration(
                row, dataset, device, bool(config.get("compile")), cuda_graph=graph, pack=pack
            ),
            modes[row["dataset"]] if graphed[row["dataset"]] else "off",  # eager after a failed capture
            device,
            lambda line: log(f"{row['dataset']}: {line}"),
        )
        timings[tuple(row[key] for key in TIMING_KEYS)] = timing
        log(
            f"[{index}/{len(timed)}] {row['dataset']} "
            f"{point_label(row['model'], row['surrogate_point'] or None, row['latent_dim'], row['probes'])}: "
            f"{timing['step_s'] * 1000:.1f} ms/step "
            f"(timed in {time.perf_counter() - started:.1f} s)"
        )
    torch.set_num_threads(threads)
    return timings


def makespan_hours(seconds_per_job: list[float], devices: int) -> float:
    """Wall-clock of the jobs on `devices` devices, longest first onto the least-loaded device (devices beyond
    one per job stay idle)."""
    loads = [0.0] * min(devices, max(1, len(seconds_per_job)))
    for job in sorted(seconds_per_job, reverse=True):
        loads[loads.index(min(loads))] += job
    return max(loads) / 3600


def estimate_summary(estimate: pd.DataFrame, jobs: pd.DataFrame, devices: int, device_name: str) -> str:
    """The sweep's device-hours (packed too, where timed) and its wall-clock on `devices` devices, in a line."""
    total = jobs["train_h"].sum() + jobs["evaluate_h"].sum()
    wall = makespan_hours(list(3600 * jobs["train_h"]) + list(3600 * jobs["evaluate_h"]), devices)
    summary = (
        f"{len(estimate)} runs on {device_name}: {total:,.2f} device-hours in all "
        f"(training {jobs['train_h'].sum():,.2f} h, evaluation {jobs['evaluate_h'].sum():,.2f} h); "
        f"about {wall:,.2f} h of wall-clock on {devices} device{'s' if devices > 1 else ''}"
    )
    if "predicted_train_s_packed" in estimate:
        packed_h = (
            estimate["predicted_train_s_packed"] + estimate["job_startup_s"] / estimate["seed"].nunique()
        ) / 3600
        summary += (
            f"; with each sweep point's seeds packed into one run (five.model.pack): {packed_h.sum() + jobs['evaluate_h'].sum():,.2f} "
            f"device-hours (training {packed_h.sum():,.2f} h)"
        )
    return summary


def estimate_notes(estimate: pd.DataFrame, device_name: str) -> list[str]:
    """How the estimate was made: threads, start-up, CUDA graphs, the epochs, stand-in data."""
    graphed = sorted(set(estimate.loc[estimate["cuda_graph"], "dataset"])) if "cuda_graph" in estimate else []
    notes = [
        f"Timed on {device_name} with each data set's job threads; per-job start-up {estimate['job_startup_s'].iloc[0]:.1f} s included.",
        f"Training steps timed as CUDA graphs (`cuda_graph`) for: {', '.join(graphed) or 'none'}.",
        "Training is the cost at the configured epochs (patience can only make a run shorter).",
    ]
    stand_in = sorted(set(estimate.loc[~estimate["real_data"], "dataset"]))
    if stand_in:
        notes.append(
            f"{', '.join(stand_in)}: files absent, timed on random images of the same shape and split "
            "sizes (the cost does not depend on the pixels)."
        )
    return notes


def write_estimate(estimate: pd.DataFrame, out_dir: Path, devices: int, device_name: str, experiment: str) -> str:
    """results/estimate.csv (per run) and estimate.md (per data set × model, totals, headed by the experiment's
    name); returns the summary."""
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_name, markdown_name = ESTIMATE_FILES
    atomic_write(out_dir / csv_name, lambda file: file.write(estimate.to_csv(index=False).encode()))
    jobs = estimate.assign(
        train_h=(estimate["predicted_train_s"] + estimate["job_startup_s"]) / 3600,
        evaluate_h=(estimate["predicted_evaluate_s"] + estimate["job_startup_s"]) / 3600,
    )
    table = (
        jobs.groupby(["dataset", "model"])
        .agg(
            runs=("run_dir", "size"),
            train_hours=("train_h", "sum"),
            evaluate_hours=("evaluate_h", "sum"),
            longest_run_hours=("train_h", "max"),
        )
        .reset_index()
    )
    summary = estimate_summary(estimate, jobs, devices, device_name)
    notes = estimate_notes(estimate, device_name)
    text = (
        f"# What the sweep of experiment {experiment} will cost\n\n"
        + summary
        + ".\n\n"
        + table.to_markdown(index=False, floatfmt=".3f")
        + "\n\n"
        + "\n".join(f"- {note}" for note in notes)
        + "\n"
    )
    atomic_write(out_dir / markdown_name, lambda file: file.write(text.encode()))
    return summary
