#!/usr/bin/env bash
# Regenerates internal/model/onnx/onnxpb/onnx.pb.go from onnx.proto (the onnx/onnx repository's
# onnx/onnx.proto, committed verbatim). Needs protoc (Debian protobuf-compiler) and protoc-gen-go at
# the version of google.golang.org/protobuf in go.mod; the go_package is set with the M option so the
# upstream .proto stays untouched.
set -euo pipefail
cd "$(dirname "$0")/.."
PB_VER=$(go list -m -f '{{.Version}}' google.golang.org/protobuf)
GOBIN_DIR=${HPA_CACHE_DIR:-$PWD/.cache}/bin
mkdir -p "$GOBIN_DIR"
if [ ! -x "$GOBIN_DIR/protoc-gen-go" ] || ! "$GOBIN_DIR/protoc-gen-go" --version | grep -q "$PB_VER"; then
  GOBIN=$GOBIN_DIR go install "google.golang.org/protobuf/cmd/protoc-gen-go@$PB_VER"
fi
DIR=internal/model/onnx/onnxpb
PATH=$GOBIN_DIR:$PATH protoc -I "$DIR" \
  --go_out="$DIR" --go_opt=paths=source_relative \
  --go_opt=Monnx.proto=github.com/hpa-plates/hpa/internal/model/onnx/onnxpb \
  "$DIR/onnx.proto"
echo "generated $DIR/onnx.pb.go" >&2
