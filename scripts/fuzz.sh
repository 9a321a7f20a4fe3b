#!/usr/bin/env bash
# Runs every fuzz target of the module (each `func FuzzXxx` in a *_test.go), one after another, each
# for FUZZTIME (default 30s): `make fuzz FUZZTIME=2m`. FUZZ=regexp picks targets by name (e.g.
# FUZZ='Targets|Manifest'). A crasher lands in <package>/testdata/fuzz/<FuzzXxx>/ and stays there as a
# regression seed that plain `go test` runs: fix the code, commit the seed.
set -euo pipefail
cd "$(dirname "$0")/.."
FUZZTIME=${FUZZTIME:-30s}
FUZZ=${FUZZ:-.}
fail=0
while read -r file name; do
  pkg=./$(dirname "$file")
  grep -qE "$FUZZ" <<<"$name" || continue
  echo "fuzz: $pkg $name for $FUZZTIME" >&2
  # The short minimize time keeps large seeds (real PNGs) from stalling the run.
  if ! go test "$pkg" -run '^$' -fuzz "^$name\$" -fuzztime "$FUZZTIME" -fuzzminimizetime 5s; then
    echo "fuzz: $pkg $name FAILED: the crasher is under $pkg/testdata/fuzz/$name" >&2
    fail=1
  fi
done < <(grep -rHoE --include='*_test.go' '^func Fuzz[A-Za-z0-9_]+' --exclude-dir=.cache --exclude-dir=test . |
  sed -E 's#^\./##; s#:func # #' | sort)
exit $fail
