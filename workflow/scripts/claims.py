"""Snakemake script of rule claims: runs.csv (and the step-time tables, where a claim asks for step times) →
verdicts of the config's claims (claims.csv, .md, .txt)."""

import sys
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from five.base.errors import FiveError
from five.base.files import EVAL_JSON
from five.base.metrics import per_example_values, read_evaluation
from five.sweep.claims import evaluate_claims, write_claims

snakemake = globals()["snakemake"]
runs = pd.read_csv(snakemake.input.runs)
step_times = (
    pd.concat([pd.read_csv(path) for path in snakemake.input.step_times]) if snakemake.input.step_times else None
)
settings = snakemake.params.claims


@lru_cache(maxsize=None)
def evaluation(run_dir):
    return read_evaluation(Path(run_dir) / EVAL_JSON)


def per_example(run_dir, metric):
    """A run's values of `metric` per test example, None where its eval.json predates them."""
    values = per_example_values(evaluation(run_dir), metric)
    return None if values is None else np.asarray(values, float)


try:
    table = evaluate_claims(runs, settings, snakemake.params.probes_shown, step_times, per_example)
except FiveError as error:  # one line in the log and on the terminal, not a traceback
    sys.exit(f"five: {error}")
summary = write_claims(table, Path(snakemake.output.md).with_suffix(""), settings, snakemake.params.provenance)
Path(snakemake.output.summary).write_text(summary + "\n")
Path(snakemake.log[0]).write_text(summary + "\n")
