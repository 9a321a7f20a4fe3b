#!/usr/bin/env bash
# Rebuilds models/bundled: the small model set `hpa up` and `hpa demo` serve by default, trained by
# the project's own trainer on `hpa synth` data (seresnext_tiny, 128 px, 2 folds x 2 snapshots).
# AdamW instead of the recipe's SGD: on a CPU-sized schedule (30 epochs) the SGD recipe barely leaves
# the class priors (out-of-fold macro-F1 0.15 vs 0.27 here). ~6 min on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-models/bundled}
DATA=$(mktemp -d)
trap 'rm -rf "$DATA"' EXIT
make -s setup build
bin/hpa synth --out "$DATA" --samples 1500 --size 128 --seed 2026
rm -rf "$OUT.tmp"
bin/hpa train --data "$DATA" --out "$OUT.tmp" --arch seresnext_tiny --size 128 --folds 2 --cycles 2 --epochs 15 \
  --batch 32 --optimizer adamw --lr 0.003 --tta-views 8 --name hpa-bundled --version tiny128-synth-adamw-v1 --seed 7
rm -rf "$OUT.tmp/checkpoints" "$OUT"
mv "$OUT.tmp" "$OUT"
