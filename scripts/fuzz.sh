#!/usr/bin/env bash
# Builds and runs a libFuzzer target, then merges what it found into the kept corpus.
#
#   scripts/fuzz.sh gguf [seconds]     (default 180 s)
#   scripts/fuzz.sh tokenizer [seconds]
#   scripts/fuzz.sh safetensors [seconds]
#   scripts/fuzz.sh hf_config [seconds]
#   scripts/fuzz.sh manifest [seconds]
#
# Needs clang++ with libFuzzer (Debian: clang). The build goes to build-fuzz/; new inputs are
# first written to build-fuzz/<target>-new/ and then minimised into fuzz/corpus/<target>/ with
# -merge=1 (tokenizer: -set_cover_merge=1), so only inputs that add coverage are kept.
# Seeds: the corpus plus tests/data/gguf (gguf) or fuzz/seeds/<target>; manifest also uses the
# dictionary fuzz/manifest.dict (manifest keys and TOML punctuation).
set -euo pipefail

target=${1:-}
seconds=${2:-180}
root=$(cd "$(dirname "$0")/.." && pwd)
max_len=2048
merge=-merge=1
dict=()
case "$target" in
  gguf)
    sources=(fuzz/gguf_fuzz.cpp core/src/formats/gguf.cpp core/src/formats/dequantize.cpp core/src/engine/tensor.cpp)
    seeds=("$root/tests/data/gguf")
    ;;
  tokenizer)
    sources=(fuzz/tokenizer_fuzz.cpp core/src/text/tokenizer.cpp core/src/text/tokenizer_json.cpp
      core/src/text/tokenizer_pretokenize.cpp core/src/text/unicode.cpp core/src/text/unicode_tables.cpp
      core/src/chat/chat_template.cpp)
    seeds=()  # the fuzzer finds its way from nothing; golden files would bloat the corpus
    # Every BPE loop count is a feature: -merge=1 keeps ~600 inputs, a set cover ~200 with
    # the same features.
    merge=-set_cover_merge=1
    ;;
  safetensors)
    sources=(fuzz/safetensors_fuzz.cpp core/src/engine/weights.cpp core/src/formats/safetensors.cpp core/src/engine/tensor.cpp)
    seeds=("$root/fuzz/seeds/safetensors")
    ;;
  hf_config)
    sources=(fuzz/hf_config_fuzz.cpp core/src/formats/hf_config.cpp core/src/engine/manifest.cpp
      core/src/engine/toml_reader.cpp core/src/engine/toml_hazards.cpp core/src/engine/params.cpp core/src/engine/input_file.cpp)
    seeds=("$root/fuzz/seeds/hf_config")
    max_len=4096  # a DeciLM config with a few block_configs entries
    ;;
  manifest)
    sources=(fuzz/manifest_fuzz.cpp core/src/engine/manifest.cpp core/src/engine/toml_reader.cpp core/src/engine/toml_hazards.cpp
      core/src/engine/params.cpp core/src/engine/input_file.cpp)
    seeds=("$root/fuzz/seeds/manifest")
    dict=("-dict=$root/fuzz/manifest.dict")
    max_len=4096  # the seeds are small manifests of up to 2 KiB
    ;;
  *)
    echo "usage: $0 gguf|tokenizer|safetensors|hf_config|manifest [seconds]" >&2
    exit 2
    ;;
esac

cxx=${CXX_FUZZ:-$(command -v clang++ || true)}
if [[ -z "$cxx" ]]; then
  echo "fuzz.sh: clang++ not found; libFuzzer needs clang" >&2
  exit 1
fi

build="$root/build-fuzz"
corpus="$root/fuzz/corpus/$target"
fresh="$build/$target-new"
mkdir -p "$build" "$corpus"
rm -rf "$fresh"
mkdir -p "$fresh"

binary="$build/${target}_fuzz"
echo "fuzz.sh: building $binary"
(cd "$root" && "$cxx" -std=c++20 -g -O1 -fno-omit-frame-pointer \
  -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
  -mavx2 -mfma -mf16c -Icore/include -Isdk/include "${sources[@]}" -o "$binary")

echo "fuzz.sh: fuzzing for ${seconds}s"
# -rss_limit_mb guards against huge allocations; -max_len keeps inputs small.
"$binary" "$fresh" "$corpus" "${seeds[@]}" "${dict[@]}" -max_total_time="$seconds" -max_len="$max_len" \
  -artifact_prefix="$build/" -rss_limit_mb=1024 -timeout=10 -print_final_stats=1 2>&1 | tee "$build/$target-run.log" | \
  grep -E "INITED|DONE|stat::|ERROR|SUMMARY|Done" || true
if grep -q -E "ERROR: (libFuzzer|AddressSanitizer)|SUMMARY: UndefinedBehavior" "$build/$target-run.log"; then
  echo "fuzz.sh: the fuzzer found a bug; see $build/$target-run.log and $build/crash-*;" \
    "once fixed, copy the input into $corpus as a regression" >&2
  exit 1
fi

# Keep only what adds coverage, in a fresh directory that replaces the corpus.
merged="$build/$target-merged"
rm -rf "$merged"
mkdir -p "$merged"
"$binary" "$merge" "$merged" "$corpus" "$fresh" "${seeds[@]}" > "$build/$target-merge.log" 2>&1
# Hand-kept inputs (regression-*: past crashes) stay whatever their coverage.
find "$corpus" -maxdepth 1 -name 'regression-*' -exec cp {} "$merged/" \;
rm -rf "$corpus"
mv "$merged" "$corpus"
echo "fuzz.sh: corpus $corpus: $(ls "$corpus" | wc -l) files, $(du -sb "$corpus" | cut -f1) bytes"
