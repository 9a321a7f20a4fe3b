#!/usr/bin/env bash
# Makes a fresh machine ready to build, run and test hpa. Idempotent; quick when cached.
# Everything downloaded or built lands under $HPA_CACHE_DIR (default .cache/, git-ignored).
# One script in parts; each make target installs only the parts it uses.
#
#   scripts/setup.sh                  # the test group: everything `make test` needs
#   scripts/setup.sh --only demo      # decode + ort: all `hpa demo` / `hpa label` need (make demo)
#   scripts/setup.sh --only ort,torch # named parts and/or groups, comma-separated
#   scripts/setup.sh --no-torch       # the test group without libtorch, the shim and PyTorch
#   scripts/setup.sh --k8s            # the test group plus the Kubernetes control plane (make test-k8s)
#   scripts/setup.sh --list           # the parts and groups
#   scripts/setup.sh --dry-run ...    # names the parts it would install, in order, and stops
#
# Parts: decode (PNG/TIFF/JPEG libraries, tcmalloc), ort (ONNX Runtime), torch (libtorch + the shim),
# pytorch (Debian python3-torch, the benchmarks' baseline), minio, clients (aws-cli, boto3), browser
# (chromium), helm, k8s. Groups: demo=decode,ort; train=decode,ort,torch; bench=train+pytorch;
# test=every part but k8s; all=test+k8s.
# Under CI (env CI set, as .ci/run does) the HPA_SKIP_* variables are refused: nothing may skip there.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
CACHE=${HPA_CACHE_DIR:-$ROOT/.cache}
mkdir -p "$CACHE"
log() { printf 'setup: %s\n' "$*" >&2; }

ALL_PARTS="decode ort torch pytorch minio goaws clients browser helm k8s"
group() {
  case $1 in
    demo) echo decode ort ;;
    train) echo decode ort torch ;;
    bench) echo decode ort torch pytorch ;;
    test) echo decode ort torch pytorch minio goaws clients browser helm ;;
    all) echo $ALL_PARTS ;;
    *) echo "$1" ;;
  esac
}
PARTS=""
NO_TORCH=0
WITH_K8S=0
ONLY=""
DRY_RUN=0
while [ $# -gt 0 ]; do
  case $1 in
    --only) [ $# -ge 2 ] || { echo "setup.sh: --only needs a list" >&2; exit 2; }; ONLY=$2; shift ;;
    --only=*) ONLY=${1#--only=} ;;
    --no-torch) NO_TORCH=1 ;;
    --k8s) WITH_K8S=1 ;;
    --dry-run) DRY_RUN=1 ;;
    --list)
      echo "parts: $ALL_PARTS"
      for g in demo train bench test all; do echo "$g: $(group $g)"; done
      exit 0 ;;
    *) echo "setup.sh: unknown option $1 (see --list)" >&2; exit 2 ;;
  esac
  shift
done
for p in $(tr ',' ' ' <<<"${ONLY:-test}"); do
  for q in $(group "$p"); do
    case " $ALL_PARTS " in *" $q "*) ;; *) echo "setup.sh: unknown part $q (see --list)" >&2; exit 2 ;; esac
    case " $PARTS " in *" $q "*) ;; *) PARTS="$PARTS $q" ;; esac
  done
done
if [ "$WITH_K8S" = 1 ] || [ "${HPA_K8S:-0}" = 1 ]; then PARTS="$PARTS k8s"; fi
if [ "$NO_TORCH" = 1 ]; then PARTS=$(tr ' ' '\n' <<<"$PARTS" | grep -vx -e torch -e pytorch | tr '\n' ' '); fi
want() { case " $PARTS " in *" $1 "*) return 0 ;; esac; return 1; }
WITH_TORCH=0; want torch && WITH_TORCH=1

# Under CI nothing skips: a HPA_SKIP_* that would drop a wanted part is an error.
if [ -n "${CI:-}" ]; then
  for v in $(compgen -e | grep '^HPA_SKIP_' || true); do
    if [ "${!v}" = 1 ]; then
      echo "setup: $v=1 is refused under CI (env CI=${CI}): CI installs every tool the tests use" >&2; exit 1
    fi
  done
fi

SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
# apt_install PKG...: installs the packages not yet installed (apt-get update once, when needed).
APT_UPDATED=0
apt_install() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -gt 0 ] || return 0
  log "installing apt packages: ${missing[*]}"
  if [ "$APT_UPDATED" = 0 ]; then $SUDO apt-get update -qq; APT_UPDATED=1; fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
}

