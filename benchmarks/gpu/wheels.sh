#!/usr/bin/env bash
# What check.sh needs that the lent GPU machine lacks, into .whl/: the wheels of the packages its Python (3.12, with
# torch, numpy, pandas, scipy, PyYAML, attrs, cloudpickle) lacks (Snakemake's config validation, which `five estimate`
# reads the config through; the versions are constraints.txt's), and the 16×16 digits section 6 trains on. Run here,
# from the repository root, before a device session; .whl/ is ignored by git: the device call carries it
# (`carry: [".whl"]`), and check.sh installs the wheels there.
set -euo pipefail
PACKAGES=(snakemake snakemake-interface-common snakemake-interface-logger-plugins snakemake-interface-storage-plugins
  jsonschema jsonschema-specifications referencing rpds-py dpath tenacity yte)
pins=()
for name in "${PACKAGES[@]}"; do
  pin=$(grep -i "^${name}==" constraints.txt) || { echo "wheels.sh: $name is not pinned in constraints.txt" >&2; exit 2; }
  pins+=("$pin")
done
rm -rf .whl && mkdir .whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl "${pins[@]}"
.venv/bin/python -m benchmarks.tf32 --write-digits16 .whl/digits16.npz  # check.sh's section 6 trains on them
ls .whl
