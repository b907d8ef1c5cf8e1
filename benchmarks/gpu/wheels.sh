#!/usr/bin/env bash
# The wheels of the packages five's GPU check imports that the lent GPU machine's Python (3.12, with torch, numpy,
# pandas, scipy, PyYAML, attrs, cloudpickle) lacks: Snakemake's config validation, which `five estimate` reads the
# config through. Run here, from the repository root, before a device session; the versions are constraints.txt's.
# .whl/ is ignored by git: the device call carries it (`carry: [".whl"]`), and check.sh installs it there.
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
ls .whl
