"""Reading a sweep's estimate (results/estimate.csv, written by `five estimate`) where the workflow needs it:
cluster runtimes and predicted-vs-actual times. Free of torch, so that the workflow can import it at parse time."""

from __future__ import annotations

import csv
import math
from functools import lru_cache
from pathlib import Path

from five.errors import ConfigError

PREDICTED = {"train": "predicted_train_s", "evaluate": "predicted_evaluate_s"}


@lru_cache(maxsize=None)
def read_estimate(path: str) -> dict[str, dict]:
    """run_dir → its estimate row."""
    if not Path(path).is_file():
        raise ConfigError(f"a runtime of `estimate` needs {path}: make it first with `snakemake estimate "
                          f"--configfile …` (or `five estimate`) on the kind of device the jobs will use")
    with open(path, newline="") as file:
        return {row["run_dir"]: row for row in csv.DictReader(file)}


def estimated_minutes(path: str, run_dir: str, rule: str, safety_factor: float) -> int:
    """A job's cluster runtime: (predicted seconds × safety factor + start-up) in whole minutes."""
    row = read_estimate(path).get(run_dir)
    if row is None:
        raise ConfigError(f"{path} has no estimate for {run_dir} (the sweep changed since it was made): run "
                          "`snakemake estimate --configfile …` again")
    seconds = float(row[PREDICTED[rule]]) * safety_factor + float(row["job_startup_s"])
    return max(1, math.ceil(seconds / 60))
