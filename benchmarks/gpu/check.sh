#!/usr/bin/env bash
# The prepared GPU check (run on a lent GPU machine from the repository root; wheels for the packages its
# image lacks in .whl/, see benchmarks/README.md): device facts, step-time ratios on CUDA, and a tiny sweep
# of every model with `device: cuda` through Snakemake. Everything it measures goes to $OUT.
set -uo pipefail
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/gpu-check-out}; mkdir -p "$OUT"
nvidia-smi -L; python3 -c 'import torch; print("torch", torch.__version__, torch.cuda.get_device_name())'
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  || exit 1
export PYTHONPATH=/tmp/site:$PWD
python3 - <<'PY' 2>&1 | tee "$OUT/ratios.txt"
import torch
from benchmarks.run import Report, reference_comparison, iwae_throughput
device = torch.device("cuda")
report = Report(device)
reference_comparison(report, device, ("mlp", "conv"), repeats=7, inner=5)
iwae_throughput(report, device)
report.write(__import__("pathlib").Path("/tmp/ratios.csv"))
PY
cp /tmp/ratios.csv "$OUT/" 2>/dev/null
time python3 -m five.cli estimate --configfile config/config.yaml --device cuda --gpus 4 --out-dir /tmp/estimate \
  2>&1 | tail -3
cp /tmp/estimate/estimate.md "$OUT/estimate-paper-gpu.md" 2>/dev/null
[ "${SWEEP:-1}" = 1 ] || exit 0  # SWEEP=0: the step ratios and the estimate only
work=/tmp/sweep; mkdir -p $work
start=$(date +%s)
python3 -m snakemake -s "$PWD/Snakefile" -d $work --configfile "$PWD/benchmarks/gpu/sweep.yaml" \
  --cores 8 --resources gpu=1 --scheduler greedy 2>&1 | tail -60
echo "tiny sweep wall: $(( $(date +%s) - start )) s"
cp $work/results/tables/main.md "$OUT/main.md" 2>/dev/null
cp $work/results/runs.csv "$OUT/runs.csv" 2>/dev/null
grep -h '"device"' $work/results/runs/*/*/*/train.json 2>/dev/null | sort | uniq -c | head
