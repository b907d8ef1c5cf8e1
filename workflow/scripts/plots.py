"""Snakemake script of rule plots: runs.csv and histories.csv → the four figures."""

from pathlib import Path

import pandas as pd

from five.sweep import plots

snakemake = globals()["snakemake"]
runs, histories = pd.read_csv(snakemake.input.runs), pd.read_csv(snakemake.input.histories)
shown = snakemake.params.probes_shown
out = snakemake.output
plots.likelihood_vs_latent_dim(runs, shown, Path(out.likelihood))
plots.active_units_vs_latent_dim(runs, shown, Path(out.active))
plots.budget_ablation(runs, Path(out.budget))
plots.training_curves(histories, shown, Path(out.curves))
Path(snakemake.log[0]).write_text("\n".join(out) + "\n")
