#!/usr/bin/env bash
# The GPU suite: builds the CUDA plugins, their tests and benchmarks, and runs them.
#
#   scripts/gpu-suite.sh --prepare
#       On a development machine with the build dependencies installed (Debian packages,
#       scripts/install-deps.sh): gathers into .gpu-deps/ (git-ignored) what the GPU machine
#       lacks, i.e. the third-party headers the build actually includes (traced with the
#       compilers, not whole packages), GoogleTest's sources, Google Benchmark's library and
#       CMake package files for both. Checks it stays under the device tool's 64 MiB carry.
#   scripts/gpu-suite.sh --simulate
#       Here, after --prepare: configures and builds the suite's targets in a private mount
#       namespace where the system copies of those dependencies are hidden (needs root and
#       unshare), proving the build needs nothing but .gpu-deps/ and the CUDA toolkit.
#   scripts/gpu-suite.sh [all | build | test | bench] [--quick]
#       On the GPU machine, from the repository root, with .gpu-deps/ carried along:
#       build (googletest from source, configure, the suite's targets), test (the CUDA
#       GoogleTest binary, ctest -L cuda, tessera plugin-check on each CUDA plugin), bench
#       (tessera_cuda_bench). "all" (the default) runs the three in order. --quick: the
#       plugin-check quick grid and the benchmarks' smaller sizes, to fit one 10-minute call.
#
# Results go to $OUT when set (the device tool's folder), else build/gpu/results: at most
# eight files (env.txt, build.log, tests.log, tests.xml, plugin-check.log, bench.txt,
# bench.json, summary.txt). The last lines printed are the summary.
#
# Environment: TESSERA_GPU_BUILD (default build/gpu), TESSERA_JOBS (default: all cores),
# CUDA_ARCHITECTURES (default 90a).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo=$(pwd)
deps="$repo/.gpu-deps"
build=${TESSERA_GPU_BUILD:-$repo/build/gpu}
[[ "$build" = /* ]] || build="$repo/$build"
jobs=${TESSERA_JOBS:-$(nproc)}
arch=${CUDA_ARCHITECTURES:-90a}
out=${OUT:-$build/results}
carry_limit=$((64 * 1024 * 1024))

mode=all
quick=0
for arg in "$@"; do
  case "$arg" in
    --prepare) mode=prepare ;;
    --simulate) mode=simulate ;;
    all | build | test | bench) mode=$arg ;;
    --quick) quick=1 ;;
    -h | --help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) echo "gpu-suite.sh: unknown argument '$arg' (see --help)" >&2; exit 2 ;;
  esac
done

say() { printf '==> %s\n' "$*"; }
die() { echo "gpu-suite.sh: $*" >&2; exit 1; }

# Third-party header folders under /usr/include that the GPU machine does not have.
third_party='^/usr/include/(boost|toml\+\+|CLI|spdlog|fmt|nlohmann|gtest|gmock|benchmark)/'

# ---------------------------------------------------------------- prepare (here)

prepare() {
  command -v python3 >/dev/null || die "--prepare needs python3"
  local scratch
  scratch=$(mktemp -d "${TMPDIR:-/tmp}/gpu-suite-prepare.XXXXXX")
  trap 'rm -rf "$scratch"' RETURN
  say "configuring a scratch build for its compile commands ($scratch)"
  cmake -S "$repo" -B "$scratch/build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DTESSERA_WITH_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES="$arch" >"$scratch/configure.log" ||
    { cat "$scratch/configure.log"; die "configure failed"; }

  say "tracing the headers every translation unit includes"
  python3 - "$scratch/build/compile_commands.json" "$scratch/headers.txt" <<'PY'
import json, os, re, shlex, subprocess, sys
from concurrent.futures import ThreadPoolExecutor
commands = json.load(open(sys.argv[1]))
def deps(entry):
    args = shlex.split(entry["command"])
    keep, skip = [], False
    for a in args:  # drop the output and dependency-file options, keep everything else
        if skip:
            skip = False
            continue
        if a in ("-o", "-MT", "-MF", "-MQ"):
            skip = True
            continue
        if a in ("-c", "-MD", "-MMD"):
            continue
        keep.append(a)
    out = subprocess.run(keep + ["-M"], cwd=entry["directory"], capture_output=True, text=True)
    if out.returncode != 0:
        sys.stderr.write(f"cannot trace {entry['file']}:\n{out.stderr[-2000:]}\n")
        return set()
    text = out.stdout.replace("\\\n", " ")
    return {os.path.realpath(p) if not p.startswith("/usr/include") else os.path.normpath(p)
            for p in text.split() if p.startswith("/") and not p.endswith(":")}
with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
    found = set().union(*pool.map(deps, commands))
open(sys.argv[2], "w").write("\n".join(sorted(found)) + "\n")
print(f"{len(commands)} translation units, {len(found)} files included")
PY
  rm -rf "$deps"
  mkdir -p "$deps/include" "$deps/lib/cmake/benchmark" "$deps/lib/cmake/Boost-1.74.0" "$deps/src"
  local n=0
  while IFS= read -r header; do
    [[ "$header" =~ $third_party ]] || continue
    local rel=${header#/usr/include/}
    mkdir -p "$deps/include/$(dirname "$rel")"
    cp "$header" "$deps/include/$rel"
    n=$((n + 1))
  done <"$scratch/headers.txt"
  say "copied $n third-party headers"
  # What is not carried must come with the GPU machine's compiler, C library and CUDA
  # toolkit: list the packages that own it, and anything no package owns.
  grep -Ev "$third_party|^/usr/local/cuda|^$repo/|^$scratch/" "$scratch/headers.txt" |
    xargs -r dpkg -S 2>&1 | sed 's/: .*//; s/, /\n/g' | sort -u | tr '\n' ' ' |
    sed 's/^/    left to the GPU machine (owning packages): /'
  echo

  # GoogleTest from source (its prebuilt Debian libraries need not match the GPU machine's
  # compiler); Google Benchmark has no source here, so its library travels.
  [[ -d /usr/src/googletest ]] || die "/usr/src/googletest is missing (apt-get install googletest)"
  cp -r /usr/src/googletest "$deps/src/googletest"
  local bench_so
  bench_so=$(readlink -f /usr/lib/x86_64-linux-gnu/libbenchmark.so) ||
    die "Google Benchmark is missing (apt-get install libbenchmark-dev)"
  cp "$bench_so" "$deps/lib/libbenchmark.so.1debian"
  cp /usr/lib/x86_64-linux-gnu/libbenchmark_main.a "$deps/lib/"
  cat >"$deps/lib/cmake/benchmark/benchmarkConfig.cmake" <<'CMAKE'
# Google Benchmark carried for the GPU machine by scripts/gpu-suite.sh --prepare.
get_filename_component(_bench_root "${CMAKE_CURRENT_LIST_DIR}/../../.." ABSOLUTE)
if(NOT TARGET benchmark::benchmark)
  add_library(benchmark::benchmark SHARED IMPORTED)
  set_target_properties(benchmark::benchmark PROPERTIES
    IMPORTED_LOCATION "${_bench_root}/lib/libbenchmark.so.1debian"
    IMPORTED_SONAME "libbenchmark.so.1debian"
    INTERFACE_INCLUDE_DIRECTORIES "${_bench_root}/include")
  add_library(benchmark::benchmark_main STATIC IMPORTED)
  set_target_properties(benchmark::benchmark_main PROPERTIES
    IMPORTED_LOCATION "${_bench_root}/lib/libbenchmark_main.a"
    INTERFACE_LINK_LIBRARIES benchmark::benchmark)
endif()
set(benchmark_FOUND TRUE)
CMAKE
  # Boost is used header-only: a package file that points at the carried headers.
  cat >"$deps/lib/cmake/Boost-1.74.0/BoostConfig.cmake" <<'CMAKE'
# Boost headers carried for the GPU machine by scripts/gpu-suite.sh --prepare.
get_filename_component(_boost_root "${CMAKE_CURRENT_LIST_DIR}/../../.." ABSOLUTE)
if(NOT TARGET Boost::headers)
  add_library(Boost::headers INTERFACE IMPORTED)
  set_target_properties(Boost::headers PROPERTIES
    INTERFACE_INCLUDE_DIRECTORIES "${_boost_root}/include")
  add_library(Boost::boost INTERFACE IMPORTED)
  set_target_properties(Boost::boost PROPERTIES INTERFACE_LINK_LIBRARIES Boost::headers)
endif()
set(Boost_FOUND TRUE)
set(Boost_VERSION 1.74.0)
set(Boost_INCLUDE_DIRS "${_boost_root}/include")
CMAKE
  cat >"$deps/lib/cmake/Boost-1.74.0/BoostConfigVersion.cmake" <<'CMAKE'
set(PACKAGE_VERSION 1.74.0)
if(PACKAGE_FIND_VERSION VERSION_GREATER PACKAGE_VERSION)
  set(PACKAGE_VERSION_COMPATIBLE FALSE)
else()
  set(PACKAGE_VERSION_COMPATIBLE TRUE)
endif()
CMAKE
  {
    echo "prepared $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(uname -n) from $(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo '?')"
    echo "headers: $n; googletest: /usr/src/googletest; benchmark: $bench_so"
  } >"$deps/PREPARED"

  local size tree
  size=$(du -sb "$deps" | cut -f1)
  tree=$(git -C "$repo" ls-files --cached --others --exclude-standard -z | du -cb --files0-from=- | tail -1 | cut -f1)
  say "$deps: $((size / 1024)) KiB; the working tree: $((tree / 1024)) KiB; together $(((size + tree) / 1024)) KiB of the $((carry_limit / 1024)) KiB the device tool carries"
  ((size + tree < carry_limit)) || die "over the carry limit"
  echo "run on the GPU machine with: carry [\".gpu-deps\"], command \"scripts/gpu-suite.sh\""
}

# ------------------------------------------------------ the build (GPU machine)

build_suite() {
  [[ -f "$deps/PREPARED" ]] || die "$deps is missing: run scripts/gpu-suite.sh --prepare where the dependencies are installed, and carry .gpu-deps"
  mkdir -p "$build" "$out"
  local gtest_prefix="$build/googletest"
  if [[ ! -f "$gtest_prefix/lib/cmake/GTest/GTestConfig.cmake" ]]; then
    say "building googletest from .gpu-deps/src"
    cmake -S "$deps/src/googletest" -B "$build/googletest-build" -G Ninja \
      -DCMAKE_BUILD_TYPE=Release -DBUILD_GMOCK=OFF -DCMAKE_INSTALL_PREFIX="$gtest_prefix" \
      -DCMAKE_POSITION_INDEPENDENT_CODE=ON >>"$out/build.log" 2>&1
    cmake --build "$build/googletest-build" -j "$jobs" >>"$out/build.log" 2>&1
    cmake --install "$build/googletest-build" >>"$out/build.log" 2>&1
  fi
  say "configuring $build (CUDA architectures $arch)"
  # Only .gpu-deps supplies third-party code: its headers come first, its packages are the
  # only ones named. Warnings stay warnings: this compiler may be newer than CI's, which
  # builds with -Werror; they are counted in the summary.
  cmake -S "$repo" -B "$build/tree" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DTESSERA_WITH_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES="$arch" -DTESSERA_WERROR=OFF \
    -DCMAKE_PREFIX_PATH="$gtest_prefix;$deps" -DBoost_DIR="$deps/lib/cmake/Boost-1.74.0" \
    -Dbenchmark_DIR="$deps/lib/cmake/benchmark" \
    -DCMAKE_CXX_FLAGS="-isystem $deps/include" -DCMAKE_CUDA_FLAGS="-isystem=$deps/include" \
    >>"$out/build.log" 2>&1 || { tail -40 "$out/build.log"; die "configure failed (see build.log)"; }
  say "building the CUDA plugins, tests, benchmarks and the tessera command (-j $jobs)"
  local start=$SECONDS
  cmake --build "$build/tree" -j "$jobs" --target tessera tessera_attention_cuda tessera_ffn_cuda \
    tessera_backend_cuda tessera_cuda_tests tessera_cuda_bench >>"$out/build.log" 2>&1 ||
    { tail -60 "$out/build.log"; die "build failed (see build.log)"; }
  echo "build: $((SECONDS - start)) s, $(grep -c 'warning' "$out/build.log") lines of the build log mention a warning" >>"$out/summary.txt"
}

# ------------------------------------------------------- tests (GPU machine)

run_tests() {
  local tree="$build/tree" status=0
  [[ -x "$tree/bin/tessera_cuda_tests" ]] || die "nothing built in $tree: run the build step first"
  mkdir -p "$out"
  say "tessera_cuda_tests"
  "$tree/bin/tessera_cuda_tests" --gtest_output="xml:$out/tests.xml" >"$out/tests.log" 2>&1 ||
    status=1
  grep -E '^\[  (PASSED|FAILED|SKIPPED) ' "$out/tests.log" | head -40 || true
  say "ctest -L cuda (the same tests one by one, and plugin-check through ctest)"
  ctest --test-dir "$tree" -L cuda -j 4 --output-on-failure >>"$out/tests.log" 2>&1 || status=1
  tail -3 "$out/tests.log"
  say "tessera plugin-check on the CUDA plugins"
  : >"$out/plugin-check.log"
  local flags=()
  ((quick)) && flags+=(--quick)
  for p in attention-cuda ffn-cuda backend-cuda; do
    "$tree/bin/tessera" plugin-check "$tree/lib/tessera/plugins/libtessera-$p.so" "${flags[@]}" \
      >>"$out/plugin-check.log" 2>&1 || status=1
  done
  grep -E '^(FAIL|SKIP)|passed, ' "$out/plugin-check.log" | head -40 || true
  {
    # GoogleTest's own tally: "[  PASSED  ] N tests.", "[  SKIPPED ] N tests, listed below:".
    local tally
    tally=$(grep -E '^\[  (PASSED|SKIPPED|FAILED) +\] [0-9]+ tests?' "$out/tests.log" |
      sed -E 's/^\[ +([A-Z]+) +\] ([0-9]+) .*/\2 \1/' | tr '\n' ' ' | tr 'A-Z' 'a-z')
    echo "tests: ${tally:-no tally} (tessera_cuda_tests; without a GPU all but the loading checks skip)"
    grep -E 'passed, .* failed' "$out/plugin-check.log" | sed 's/^/plugin-check: /'
    grep -E 'no CUDA device' "$out/plugin-check.log" | sed 's/^/plugin-check: /' || true
  } >>"$out/summary.txt"
  return $status
}

# ----------------------------------------------------- benchmarks (GPU machine)

run_bench() {
  local tree="$build/tree"
  [[ -x "$tree/bin/tessera_cuda_bench" ]] || die "nothing built in $tree: run the build step first"
  mkdir -p "$out"
  local filter=.
  # --quick: the 4k prefills, 4k and 64k decode contexts, FFN at 1 and 4096 tokens.
  ((quick)) && filter='BM_DeviceCopy|BM_GemmPeak|Prefill.*seq:4096/|Decode.*context:(4096|65536)/|(tokens:1|tokens:4096)(/|$)'
  say "tessera_cuda_bench (filter '$filter')"
  "$tree/bin/tessera_cuda_bench" --benchmark_filter="$filter" --benchmark_min_time=0.2 \
    --benchmark_out="$out/bench.json" --benchmark_out_format=json \
    --benchmark_counters_tabular=true | tee "$out/bench.txt"
}

environment() {
  mkdir -p "$out"
  {
    date -u
    uname -a
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv 2>&1 || true
    nvcc --version 2>&1 | tail -2 || true
    cmake --version | head -1
    c++ --version | head -1
    cat "$deps/PREPARED" 2>/dev/null || true
  } >"$out/env.txt"
  cat "$out/env.txt"
}

# ------------------------------------------------------ simulate (here, as root)

simulate() {
  [[ -f "$deps/PREPARED" ]] || die "run --prepare first"
  [[ $(id -u) -eq 0 ]] && command -v unshare >/dev/null ||
    die "--simulate needs root and unshare (a private mount namespace)"
  # Hide the system copies of everything .gpu-deps replaces, then build with .gpu-deps alone.
  local hide=(/usr/include/boost /usr/include/toml++ /usr/include/CLI /usr/include/spdlog
    /usr/include/fmt /usr/include/nlohmann /usr/include/gtest /usr/include/gmock
    /usr/include/benchmark /usr/src/googletest)
  local libdir=/usr/lib/x86_64-linux-gnu
  local script="set -e; empty=\$(mktemp -d)"
  for d in "${hide[@]}"; do [[ -d "$d" && ! -L "$d" ]] && script+="; mount --bind \$empty $d"; done
  for d in "$libdir"/cmake/{Boost,boost,GTest,benchmark,fmt,spdlog,tomlplusplus,nlohmann}*; do
    if [[ -d "$d" ]]; then
      script+="; mount --bind \$empty $d"
    elif [[ -f "$d" ]]; then
      script+="; mount --bind /dev/null $d"
    fi
  done
  for f in "$libdir"/lib{gtest,gmock,benchmark,fmt,spdlog,tomlplusplus}*; do
    [[ -f "$f" ]] && script+="; mount --bind /dev/null $f"
  done
  script+="; test ! -e /usr/include/boost/version.hpp"
  script+="; TESSERA_GPU_BUILD='${TESSERA_GPU_BUILD:-build/gpu-simulate}' OUT='${OUT:-}' bash scripts/gpu-suite.sh build"
  say "building with the system's copies hidden (unshare -m)"
  unshare -m bash -c "$script"
}

case "$mode" in
  prepare) prepare ;;
  simulate) simulate ;;
  build)
    environment
    build_suite
    ;;
  test) run_tests ;;
  bench) run_bench ;;
  all)
    status=0
    environment
    build_suite
    run_tests || status=1
    run_bench || status=1
    say "summary"
    cat "$out/summary.txt"
    exit $status
    ;;
esac
