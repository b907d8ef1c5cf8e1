"""Snakemake script of rule config_snapshot: the validated configuration (defaults filled in) for the report."""

from pathlib import Path

import yaml

snakemake = globals()["snakemake"]
Path(snakemake.output[0]).write_text(yaml.safe_dump(snakemake.params.config, sort_keys=False))
Path(snakemake.log[0]).write_text(f"wrote {snakemake.output[0]}\n")