# ---- decode: apt libraries of the channel decoders (part decode) -----------------------------
# libdeflate: fast PNG inflate; libtiff/libturbojpeg: TIFF and JPEG originals; tcmalloc: linked into
# every hpa binary (internal/model/torch), the allocator libtorch needs on these VMs. Build-time
# needs of `go build ./cmd/hpa`; libtorch itself is dlopen'ed at run time (part torch).
step_decode() {
  apt_install libdeflate-dev libtiff-dev libturbojpeg0-dev libjpeg62-turbo-dev libtcmalloc-minimal4 libgoogle-perftools-dev
}

# ---- ort: ONNX Runtime shared library from the npm registry ----------------------------------
# onnxruntime-node ships the official linux-x64 CPU build of libonnxruntime inside the package.
# `npm pack` fetches the tarball without running any install script; we verify the registry's
# sha512 integrity and extract only the library.
step_ort() {
  local ORT_PKG=${HPA_ORT_NPM_PACKAGE:-onnxruntime-node}
  local ORT_VER=${HPA_ORT_NPM_VERSION:-1.30.0}
  local ORT_SHA512=${HPA_ORT_NPM_SHA512:-twhs1C2C/BFkz1yc5OY0KIU2GUq6DURO7hD4bx5Q2Qy3nAMJwRXW8xU3NVczE29VA9lolLOYepoD8fjTGOfIqw==}
  local ORT_DIR=$CACHE/onnxruntime/$ORT_PKG-$ORT_VER
  if [ ! -f "$ORT_DIR/libonnxruntime.so" ]; then
    command -v npm >/dev/null || { echo "setup: npm not found: install Node.js/npm (Debian: apt-get install npm); it fetches ONNX Runtime" >&2; exit 1; }
    log "fetching $ORT_PKG@$ORT_VER from the npm registry"
    local tmp tgz got
    tmp=$(mktemp -d)
    (cd "$tmp" && npm pack --silent "$ORT_PKG@$ORT_VER" >/dev/null)
    tgz=$(ls "$tmp"/*.tgz)
    got=$(openssl dgst -sha512 -binary "$tgz" | base64 -w0)
    if [ "$got" != "$ORT_SHA512" ]; then
      echo "setup: checksum mismatch for $ORT_PKG@$ORT_VER: got sha512-$got" >&2; rm -rf "$tmp"; exit 1
    fi
    mkdir -p "$ORT_DIR"
    tar -xzf "$tgz" -C "$tmp" package/bin/napi-v6/linux/x64/libonnxruntime.so.1
    mv "$tmp/package/bin/napi-v6/linux/x64/libonnxruntime.so.1" "$ORT_DIR/libonnxruntime.so"
    rm -rf "$tmp"
  fi
  ln -sfn "onnxruntime/$ORT_PKG-$ORT_VER/libonnxruntime.so" "$CACHE/libonnxruntime.so"
  log "onnxruntime: $CACHE/libonnxruntime.so"
}

# ---- torch: libtorch training shim (csrc/hpatorch -> $CACHE/hpatorch/libhpatorch.so) -----------
# Built against Debian's libtorch-dev (CPU), or the libtorch tree in HPA_TORCH_PREFIX, or an
# importable PyTorch install that ships headers (the CUDA build on GPU nodes). Rebuilt only when the
# shim's source hash changes. The hpa binary dlopens it (config torch.library) and links tcmalloc
# itself (internal/model/torch), so libtorch runs with the fast allocator.
# Debian's libtorch calls the system libblas.so.3 (1x1 convolutions, Linear); the default is the
# reference BLAS, several times slower than OpenBLAS. The OpenMP build shares libtorch's libgomp
# thread pool; installing it makes it the libblas.so.3 alternative.
step_torch() {
  if [ -z "${HPA_TORCH_PREFIX:-}" ]; then
    apt_install libtorch-dev libopenblas0-openmp
  fi
  csrc/hpatorch/build.sh "$CACHE/hpatorch"
  log "libtorch shim: $CACHE/hpatorch/libhpatorch.so"
}

# ---- minio: MinIO server binary (only for the MinIO integration test) -------------------------
# internal/testenv/minio runs a real MinIO (native NATS JetStream bucket notifications) for
# consumers/inference's integration test; nothing else needs it. Built from source with this Go
# into $CACHE/bin/minio (~8 min on 2 cores cold, seconds with a warm Go build cache), only when
# it is missing or reports another module version. HPA_SKIP_MINIO=1 skips it (the test then
# skips itself; refused under CI); HPA_MINIO_VERSION picks another version.
step_minio() {
  local MINIO_VER=${HPA_MINIO_VERSION:-v0.0.0-20260212201848-7aac2a2c5b7c} have
  [ "${HPA_SKIP_MINIO:-0}" != 1 ] || { log "minio: skipped (HPA_SKIP_MINIO=1)"; return 0; }
  have=$(go version -m "$CACHE/bin/minio" 2>/dev/null | awk '$1 == "mod" && $2 == "github.com/minio/minio" {print $3}') || have=""
  if [ "$have" != "$MINIO_VER" ]; then
    log "building minio@$MINIO_VER into $CACHE/bin (once; several minutes cold)"
    mkdir -p "$CACHE/bin"
    GOBIN=$CACHE/bin go install "github.com/minio/minio@$MINIO_VER"
  fi
  log "minio: $CACHE/bin/minio ($MINIO_VER)"
}

# ---- goaws: SQS API server (only for the bridge tests) ----------------------------------------
# internal/testenv/goaws runs a real SQS API server (github.com/Admiral-Piett/goaws) for the tests
# and benchmarks of producers/bridge; nothing else needs it. Built from source with this Go into
# $CACHE/bin/goaws (seconds), only when missing or of another version. HPA_SKIP_GOAWS=1 skips it
# (the bridge tests then skip themselves; refused under CI).
step_goaws() {
  local GOAWS_VER=${HPA_GOAWS_VERSION:-v0.4.5} have tmp
  [ "${HPA_SKIP_GOAWS:-0}" != 1 ] || { log "goaws: skipped (HPA_SKIP_GOAWS=1)"; return 0; }
  have=$(go version -m "$CACHE/bin/goaws" 2>/dev/null | awk '$1 == "mod" && $2 == "github.com/Admiral-Piett/goaws" {print $3}') || have=""
  if [ "$have" != "$GOAWS_VER" ]; then
    log "building goaws@$GOAWS_VER into $CACHE/bin"
    tmp=$(mktemp -d)
    GOBIN=$tmp go install "github.com/Admiral-Piett/goaws/app/cmd@$GOAWS_VER"
    mkdir -p "$CACHE/bin" && mv "$tmp/cmd" "$CACHE/bin/goaws" && rm -rf "$tmp"
  fi
  log "goaws: $CACHE/bin/goaws ($GOAWS_VER)"
}

# ---- pytorch: PyTorch baseline of `hpa bench train` / `make bench-label` (Debian python3-torch) --
# scripts/bench_train_step.py times the same training step in PyTorch on the same libtorch as the
# shim: Debian's python3-torch (1.13, for /usr/bin/python3) uses the libtorch1.13 of libtorch-dev.
# Only with the Debian libtorch (not with HPA_TORCH_PREFIX).
# The parity test (scripts/torch_steps.py) uses it too; make bench-quality's PyTorch reference trainer
# (scripts/torch_ref_train.py) also reads the PNGs with Pillow (python3-pil).
step_pytorch() {
  if [ -z "${HPA_TORCH_PREFIX:-}" ] && ! /usr/bin/python3 -c 'import torch, PIL' 2>/dev/null; then
    log "installing python3-torch, python3-pil (PyTorch baseline of the benchmarks)"
    apt_install python3-torch python3-pil
  fi
}

# ---- clients: the real S3 clients of internal/local/s3local's client tests --------------------
# aws-cli (multipart cp) and boto3 against the built-in S3 server. Debian's awscli and python3-boto3.
step_clients() {
  local need=0
  command -v aws >/dev/null || need=1
  python3 -c 'import boto3' 2>/dev/null || /usr/bin/python3 -c 'import boto3' 2>/dev/null || need=1
  if [ "$need" = 1 ]; then apt_install awscli python3-boto3; fi
  log "clients: $(command -v aws), boto3 for $(command -v python3)"
}

# ---- helm (chart tests: lint, template, install) ---------------------------------------------
# charts/hpa's tests run the real helm CLI, built from the Go module proxy into $CACHE/bin/helm
# (~2 min on 2 cores cold), only when it is missing or reports another module version.
# HPA_SKIP_HELM=1 skips it (chart tests then skip themselves, or fail when env CI is set).
step_helm() {
  HELM_VER=${HPA_HELM_VERSION:-v3.22.0}
  if [ "${HPA_SKIP_HELM:-0}" != 1 ]; then
    have=$(go version -m "$CACHE/bin/helm" 2>/dev/null | awk '$1 == "mod" && $2 == "helm.sh/helm/v3" {print $3}') || have=""
    go version -m "$CACHE/bin/helm" 2>/dev/null | grep -q 'chartutil.k8sVersionMinor=37' || have=""
    if [ "$have" != "$HELM_VER" ]; then
      log "building helm@$HELM_VER into $CACHE/bin (once; a few minutes cold)"
      mkdir -p "$CACHE/bin"
      # The ldflags of helm's own Makefile: its version, and the Kubernetes version of its client
      # libraries (v1.37 for v3.22), which `helm template`/`lint` assume without --kube-version.
      GOBIN=$CACHE/bin go install -ldflags "-X helm.sh/helm/v3/internal/version.version=$HELM_VER \
        -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=37 \
        -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=37" \
        "helm.sh/helm/v3/cmd/helm@$HELM_VER"
    fi
    log "helm: $CACHE/bin/helm ($HELM_VER)"
  fi
}

# ---- Kubernetes control plane (make test-k8s: the chart install test) ------------------------
# etcd, kube-apiserver, kube-controller-manager and kube-scheduler built from source by the small
# modules under tools/ (tools/etcd, tools/k8s) into $CACHE/bin. Cold this takes ~10 min on 2 cores
# (kube-apiserver ~7 of them), so it runs only when asked: `scripts/setup.sh --k8s` (make test-k8s),
# or HPA_K8S=1. Rebuilt only when a binary is missing or was built from another module version.
step_k8s() {
  if want k8s; then
    k8s_dep() { go version -m "$1" 2>/dev/null | awk -v m="$2" '($1 == "dep" || $1 == "mod") && $2 == m {print $3}'; }
    ETCD_VER=$(awk '$1 == "go.etcd.io/etcd/server/v3" {print $2} $1 == "require" && $2 == "go.etcd.io/etcd/server/v3" {print $3}' tools/etcd/go.mod)
    if [ "$(k8s_dep "$CACHE/bin/etcd" go.etcd.io/etcd/server/v3)" != "$ETCD_VER" ]; then
      log "building etcd $ETCD_VER into $CACHE/bin (once; ~1-2 min cold)"
      mkdir -p "$CACHE/bin"
      (cd tools/etcd && go build -trimpath -o "$CACHE/bin/etcd" .)
    fi
    K8S_VER=$(awk '$1 == "k8s.io/kubernetes" {print $2} $1 == "require" && $2 == "k8s.io/kubernetes" {print $3}' tools/k8s/go.mod)
    # The version the servers report (/version; helm checks the chart's kubeVersion against it), as
    # Kubernetes' own build sets it.
    minor=$(cut -d. -f2 <<<"$K8S_VER")
    K8S_LDFLAGS="-X k8s.io/component-base/version.gitVersion=$K8S_VER -X k8s.io/component-base/version.gitMajor=1 \
      -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/component-base/version.gitTreeState=clean"
    for b in kube-apiserver kube-controller-manager kube-scheduler; do
      # The version it reports (`--version`): -trimpath keeps -ldflags out of `go version -m`.
      if [ "$(k8s_dep "$CACHE/bin/$b" k8s.io/kubernetes)" != "$K8S_VER" ] ||
        [ "$("$CACHE/bin/$b" --version 2>/dev/null)" != "Kubernetes $K8S_VER" ]; then
        log "building $b $K8S_VER into $CACHE/bin (once; ~10 min cold for the three on 2 idle cores)"
        mkdir -p "$CACHE/bin"
        (cd tools/k8s && go build -trimpath -ldflags "$K8S_LDFLAGS" -o "$CACHE/bin/$b" "./cmd/$b")
      fi
    done
    log "kubernetes: etcd $ETCD_VER, kube-apiserver/controller-manager/scheduler $K8S_VER in $CACHE/bin"
  fi
}

# ---- Chromium for the plate viewer's browser test (test only) --------------------------------
# cmd/hpa's TestViewerInBrowser drives Debian's chromium headless through chromedp (no browser
# download of its own). Nothing at run time needs it. HPA_SKIP_CHROMIUM=1 skips it (the test then
# skips itself, or fails when env CI is set).
step_browser() {
  if [ "${HPA_SKIP_CHROMIUM:-0}" != 1 ]; then
    missing=()
    for p in chromium fonts-dejavu-core; do
      dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if [ ${#missing[@]} -gt 0 ]; then
      log "installing ${missing[*]} (browser test of the plate viewer)"
      SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
      DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null ||
        { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null; }
    fi
    log "chromium: $(command -v chromium)"
  fi
}

# ---- run the wanted parts, in the order of ALL_PARTS (one list: a part cannot be named and skipped) --
log "parts:$PARTS"
for p in $ALL_PARTS; do
  want "$p" || continue
  if [ "$DRY_RUN" = 1 ]; then log "would run: $p"; else "step_$p"; fi
done
