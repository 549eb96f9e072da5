#!/usr/bin/env bash
# Generated files (core/src/unicode_tables.cpp) are left as their generator writes them.
# Lint job (a CI job of its own, not part of scripts/test.sh):
#   1. clang-format --dry-run --Werror on the tree's own C, C++ and CUDA sources
#   2. clang-tidy (.clang-tidy) on the core's sources, using the compile
#      commands of a configured build (configures build/dev when missing)
#
# Usage: scripts/lint.sh [--format-only] [build dir]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

format_only=0
build_dir=build/dev
for arg in "$@"; do
  case "$arg" in
    --format-only) format_only=1 ;;
    -*) echo "lint.sh: unknown option '$arg' (expected --format-only)" >&2; exit 2 ;;
    *) build_dir=$arg ;;
  esac
done

for tool in clang-format clang-tidy; do
  if ! command -v "$tool" >/dev/null; then
    echo "lint.sh: $tool is not installed (apt-get install clang-format clang-tidy)" >&2
    exit 1
  fi
done

# Tracked and new (not ignored) files: never build folders or third-party code.
mapfile -t sources < <(git ls-files --cached --others --exclude-standard -- \
  '*.h' '*.hpp' '*.cpp' '*.cu' '*.cuh' ':!core/src/unicode_tables.cpp' | sort -u)
existing=()
for f in "${sources[@]}"; do [[ -f "$f" ]] && existing+=("$f"); done
echo "==> clang-format: ${#existing[@]} files"
failed=0
if clang-format --dry-run --Werror "${existing[@]}"; then
  echo "clang-format: ok"
else
  echo "clang-format: FAILED (fix with: clang-format -i <file>)" >&2
  failed=1
fi
[[ $format_only -eq 1 ]] && exit $failed

if [[ ! -f "$build_dir/compile_commands.json" ]]; then
  echo "==> configuring $build_dir for its compile commands"
  cmake --preset dev -B "$build_dir" >/dev/null
fi
mapfile -t core_sources < <(ls core/src/*.cpp)
echo "==> clang-tidy: ${#core_sources[@]} core sources (compile commands from $build_dir)"
for f in "${core_sources[@]}"; do
  # GCC-only flags in the compile commands (-Wno-restrict) are not clang-tidy findings.
  if ! clang-tidy --quiet --extra-arg=-Wno-unknown-warning-option -p "$build_dir" "$f" 2>/dev/null; then
    echo "clang-tidy: $f has findings" >&2
    failed=1
  fi
done
if [[ $failed -ne 0 ]]; then
  echo "lint: FAILED" >&2
  exit 1
fi
echo "lint: ok"
