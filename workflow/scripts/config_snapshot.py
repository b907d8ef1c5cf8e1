"""Snakemake script of rule config_snapshot: the validated configuration (defaults filled in) for the report."""

from pathlib import Path

import yaml

snakemake = globals()["snakemake"]
provenance = snakemake.params.provenance
header = f"# experiment {provenance['experiment']}, config hash {provenance['config_hash']}\n"
Path(snakemake.output[0]).write_text(header + yaml.safe_dump(snakemake.params.config, sort_keys=False))
Path(snakemake.log[0]).write_text(f"wrote {snakemake.output[0]}\n")
