"""Snakemake script of rule aggregate: every run's JSON files → runs.csv and histories.csv."""

import sys
from pathlib import Path

from five.base.errors import FiveError
from five.sweep.aggregate import collect_runs, timing_report, with_predicted_times
from five.sweep.table import estimate_key

snakemake = globals()["snakemake"]  # provided by Snakemake's script directive
try:
    runs, histories = collect_runs(snakemake.params.sweep, snakemake.params.config_keys)
except FiveError as error:  # one line in the log and on the terminal, not a traceback
    sys.exit(f"five: {error}")
keys = {
    row["run_dir"]: estimate_key(row, snakemake.params.config_keys) for row in snakemake.params.sweep.to_dict("records")
}
runs = with_predicted_times(runs, Path(snakemake.params.estimate), keys)
Path(snakemake.output.timing).write_text(timing_report(runs))
runs.to_csv(snakemake.output.runs, index=False)
histories.to_csv(snakemake.output.histories, index=False)
diverged = int((runs["status"] == "diverged").sum())
Path(snakemake.log[0]).write_text(f"{len(runs)} runs, {diverged} diverged\n")
