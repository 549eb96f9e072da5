#!/usr/bin/env bash
# tessera plugin-check on one CUDA plugin. With a GPU every case must pass; without one the
# command must succeed and say "no CUDA device: N CUDA providers not checked".
#
# Usage: plugin_check.sh <tessera> <libtessera-*-cuda.so>
set -euo pipefail
tessera=$1
library=$2
out=$(mktemp)
trap 'rm -f "$out"' EXIT
if ! "$tessera" plugin-check "$library" >"$out" 2>&1; then
  cat "$out"
  echo "plugin_check.sh: plugin-check $library exited non-zero" >&2
  exit 1
fi
cat "$out"
if grep -q "^SKIP  no CUDA device: [0-9]* CUDA providers\? not checked" "$out"; then
  echo "plugin_check.sh: no CUDA device here; the CUDA providers were not checked"
  exit 0
fi
grep -q "^PASS  " "$out" || { echo "plugin_check.sh: no case ran" >&2; exit 1; }
if grep -q "^FAIL  " "$out"; then
  echo "plugin_check.sh: failing cases" >&2
  exit 1
fi
