#!/usr/bin/env bash
# Generated files (core/src/text/unicode_tables.cpp) are left as their generator writes them.
# Lint job (scripts/test.sh runs it after the ci build; also on its own):
#   1. clang-format --dry-run --Werror on the tree's own C, C++ and CUDA sources
#   2. clang-tidy (.clang-tidy) on the core's, the tessera command's and the CPU
#      plugins' sources, using the compile commands of a configured build
#      (configures build/dev when missing)
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
  '*.h' '*.hpp' '*.cpp' '*.cu' '*.cuh' ':!core/src/text/unicode_tables.cpp' | sort -u)
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
# The core, the tessera command and the CPU plugins (the CUDA sources need nvcc's view).
mapfile -t core_sources < <(ls core/src/*/*.cpp apps/tessera/*.cpp plugins/*/*/*.cpp \
  plugins/*/*/src/*.cpp 2>/dev/null | grep -v '/cuda/')
echo "==> clang-tidy: ${#core_sources[@]} sources (compile commands from $build_dir)"
# One clang-tidy per file, TESSERA_JOBS (default 2) at a time; each prints its findings.
tidy_one() {
  # GCC-only flags in the compile commands (-Wno-restrict) are not clang-tidy findings.
  if ! clang-tidy --quiet --extra-arg=-Wno-unknown-warning-option -p "$1" "$2" 2>/dev/null; then
    echo "clang-tidy: $2 has findings" >&2
    return 1
  fi
}
export -f tidy_one
if ! printf '%s\0' "${core_sources[@]}" |
  xargs -0 -n 1 -P "${TESSERA_JOBS:-2}" bash -c 'tidy_one "$0" "$1"' "$build_dir"; then
  failed=1
fi
if [[ $failed -ne 0 ]]; then
  echo "lint: FAILED" >&2
  exit 1
fi
echo "lint: ok"
