"""Snakemake script of rule config_snapshot: the validated configuration (defaults filled in) for the report, named
by its hash. The snapshots of earlier edits are removed, so that going back to one of them is again a snapshot to
make, which reruns the aggregation (workflow/rules/common.smk, CONFIG_SNAPSHOT)."""

from pathlib import Path

import yaml

from five.sweep.table import is_fingerprint

snakemake = globals()["snakemake"]
provenance = snakemake.params.provenance
output = Path(snakemake.output[0])
header = f"# experiment {provenance['experiment']}, config hash {provenance['config_hash']}\n"
output.write_text(header + yaml.safe_dump(snakemake.config, sort_keys=False))
earlier = [
    path
    for path in output.parent.glob("*.yaml")
    if path != output
    and path.is_file()
    and not path.is_symlink()
    and path.suffix == ".yaml"
    and is_fingerprint(path.stem)
]
for path in earlier:
    path.unlink()
Path(snakemake.log[0]).write_text(f"wrote {output}; removed the snapshots of other configs: {len(earlier)}\n")
