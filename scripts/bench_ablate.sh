#!/usr/bin/env bash
# make bench-ablate: trains `hpa train` on the bench-quality data (hpa synth 2000/400 at 64 px,
# seresnext_tiny, 2 folds x 1 cycle x 15 epochs, batch 32) at its defaults and with one part of the
# recipe changed at a time -- sampler, repeat cap, each augmentation, optimizer, init, prior bias,
# normalization, snapshots, TTA -- scores each on the held-out set (scripts/bench_quality.py), appends
# the result rows to docs/quality-rows.jsonl and writes docs/quality.md (scripts/quality_doc.py). The PyTorch reference runs once
# per seed as the anchor. Usage: scripts/bench_ablate.sh WORKDIR [SEEDS]   (SEEDS default 1,2)
set -euo pipefail
work=${1:?usage: bench_ablate.sh WORKDIR [SEEDS]}
seeds=${2:-1,2}
py=${PYTHON:-/usr/bin/python3}
here=$(cd "$(dirname "$0")" && pwd)
rows=$work/rows.jsonl
mkdir -p "$work"
: > "$rows"
bq() { # tag, then env assignments and/or -- hpa flags
  local tag=$1; shift
  local envs=()
  while [ $# -gt 0 ] && [ "$1" != -- ]; do envs+=("$1"); shift; done
  [ $# -gt 0 ] && shift
  env "${envs[@]}" "$py" "$here/bench_quality.py" --work "$work" --seeds "$seeds" --presets seresnext_tiny \
    --sides hpa --tag "$tag" --json "$rows" -- "$@"
}
"$py" "$here/bench_quality.py" --work "$work" --seeds "$seeds" --presets seresnext_tiny --sides torch --tag defaults --json "$rows"
bq defaults
bq sampler-random -- --sampler random
bq no-repeat-cap HPA_TRAIN_BALANCE_MAX_REPEAT=0
bq brightness HPA_TRAIN_AUGMENT_BRIGHTNESS=0.1
bq contrast HPA_TRAIN_AUGMENT_CONTRAST=0.2
bq expand HPA_TRAIN_AUGMENT_EXPAND=1.3
bq erase HPA_TRAIN_AUGMENT_ERASE_PROB=0.3
bq all-augment HPA_TRAIN_AUGMENT_BRIGHTNESS=0.1 HPA_TRAIN_AUGMENT_CONTRAST=0.2 HPA_TRAIN_AUGMENT_EXPAND=1.3 HPA_TRAIN_AUGMENT_ERASE_PROB=0.3
bq no-rot90-flips HPA_TRAIN_AUGMENT_ROT90=false HPA_TRAIN_AUGMENT_FLIP_LR=false HPA_TRAIN_AUGMENT_FLIP_UD=false
bq sgd-recipe -- --optimizer sgd --lr 0.1 --weight-decay 0.0001
bq init-timm -- --init timm
bq no-prior-bias -- --prior-bias=false
bq norm-constant -- --normalization constant
bq snapshots-3x5 -- --cycles 3 --epochs 5
bq tta-1 -- --tta-views 1
# The rows join the committed ones (a later row of the same preset, tag and seed replaces an earlier one).
cat "$rows" >> "$here/../docs/quality-rows.jsonl"
(cd "$here/.." && "$py" scripts/quality_doc.py --note-file docs/quality-notes.txt docs/quality-rows.jsonl > docs/quality.md)
echo "appended $(wc -l < "$rows") rows to docs/quality-rows.jsonl and wrote docs/quality.md (review docs/quality-notes.txt)"
