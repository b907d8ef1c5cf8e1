"""Snakemake script of rule tables: runs.csv → the main table and the budget ablation (CSV, Markdown, LaTeX)."""

from pathlib import Path

import pandas as pd

from five.base.config import NO_PROBES
from five.sweep.aggregate import (
    attach_references,
    evaluation_caption,
    main_caption,
    summarise,
    with_own_sigma_rows,
    write_tables,
)

snakemake = globals()["snakemake"]
runs = pd.read_csv(snakemake.input.runs)
shown_models = snakemake.params.probes_shown
references = snakemake.params.references
selection = snakemake.params.model_selection
made_from = "Made from: " + ", ".join(f"{key} {value}" for key, value in snakemake.params.provenance.items()) + "."
main_runs, budget_runs = with_own_sigma_rows(runs), runs[runs["probes"] != NO_PROBES]
main = attach_references(summarise(main_runs, shown_models), references)
write_tables(
    main,
    Path(snakemake.output.main_csv).with_suffix(""),
    "Test likelihood by latent dimension",
    f"{main_caption(main, shown_models, selection)} {evaluation_caption(main_runs)} {made_from}",
)
budget = attach_references(summarise(budget_runs), references)
write_tables(
    budget,
    Path(snakemake.output.budget_csv).with_suffix(""),
    "Hutchinson budget ablation",
    f"FIF and FIVE at every budget K; best per column in bold; {selection}. {evaluation_caption(budget_runs)} "
    f"{made_from}",
)
Path(snakemake.log[0]).write_text(Path(snakemake.output.main_md).read_text())
