"""Reading a sweep's estimate (results/estimate.csv, written by `five estimate`) where the workflow needs it:
cluster runtimes and predicted-vs-actual times. Free of torch, so that the workflow can import it at parse time."""

from __future__ import annotations

import csv
import math
from functools import lru_cache
from pathlib import Path

from five.base.errors import ConfigError
from five.sweep.table import device_kind, estimate_key

ESTIMATE_FILES = ("estimate.csv", "estimate.md")  # what `five estimate` writes into its --out-dir
REMAKE_ADVICE = "make it again with `snakemake estimate --configfile …` (or `five estimate`)"
PREDICTED = {"train": "predicted_train_s", "evaluate": "predicted_evaluate_s"}
MAX_RUNTIME_MINUTES = 525_600  # a year: beyond any cluster's time limit (the schema's bound on a given runtime)


@lru_cache(maxsize=None)
def read_estimate(path: str) -> dict[str, dict]:
    """run_dir → its estimate row."""
    if not Path(path).is_file():
        raise ConfigError(
            f"a runtime of `estimate` needs {path}: make it first with `snakemake estimate "
            f"--configfile …` (or `five estimate`) on the kind of device the jobs will use"
        )
    try:
        with open(path, newline="", encoding="utf-8") as file:
            return {row["run_dir"]: row for row in csv.DictReader(file)}
    except (UnicodeDecodeError, csv.Error, KeyError) as error:
        raise ConfigError(f"{path} is damaged ({type(error).__name__}: {error}); {REMAKE_ADVICE}") from None


def check_estimate_of(path: Path, results: str) -> None:
    """`five estimate` replaces only an estimate of its own experiment (rows whose run folders lie in `results`)
    or a damaged one: another experiment's estimate would be lost, and its cluster runtimes with it."""
    if not path.is_file():
        return
    try:
        runs = read_estimate.__wrapped__(str(path))  # not the cache: the file may have changed since a read
    except ConfigError:
        return  # damaged: remade anyway
    others = [run for run in runs if run is not None and not run.startswith(f"{results}/")]
    if others:
        raise ConfigError(
            f"{path} holds the estimate of another experiment (its run {others[0]} is not in {results}/): name "
            "another --out-dir, or remove that file"
        )


def estimate_seconds(row: dict, column: str, path: str) -> float:
    """A time of an estimate row, refused in one line where it is missing, not a number, infinite or negative."""
    try:
        value = float(row[column])
    except (KeyError, TypeError, ValueError):
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise ConfigError(
            f"{path} is damaged: {column} of {row.get('run_dir')} is {row.get(column)!r}, not a time; {REMAKE_ADVICE}"
        )
    return value


def packed_for(row: dict, members: int) -> bool:
    """Whether an estimate row's packed times (`five estimate --pack-seeds`) are of a pack of `members` seeds."""
    value = row.get("packed_members")
    if value in (None, ""):
        return False
    try:
        size = float(value)
    except ValueError:
        size = math.nan
    if not (math.isfinite(size) and size >= 1 and size == int(size)):
        raise ConfigError(
            f"estimate.csv is damaged: packed_members of {row.get('run_dir')} is {value!r}; {REMAKE_ADVICE}"
        )
    return int(size) == members


def estimated_minutes(path: str, runs: list[dict], rule: str, config: dict) -> int:
    """The cluster runtime of a job running `runs` (sweep rows: one, or a sweep point's packed seeds): (predicted
    seconds × the config's safety factor + start-up) in whole minutes. A pack takes its members' packed shares
    where the estimate has them (`five estimate --pack-seeds`), else the sum of their solo times (an upper
    bound). An estimate made for other settings of a run (estimate_key) is refused, not used."""
    rows = []
    for run in runs:
        row = read_estimate(path).get(run["run_dir"])
        if row is None or row.get("estimate_key") != estimate_key(run, config):
            what = "no estimate" if row is None else "an estimate made for other settings"
            raise ConfigError(
                f"{path} has {what} for {run['run_dir']} (the sweep changed since it was made): run "
                "`snakemake estimate --configfile …` again"
            )
        if config["device"] != "auto" and device_kind(row.get("device")) != config["device"]:
            raise ConfigError(
                f"{path} was made on {row.get('device') or 'an unstated device'}, but the config's jobs run on "
                f"{config['device']}: run `snakemake estimate --configfile …` again"
            )
        rows.append(row)
    column = PREDICTED[rule]
    if len(rows) > 1 and all(packed_for(row, len(rows)) and row.get(f"{column}_packed") for row in rows):
        column += "_packed"
    seconds = sum(estimate_seconds(row, column, path) for row in rows) * config["estimate_safety_factor"]
    seconds += estimate_seconds(rows[0], "job_startup_s", path)
    minutes = max(1, math.ceil(seconds / 60))
    if minutes > MAX_RUNTIME_MINUTES:
        raise ConfigError(
            f"{path} predicts {minutes:,} minutes for the {rule} job of {runs[0]['run_dir']}, beyond a year "
            f"({MAX_RUNTIME_MINUTES:,}), which no cluster grants: run the sweep on a faster device or shorten it"
        )
    return minutes
