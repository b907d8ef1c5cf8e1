#!/usr/bin/env bash
# The prepared GPU check (run on a lent GPU machine from the repository root; wheels for the packages its image
# lacks in .whl/, see benchmarks/README.md). Everything it prints also goes to $OUT:
#   1. the CUDA tests (tests/test_cuda_graph.py: graph = eager for every model, resume, random streams);
#   2. eager vs CUDA-graph step times of every model, K = 1 and 8, MLP and conv (benchmarks.run --only graph);
#   3. per-member step times of packed seeds (benchmarks.run --only packed), packs of 1, 3, 8 and 16, and packing
#      by batched layers against vmap (--only packed-vmap);
#   4. `five estimate` of the paper config on the GPU, with the steps graphed (the default) and eager, and the
#      device-hours with each sweep point's seeds packed (--pack-seeds);
#   5. a short real run through `five train` (the workflow's job command), graph and eager, on manifold.
set -uo pipefail
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/gpu-check-out}; mkdir -p "$OUT"
nvidia-smi -L; python3 -c 'import torch; print("torch", torch.__version__, torch.cuda.get_device_name())'
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || exit 1
fi
export PYTHONPATH=/tmp/site:$PWD

echo "== 1. CUDA tests"
timeout 150 python3 -m pytest -q -rs -s -p no:cacheprovider tests/test_cuda_graph.py 2>&1 | tee "$OUT/cuda-tests.txt" \
  | grep -E "weights:|passed|failed|Error|error" | head -60

echo "== 2. eager vs graph"
timeout 120 python3 -m benchmarks.run --only graph --device cuda --out "$OUT/graph.csv" 2>&1 | tee "$OUT/graph.txt"

echo "== 3. packed seeds"
timeout 240 python3 -m benchmarks.run --only packed --device cuda --out "$OUT/packed.csv" 2>&1 | tee "$OUT/packed.txt"
timeout 60 python3 -m benchmarks.run --only packed-vmap --device cuda --out "$OUT/packed-vmap.csv" 2>&1 \
  | tee "$OUT/packed-vmap.txt"

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
  timeout 150 python3 -m five.cli estimate --configfile $configfile --device cuda --gpus 4 --pack-seeds --out-dir /tmp/estimate-$mode \
    2>&1 | tail -2
  echo "estimate ($mode) took $(( $(date +%s) - start )) s"
  cp /tmp/estimate-$mode/estimate.md "$OUT/estimate-paper-$mode.md" 2>/dev/null
done

echo "== 5. a short real run, graph and eager"
for mode in on off; do
  timeout 40 python3 -m five.cli train --model five --dataset manifold --latent-dim 2 --epochs 3 --eval-every 1 \
    --device cuda --cuda-graph $mode --out /tmp/run-$mode 2>&1 | grep -E "training step|epoch|done" | tee -a "$OUT/run.txt"
done
