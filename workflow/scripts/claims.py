"""Snakemake script of rule claims: runs.csv (and the step-time tables, where a claim asks for step times) →
verdicts of the config's claims (claims.csv, .md, .txt)."""

from pathlib import Path

import pandas as pd

from five.claims import evaluate_claims, write_claims

snakemake = globals()["snakemake"]
runs = pd.read_csv(snakemake.input.runs)
step_times = pd.concat([pd.read_csv(path) for path in snakemake.input.step_times]) if snakemake.input.step_times \
    else None
settings = snakemake.params.claims
table = evaluate_claims(runs, settings, snakemake.params.probes_shown, step_times)
summary = write_claims(table, Path(snakemake.output.md).with_suffix(""), settings, snakemake.params.provenance)
Path(snakemake.output.summary).write_text(summary + "\n")
Path(snakemake.log[0]).write_text(summary + "\n")
