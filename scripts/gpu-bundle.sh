#!/usr/bin/env bash
# Prepares the issue-3 GPU check for a device machine that has PyTorch + CUDA but no Go toolchain
# (see scripts/gpu-check.sh): builds the torch package's test binary, copies the tcmalloc it links,
# and writes the architecture spec, all under .gpu/ (git-ignored, ~12 MB; carry it).
#
#   scripts/gpu-bundle.sh [ARCH]      # default seresnext50_32x4d
set -euo pipefail
cd "$(dirname "$0")/.."
ARCH=${1:-seresnext50_32x4d}
rm -rf .gpu && mkdir -p .gpu/lib
go test -c -o .gpu/torch.test ./internal/model/torch
cp -L "$(ldd .gpu/torch.test | awk '/libtcmalloc_minimal/ {print $3}')" .gpu/lib/
go run ./cmd/hpa model export --arch "$ARCH" --out .gpu/set --size 64 >/dev/null
python3 -c "import json; json.dump(json.load(open('.gpu/set/manifest.json'))['arch'], open('.gpu/spec.json', 'w'))"
rm -rf .gpu/set
echo "gpu-bundle: .gpu/ ready ($(du -sh .gpu | cut -f1)); on the device: scripts/gpu-check.sh" >&2
