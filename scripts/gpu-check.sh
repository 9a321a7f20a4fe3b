#!/usr/bin/env bash
# The issue-3 GPU check, run ON a device machine (PyTorch + CUDA, g++, no Go) in the repository root
# with .gpu/ from scripts/gpu-bundle.sh: compiles the libtorch shim against that PyTorch, trains the
# real configuration (seresnext50_32x4d, 512 px) through the Go binding in fp32 and bf16 autocast,
# checks the device forward against the CPU forward, runs the PyTorch eager baseline on the same
# GPU, and writes go.json + eager.json (+ logs) to $OUT (default .gpu/out). Record them in
# docs/benchmarks.md. HPA_GPU_SIZE / HPA_GPU_BATCH / HPA_GPU_STEPS override 512 / 32 / 20.
# GPU_CHECK_CPU=1 smoke-tests the whole script on a CPU machine with tiny settings.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-.gpu/out}
mkdir -p "$OUT"
[ -x .gpu/torch.test ] || { echo "gpu-check: run scripts/gpu-bundle.sh first (on a machine with Go)" >&2; exit 1; }
PY=${PYTHON:-python3}
csrc/hpatorch/build.sh .gpu/shim 2>&1 | tee "$OUT/build.log"
export HPA_GPU_SIZE=${HPA_GPU_SIZE:-512} HPA_GPU_BATCH=${HPA_GPU_BATCH:-32} HPA_GPU_STEPS=${HPA_GPU_STEPS:-20}
dev=cuda:0
if [ "${GPU_CHECK_CPU:-0}" = 1 ]; then
  export HPA_GPU_FORCE_CPU=1 HPA_GPU_SIZE=64 HPA_GPU_BATCH=4 HPA_GPU_STEPS=3
  dev=cpu
fi
nvidia-smi -L > "$OUT/gpu.txt" 2>&1 || true
LD_LIBRARY_PATH=$PWD/.gpu/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} HPA_TORCH_LIBRARY=$PWD/.gpu/shim/libhpatorch.so \
  HPA_GPU_ARCH=$($PY -c "import json; print(json.load(open('.gpu/spec.json'))['name'])") HPA_GPU_OUT=$OUT/go.json \
  .gpu/torch.test -test.run '^TestGPUTrainStep$' -test.v 2>&1 | tee "$OUT/go.log"
$PY scripts/gpu_eager.py .gpu/spec.json --size "$HPA_GPU_SIZE" --batch "$HPA_GPU_BATCH" --steps "$HPA_GPU_STEPS" \
  --device "$dev" | tee "$OUT/eager.json"
[ -s "$OUT/go.json" ] || { echo "gpu-check: the Go check wrote no results (skipped? see $OUT/go.log)" >&2; exit 1; }
echo "gpu-check: results in $OUT" >&2
