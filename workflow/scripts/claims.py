"""Snakemake script of rule claims: runs.csv → verdicts of the config's claims (claims.csv, .md, .txt)."""

from pathlib import Path

import pandas as pd

from five.claims import evaluate_claims, write_claims

snakemake = globals()["snakemake"]
runs = pd.read_csv(snakemake.input[0])
settings = snakemake.params.claims
table = evaluate_claims(runs, settings, snakemake.params.probes_shown)
summary = write_claims(table, Path(snakemake.output.md).with_suffix(""), settings, snakemake.params.provenance)
Path(snakemake.output.summary).write_text(summary + "\n")
Path(snakemake.log[0]).write_text(summary + "\n")
