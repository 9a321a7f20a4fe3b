#!/usr/bin/env bash
# Builds libhpatorch.so, the C ABI shim over libtorch that internal/model/torch loads with dlopen.
#
#   csrc/hpatorch/build.sh OUT_DIR
#
# Which libtorch:
#   HPA_TORCH_PREFIX=/path/to/torch   a libtorch tree (include/, lib/), e.g. the CUDA libtorch zip or
#                                     site-packages/torch of a PyTorch install;
#   else a PyTorch importable by python3 (torch.utils.cmake_prefix_path), e.g. the CUDA build on GPU
#   nodes; else Debian's libtorch-dev (CPU) under /usr.
# HPA_TORCH_CXX11_ABI=0|1 overrides the C++ ABI (PyTorch wheels before 2.x used 0).
# The library is rebuilt only when the sources, this script or the chosen libtorch change
# (OUT_DIR/libhpatorch.so.sha256 holds the stamp).
set -euo pipefail
SRC=$(cd "$(dirname "$0")" && pwd)
OUT=${1:?usage: build.sh OUT_DIR}
mkdir -p "$OUT"
CXX=${CXX:-g++}

prefix=${HPA_TORCH_PREFIX:-}
abi=${HPA_TORCH_CXX11_ABI:-}
if [ -n "$prefix" ]; then
  [ -d "$prefix/include" ] && [ -d "$prefix/lib" ] || { echo "build.sh: HPA_TORCH_PREFIX=$prefix is not a libtorch tree (include/, lib/)" >&2; exit 1; }
elif command -v python3 >/dev/null &&
  py=$(python3 -c 'import torch, os; print(os.path.dirname(torch.__file__)); print(int(torch._C._GLIBCXX_USE_CXX11_ABI))' 2>/dev/null); then
  # A PyTorch install ships include/ and lib/ inside the package; Debian's python3-torch does not
  # (then the Debian libtorch-dev below is the same build).
  p=$(sed -n 1p <<<"$py")
  if [ -d "$p/include/torch/csrc/api/include" ] && [ -d "$p/lib" ]; then
    prefix=$p
    [ -n "$abi" ] || abi=$(sed -n 2p <<<"$py")
  fi
fi
if [ -n "$prefix" ]; then
  flags=(-I"$prefix/include" -I"$prefix/include/torch/csrc/api/include")
  libs=(-L"$prefix/lib" -Wl,-rpath,"$prefix/lib" -Wl,--no-as-needed)
  # torch_cuda must be linked even though no symbol is used directly, or CUDA kernels do not register.
  for l in torch_cuda c10_cuda; do [ -e "$prefix/lib/lib$l.so" ] && libs+=(-l$l); done
  libs+=(-ltorch -ltorch_cpu -lc10 -Wl,--as-needed)
  where=$prefix
else
  inc=/usr/include/torch/csrc/api/include
  [ -d "$inc" ] || { echo "build.sh: no libtorch found: install libtorch-dev (Debian) or set HPA_TORCH_PREFIX" >&2; exit 1; }
  flags=(-I"$inc")
  libs=(-Wl,--no-as-needed -ltorch -ltorch_cpu -lc10 -Wl,--as-needed)
  where="debian $(dpkg-query -W -f='${Version}' libtorch-dev 2>/dev/null || echo '?')"
fi
[ -z "$abi" ] || flags+=(-D_GLIBCXX_USE_CXX11_ABI="$abi")

stamp=$( (cat "$SRC/hpatorch.cpp" "$SRC/hpatorch.h" "$0"; echo "$where ${flags[*]} ${libs[*]} $CXX") | sha256sum | cut -d' ' -f1)
lib=$OUT/libhpatorch.so
if [ -f "$lib" ] && [ "$(cat "$lib.sha256" 2>/dev/null)" = "$stamp" ]; then
  echo "build.sh: $lib is up to date ($where)" >&2
  exit 0
fi
echo "build.sh: compiling $lib against $where (a minute or more on small machines)" >&2
$CXX -O2 -std=c++17 -fPIC -shared -fvisibility=hidden -DHPAT_BUILD -Wall -Wno-unused-parameter \
  "${flags[@]}" -o "$lib.tmp" "$SRC/hpatorch.cpp" "${libs[@]}"
mv "$lib.tmp" "$lib"
echo "$stamp" >"$lib.sha256"
