#!/usr/bin/env bash
# The prepared GPU check, run on a lent GPU machine from the repository root:
#   here:  bash benchmarks/gpu/wheels.sh          (the wheels of what the machine's Python lacks, into .whl/)
#   there: bash benchmarks/gpu/check.sh [SECTION …]   with .whl carried; no SECTION: all of them, in order
# Sections (everything printed also goes to $OUT):
#   1. the CUDA tests (tests/test_cuda_graph.py: graph = eager for every model, resume, random streams, an added
#      seed that catches up and packs);
#   2. eager vs CUDA-graph step times of every model, K = 1 and 8, MLP and conv (benchmarks.run --only graph);
#   3. per-member step times of packed seeds (benchmarks.run --only packed), packs of 1, 3, 8 and 16, and packing
#      by batched layers against vmap (--only packed-vmap);
#   4. `five estimate` of the paper config on the GPU, with the steps graphed (the default) and eager, and the
#      device-hours with each sweep point's seeds packed (--pack-seeds);
#   5. a short real run through `five train` (the workflow's job command), graph and eager, on manifold;
#   6. cuDNN's TF32 convolutions (PyTorch's default on CUDA): a conv FIVE trained on the 16×16 digits that
#      wheels.sh writes into .whl/, evaluated with TF32 and in float32 (benchmarks.tf32), metrics and time.
# The whole check keeps inside CHECK_BUDGET_S (default 540 s, under the tool's 600 s a call): each section's own
# limit is cut to what is left, and a section with under 20 s left is skipped and named, to be run by a second call
# (`bash benchmarks/gpu/check.sh 4 5`).
set -uo pipefail
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/gpu-check-out}; mkdir -p "$OUT"
START=$(date +%s); BUDGET=${CHECK_BUDGET_S:-540}
SECTIONS=${*:-1 2 3 4 5 6}

exec 3>&1  # the console: a skipped section is said there, past the redirects of the command it stands for
wanted() { [[ " $SECTIONS " == *" $1 "* ]]; }
within() {  # within SECTION SECONDS COMMAND…: the command under its own limit cut to what is left of the budget
  local section=$1 own=$2 left=$(( BUDGET - ($(date +%s) - START) )); shift 2
  if (( left < 20 )); then
    echo "== $section: skipped, no time left in CHECK_BUDGET_S=$BUDGET (run: bash benchmarks/gpu/check.sh $section)" \
      | tee -a "$OUT/skipped.txt" >&3
    return 124
  fi
  timeout $(( own < left ? own : left )) "$@"
}

nvidia-smi -L; python3 -c 'import torch; print("torch", torch.__version__, torch.cuda.get_device_name())' || exit 1
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || exit 1
fi
export PYTHONPATH=/tmp/site:$PWD
python3 -c 'import snakemake.utils, jsonschema' 2>/dev/null \
  || echo "warning: no snakemake/jsonschema here (carry .whl from benchmarks/gpu/wheels.sh): section 4 will fail"

if wanted 1; then
  echo "== 1. CUDA tests"
  within 1 200 python3 -m pytest -q -rs -s -p no:cacheprovider tests/test_cuda_graph.py >"$OUT/cuda-tests.txt" 2>&1
  echo "pytest exit $?"
  grep -E "weights:|passed|failed|Error|error" "$OUT/cuda-tests.txt" | head -60
fi

if wanted 2; then
  echo "== 2. eager vs graph"
  within 2 100 python3 -m benchmarks.run --only graph --device cuda --out "$OUT/graph.csv" 2>&1 | tee "$OUT/graph.txt"
fi

if wanted 3; then
  echo "== 3. packed seeds"
  within 3 150 python3 -m benchmarks.run --only packed --device cuda --out "$OUT/packed.csv" 2>&1 \
    | tee "$OUT/packed.txt"
  within 3 50 python3 -m benchmarks.run --only packed-vmap --device cuda --out "$OUT/packed-vmap.csv" 2>&1 \
    | tee "$OUT/packed-vmap.txt"
fi

if wanted 4; then
  echo "== 4. five estimate of the paper config (graph, then eager; each with and without packing)"
  python3 - <<'PY'
import yaml
config = yaml.safe_load(open("config/config.yaml"))
for settings in config["datasets"].values():
    settings["cuda_graph"] = "off"
yaml.safe_dump(config, open("/tmp/config-eager.yaml", "w"), sort_keys=False)
PY
  for mode in graph eager; do
    configfile=config/config.yaml; [ $mode = eager ] && configfile=/tmp/config-eager.yaml
    start=$(date +%s)
    within 4 90 python3 -m five.cli estimate --configfile $configfile --device cuda --gpus 4 --pack-seeds \
      --out-dir /tmp/estimate-$mode >"$OUT/estimate-$mode.log" 2>&1
    tail -2 "$OUT/estimate-$mode.log"
    echo "estimate ($mode) took $(( $(date +%s) - start )) s"
    cp /tmp/estimate-$mode/estimate.md "$OUT/estimate-paper-$mode.md" 2>/dev/null
  done
fi

if wanted 5; then
  echo "== 5. a short real run, graph and eager"
  for mode in on off; do
    within 5 40 python3 -m five.cli train --model five --dataset manifold --latent-dim 2 --epochs 3 --eval-every 1 \
      --device cuda --cuda-graph $mode --out /tmp/run-$mode >/tmp/run-$mode.log 2>&1
    grep -E "training step|epoch|done" /tmp/run-$mode.log | tee -a "$OUT/run.txt"
  done
fi
if wanted 6; then
  echo "== 6. TF32 convolutions against float32, a trained conv FIVE (digits doubled to 16×16)"
  within 6 60 python3 -m five.cli train --model five --dataset npz:.whl/digits16.npz --latent-dim 8 --epochs 150 \
    --hidden-width 256 --lr 0.001 --eval-every 10 --device cuda --out /tmp/run-tf32 >/tmp/run-tf32.log 2>&1
  grep -E "val NLL|done|rror" /tmp/run-tf32.log | tail -n 3 | tee "$OUT/tf32.txt"
  within 6 60 python3 -m benchmarks.tf32 /tmp/run-tf32 --device cuda 2>&1 | tee -a "$OUT/tf32.txt"
fi
echo "== check took $(( $(date +%s) - START )) s"
