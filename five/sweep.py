"""The sweep table: a validated workflow config → one row per training run.

Per-model axes are rows, not a blind product: the Hutchinson budget multiplies only fif and five (the other
models get probes = 0, meaning "not applicable"), and per-dataset settings (latent dims, epochs, …) apply to
that dataset's rows only.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from five.config import MODELS_WITH_PROBES
from five.errors import ConfigError

RUN_DIR = "{results}/{dataset}/{model}/d{latent_dim}/k{probes}/s{seed}"
TRAIN_SETTINGS = ("epochs", "batch_size", "lr", "architecture", "hidden_width", "checkpoint_every", "eval_every",
                  "patience")


def check_config(config: dict, schema_path: str | Path) -> None:
    """Validate against the closed JSON schema with one line naming the offending key (Snakemake's own
    validation, which also fills in defaults, follows; its message dumps the whole sub-schema)."""
    import jsonschema
    import yaml

    schema = yaml.safe_load(Path(schema_path).read_text())
    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema).iter_errors(config))
    if error is not None:
        where = ".".join(str(part) for part in error.absolute_path) or "the top level"
        raise ConfigError(f"invalid config at {where}: {error.message}")


def sweep_table(config: dict, results: str = "results") -> pd.DataFrame:
    """One row per run: dataset, model, latent_dim, probes, seed, beta, training settings, run_dir."""
    rows = []
    for dataset, settings in config["datasets"].items():
        for model, model_settings in config["models"].items():
            budgets = model_settings.get("probes", [1]) if model in MODELS_WITH_PROBES else [0]
            for latent_dim in settings["latent_dims"]:
                for probes in budgets:
                    if probes > latent_dim:
                        raise ConfigError(f"models.{model}.probes has K={probes} > latent dim {latent_dim} of "
                                          f"datasets.{dataset}.latent_dims (the budget must satisfy K <= d)")
                    for seed in config["seeds"]:
                        row = {"dataset": dataset, "model": model, "latent_dim": latent_dim, "probes": probes,
                               "seed": seed, "beta": model_settings.get("beta"),
                               **{key: settings.get(key) for key in TRAIN_SETTINGS},
                               "importance_samples": settings["importance_samples"]}
                        row["run_dir"] = RUN_DIR.format(results=results, **row)
                        rows.append(row)
    table = pd.DataFrame(rows)
    duplicated = table["run_dir"].duplicated()
    if duplicated.any():
        raise ConfigError(f"the sweep lists a run twice: {table.loc[duplicated, 'run_dir'].iloc[0]} "
                          "(repeated latent dims, budgets or seeds?)")
    return table


def train_arguments(row: dict) -> str:
    """The `five train` options of one sweep row (rows are the only place a run's settings come from)."""
    parts = [f"--model {row['model']}", f"--dataset {row['dataset']}", f"--latent-dim {row['latent_dim']}",
             f"--seed {row['seed']}"]
    if row["model"] in MODELS_WITH_PROBES:
        parts.append(f"--probes {row['probes']}")
    if row["model"] == "fif" and row.get("beta") is not None:
        parts.append(f"--beta {row['beta']}")
    for key in TRAIN_SETTINGS:
        if row.get(key) is not None and not pd.isna(row[key]):
            parts.append(f"--{key.replace('_', '-')} {row[key]}")
    return " ".join(parts)
