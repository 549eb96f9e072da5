#!/usr/bin/env bash
# The full test job (the README's test command, also what .ci/run runs):
#   1. install the build dependencies (scripts/install-deps.sh; fast when present)
#   2. configure and build the "ci" preset (Release, warnings are errors)
#   3. run its tests with ctest
#   3b. lint: clang-format and clang-tidy (scripts/lint.sh on the ci build's
#      compile commands)
#   4. install to a temporary prefix, build examples/plugin-template against it
#      out of tree, and check the installed tessera command lists the plugin
#   5. configure and build the "asan" preset (Debug, ASan + UBSan, CPU only)
#      and run its tests
# Every phase prints a header and its duration; the first failure stops the
# job with a non-zero exit status.
#
# Options:
#   --no-asan   skip phase 5
#   --no-lint   skip phase 3b
#   --quick     phases 1-3 only: the ci build and its tests
# Environment:
#   TESSERA_BUILD_ROOT  parent of the build folders (default: build, as in the presets)
#   TESSERA_JOBS        parallel build and test jobs (default: 2)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo=$(pwd)

run_asan=1
run_package=1
run_lint=1
for arg in "$@"; do
  case "$arg" in
    --no-asan) run_asan=0 ;;
    --no-lint) run_lint=0 ;;
    --quick) run_asan=0; run_package=0; run_lint=0 ;;
    -h | --help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) echo "test.sh: unknown option '$arg' (expected --no-asan, --no-lint, --quick or --help)" >&2; exit 2 ;;
  esac
done

build_root=${TESSERA_BUILD_ROOT:-build}
[[ "$build_root" = /* ]] || build_root="$repo/$build_root"
jobs=${TESSERA_JOBS:-2}
ci_dir="$build_root/ci"
asan_dir="$build_root/asan"

job_start=$SECONDS
phase_name=""
phase_start=0
phase() {
  finish_phase
  phase_name=$1
  phase_start=$SECONDS
  printf '\n==> %s\n' "$phase_name"
}
finish_phase() {
  if [[ -n "$phase_name" ]]; then
    printf '<== %s: %ds\n' "$phase_name" $((SECONDS - phase_start))
    phase_name=""
  fi
}
on_exit() {
  local status=$?
  if [[ $status -ne 0 && -n "$phase_name" ]]; then
    printf '\n!!! FAILED in phase "%s" after %ds (exit status %d)\n' \
      "$phase_name" $((SECONDS - phase_start)) "$status" >&2
  fi
}
trap on_exit EXIT

phase "dependencies"
scripts/install-deps.sh
# The real default model: its golden tests must run here, never pass by skipping. A failed
# fetch stops the job, and the tests fail rather than skip when the file is missing.
scripts/fetch-default-model.sh
export TESSERA_REQUIRE_DEFAULT_MODEL=1

phase "configure + build: preset ci ($ci_dir)"
cmake --preset ci -B "$ci_dir"
cmake --build "$ci_dir" -j "$jobs"

# The package test gets its own phase below; ctest users get it with the rest.
phase "tests: preset ci"
ctest --test-dir "$ci_dir" --output-on-failure -j "$jobs" --no-tests=error -LE package

if [[ $run_lint -eq 1 ]]; then
  phase "lint: clang-format + clang-tidy"
  TESSERA_JOBS=$jobs scripts/lint.sh "$ci_dir"
fi

if [[ $run_package -eq 1 ]]; then
  phase "install + out-of-tree plugin template"
  package_work=$(mktemp -d "${TMPDIR:-/tmp}/tessera-package.XXXXXX")
  bash tests/integration/package.sh "$ci_dir" "$package_work"
  rm -rf "$package_work"
fi

if [[ $run_asan -eq 1 ]]; then
  phase "configure + build: preset asan ($asan_dir)"
  cmake --preset asan -B "$asan_dir"
  cmake --build "$asan_dir" -j "$jobs"

  phase "tests: preset asan"
  ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:strict_string_checks=1:check_initialization_order=1} \
  UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
    ctest --test-dir "$asan_dir" --output-on-failure -j "$jobs" --no-tests=error -LE package
fi

finish_phase
printf '\nall phases passed in %ds\n' $((SECONDS - job_start))
