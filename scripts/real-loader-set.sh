#!/usr/bin/env bash
# Builds a loader benchmark set from the real HPA PNGs in ../shared/hpa-real (train_sample and
# test_sample hold one channel per Id): every 4 consecutive files become one 4-channel sample
# ({n}_{red,green,blue,yellow}.png, symlinks) with the real labels of its first file's Id when known.
# The pixels are real HPA content at 512 px, which is what decode speed depends on; the channels of a
# sample come from different fields of view, so use it for speed, never for accuracy.
#
#   scripts/real-loader-set.sh OUT_DIR && bin/hpa bench train --data OUT_DIR --samples 0
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:?usage: real-loader-set.sh OUT_DIR}
REAL=../shared/hpa-real
[ -f "$REAL/train.csv" ] || { echo "real-loader-set.sh: $REAL not found" >&2; exit 1; }
rm -rf "$OUT"; mkdir -p "$OUT/train"
echo "Id,Target" > "$OUT/train.csv"
mapfile -t files < <(ls "$REAL"/train_sample/*.png "$REAL"/test_sample/*.png | sort)
chans=(red green blue yellow)
n=0
for ((i = 0; i + 3 < ${#files[@]}; i += 4)); do
  id=$(printf 'real%03d' "$n")
  for c in 0 1 2 3; do ln -s "$(realpath "${files[i+c]}")" "$OUT/train/${id}_${chans[c]}.png"; done
  src=$(basename "${files[i]}"); src=${src%_*}
  labels=$(awk -F, -v id="$src" '$1 == id {print $2}' "$REAL/train.csv")
  echo "$id,${labels:-0}" >> "$OUT/train.csv"
  n=$((n + 1))
done
echo "real-loader-set.sh: $n samples in $OUT" >&2
