"""Reading a sweep's estimate (results/estimate.csv, written by `five estimate`) where the workflow needs it:
cluster runtimes and predicted-vs-actual times. Free of torch, so that the workflow can import it at parse time."""

from __future__ import annotations

import csv
import math
from functools import lru_cache
from pathlib import Path

from five.base.errors import ConfigError

PREDICTED = {"train": "predicted_train_s", "evaluate": "predicted_evaluate_s"}


@lru_cache(maxsize=None)
def read_estimate(path: str) -> dict[str, dict]:
    """run_dir → its estimate row."""
    if not Path(path).is_file():
        raise ConfigError(
            f"a runtime of `estimate` needs {path}: make it first with `snakemake estimate "
            f"--configfile …` (or `five estimate`) on the kind of device the jobs will use"
        )
    with open(path, newline="") as file:
        return {row["run_dir"]: row for row in csv.DictReader(file)}


def estimated_minutes(path: str, run_dirs: list[str], rule: str, safety_factor: float) -> int:
    """The cluster runtime of a job running `run_dirs` (one, or a sweep point's packed seeds): (predicted seconds
    × safety factor + start-up) in whole minutes. A pack takes its members' packed shares where the estimate has
    them (`five estimate --pack-seeds`), else the sum of their solo times (an upper bound)."""
    rows = []
    for run_dir in run_dirs:
        row = read_estimate(path).get(run_dir)
        if row is None:
            raise ConfigError(
                f"{path} has no estimate for {run_dir} (the sweep changed since it was made): run "
                "`snakemake estimate --configfile …` again"
            )
        rows.append(row)
    column = PREDICTED[rule]
    if len(rows) > 1 and all(row.get(f"{column}_packed") not in (None, "") for row in rows):
        column += "_packed"
    seconds = sum(float(row[column]) for row in rows) * safety_factor + float(rows[0]["job_startup_s"])
    return max(1, math.ceil(seconds / 60))
