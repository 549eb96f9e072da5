#!/usr/bin/env bash
# One end-to-end case of the tessera command; the case name is the first argument.
set -uo pipefail
: "${TESSERA:?}" "${PLUGIN_DIR:?}" "${FIXTURE_DIR:?}" "${SOURCE_DIR:?}"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAILED: $*" >&2; exit 1; }
expect_in() { grep -qF -- "$1" "$2" || { cat "$2" >&2; fail "expected '$1' in $(basename "$2")"; }; }
hetero="$SOURCE_DIR/examples/manifests/tiny-hetero.toml"

case "$1" in
plugins_lists_builtin)
  "$TESSERA" plugins >"$work/out" || fail "tessera plugins exited $?"
  for p in tessera-attention-cpu tessera-ffn-cpu tessera-decoding-basic; do expect_in "$p" "$work/out"; done
  expect_in "attention gqa" "$work/out"
  expect_in "ffn swiglu" "$work/out"
  expect_in "ABI 2." "$work/out"
  ;;
plugin_check_attention_cpu | plugin_check_ffn_cpu)
  lib=attention-cpu; [ "$1" = plugin_check_ffn_cpu ] && lib=ffn-cpu
  "$TESSERA" plugin-check "$PLUGIN_DIR/libtessera-$lib.so" >"$work/out" 2>&1 || { cat "$work/out"; fail "plugin-check $lib exited non-zero"; }
  grep -q '^FAIL' "$work/out" && fail "a case failed"
  grep -Eq '^[1-9][0-9]* passed, 0 failed' "$work/out" || { cat "$work/out"; fail "no passing cases"; }
  # The kinds that declare their weights get the property checks besides their reference.
  expect_in "PASS  properties " "$work/out"
  expect_in "prefill equals chunks and one by one" "$work/out"
  # And, offering training, the backward cases: against the reference and by differences.
  expect_in "PASS  backward " "$work/out"
  expect_in "finite differences" "$work/out"
  expect_in "recompute policies give identical gradients" "$work/out"
  cat "$work/out"
  ;;
plugin_check_decoding_basic | plugin_check_decoding_medusa | plugin_check_parallel_local | plugin_check_search_exact | \
  plugin_check_search_mip | plugin_check_search_greedy | plugin_check_search_lagrangian)
  # Decoders, communicators and search providers have suites of their own.
  lib=${1#plugin_check_}; lib=${lib//_/-}
  if [ "$lib" = search-mip ] && [ ! -f "$PLUGIN_DIR/libtessera-search-mip.so" ]; then
    echo "SKIP: libtessera-search-mip.so was not built (COIN-OR CBC not found by pkg-config)"
    exit 77
  fi
  "$TESSERA" plugin-check "$PLUGIN_DIR/libtessera-$lib.so" >"$work/out" 2>&1 || { cat "$work/out"; fail "plugin-check $lib exited non-zero"; }
  grep -q '^FAIL' "$work/out" && { cat "$work/out"; fail "a case failed"; }
  grep -Eq '^[1-9][0-9]* passed, 0 failed' "$work/out" || { cat "$work/out"; fail "no passing cases"; }
  case "$lib" in
  decoding-medusa)
    expect_in "PASS  decoder medusa with greedy acceptance emits greedy decoding's tokens" "$work/out"
    expect_in "PASS  decoder medusa decodes a batch as each sequence alone" "$work/out"
    ;;
  decoding-basic)
    expect_in "PASS  decoder greedy equals argmax, ties to the lowest index" "$work/out"
    expect_in "PASS  decoder sampling draws follow softmax(logits / temperature)" "$work/out"
    expect_in "PASS  decoder sampling decodes several slots as each alone" "$work/out"
    expect_in "PASS  decoder greedy refuses an unknown parameter" "$work/out"
    expect_in "PASS  decoder sampling refuses bad temperature" "$work/out"
    ;;
  parallel-local)
    for w in 1 2 3 4; do
      for op in all_reduce_sum all_gather reduce_scatter_sum broadcast; do
        expect_in "PASS  parallel local $op world=$w bf16" "$work/out"
      done
    done
    expect_in "PASS  parallel local all_reduce_sum with mismatched shapes fails on every rank, world=3" "$work/out"
    ;;
  search-exact | search-mip | search-greedy | search-lagrangian)
    p=${lib#search-}
    expect_in "PASS  search $p puzzle.block_selection layers=4 both budgets" "$work/out"
    expect_in "PASS  search $p puzzle.block_selection layers=4 named costs and diversity" "$work/out"
    expect_in "PASS  search $p reports budgets nothing fits as infeasible" "$work/out"
    expect_in "PASS  search $p refuses an unknown problem type" "$work/out"
    expect_in "PASS  search $p puzzle.block_selection refuses a diversity solution naming an unknown variant" "$work/out"
    ;;
  esac
  grep -q '^checking' "$work/out" || fail "no header line"
  ;;
plugin_check_single_rank_parallel_skips)
  # A communicator that cannot form several ranks in one process (like one rank of an MPI
  # job): its world-1 cases pass, the larger worlds are skipped with its reason, exit 0.
  "$TESSERA" plugin-check "$FIXTURE_DIR/libtessera-fixture-single-rank.so" >"$work/out" 2>&1 ||
    { cat "$work/out"; fail "plugin-check exited non-zero"; }
  for w in 2 3 4; do
    expect_in "SKIP  parallel single-rank world=$w: cannot form this world in one process" "$work/out"
  done
  expect_in "cannot form a world of 2 by itself" "$work/out"
  expect_in "PASS  parallel single-rank all_gather world=1 bf16" "$work/out"
  grep -q 'world=[234] ' "$work/out" && { cat "$work/out"; fail "a case of world > 1 ran"; }
  expect_in "16 passed, 0 failed, 3 skipped" "$work/out"
  ;;
plugin_check_wrong_decoder_fails)
  if "$TESSERA" plugin-check "$FIXTURE_DIR/libtessera-fixture-wrong-decoder.so" >"$work/out" 2>"$work/err"; then
    cat "$work/out"; fail "plugin-check passed a greedy decoder that emits the second-best token"
  fi
  expect_in "FAIL  decoder greedy equals argmax, ties to the lowest index, vocab=1000" "$work/out"
  # Only argmax is wrong: the protocol checks pass (vocab 1 has no second-best token).
  for c in "emits within its budget and feeds what it emits" "is deterministic" \
    "decodes several slots as each alone" "refuses an unknown parameter" \
    "refuses a step with budget 0" "equals argmax, ties to the lowest index, vocab=1"; do
    grep -qxF "PASS  decoder greedy $c" "$work/out" || { cat "$work/out"; fail "'$c' should pass"; }
  done
  expect_in "case(s) failed" "$work/err"
  [ "$(wc -l <"$work/err")" -eq 1 ] || fail "error is not one line"
  ;;
c_plugin)
  # A plugin in plain C: no C++ runtime, one exported symbol, and it passes the suite.
  lib="$FIXTURE_DIR/libtessera-fixture-c.so"
  [ -f "$lib" ] || fail "$lib was not built"
  readelf -d "$lib" >"$work/dynamic" || fail "readelf -d"
  grep -q 'NEEDED' "$work/dynamic" || { cat "$work/dynamic"; fail "no NEEDED entries: not a dynamic library?"; }
  if grep -E 'NEEDED.*(libstdc\+\+|libc\+\+|libboost|libgcc_s)' "$work/dynamic"; then fail "the C plugin needs a C++ runtime"; fi
  readelf --dyn-syms -W "$lib" | awk '$7 != "UND" && ($5 == "GLOBAL" || $5 == "WEAK") { print $8 }' |
    grep -v '^$' | sort -u >"$work/exports"
  [ "$(cat "$work/exports")" = "tessera_plugin" ] || { cat "$work/exports"; fail "exports other than tessera_plugin"; }
  "$TESSERA" plugin-check "$lib" >"$work/out" 2>&1 || { cat "$work/out"; fail "plugin-check on the C plugin"; }
  grep -q '^FAIL' "$work/out" && fail "a case failed"
  expect_in "PASS  ffn swiglu hidden=576 intermediate=1536 tokens=9" "$work/out"
  expect_in "PASS  attention linear hidden=64" "$work/out"
  # Pinned in a manifest, its blocks give the tokens the C++ blocks give.
  mkdir -p "$work/plugins" && cp "$lib" "$work/plugins/"
  sed -e 's/kind = "swiglu"/kind = "swiglu", plugin = "tessera-fixture-c"/' \
    -e 's/kind = "linear"/kind = "linear", plugin = "tessera-fixture-c"/' "$hetero" >"$work/c.toml"
  [ "$(grep -c 'tessera-fixture-c' "$work/c.toml")" -eq 4 ] || { cat "$work/c.toml"; fail "expected 4 pinned blocks"; }
  "$TESSERA" validate "$work/c.toml" --plugin-path "$work/plugins" >"$work/validate" 2>&1 ||
    { cat "$work/validate"; fail "validate with the C plugin"; }
  expect_in "(tessera-fixture-c)" "$work/validate"
  "$TESSERA" generate "$hetero" --tokens 1,2,3,4 -n 12 -q >"$work/cxx" || fail "generate with the C++ blocks"
  "$TESSERA" generate "$work/c.toml" --plugin-path "$work/plugins" --tokens 1,2,3,4 -n 12 -q >"$work/c" ||
    fail "generate with the C blocks"
  cmp -s "$work/cxx" "$work/c" || fail "C blocks: $(cat "$work/c"); C++ blocks: $(cat "$work/cxx")"
  ;;
search_command)
  cat >"$work/problem.json" <<'JSON'
{
  "problem": "puzzle.block_selection",
  "budgets": {"memory_bytes": 3},
  "layers": [
    {"attention": [{"name": "full", "score": 0, "memory_bytes": 2}, {"name": "small", "score": 0.5, "memory_bytes": 1}],
     "ffn": [{"name": "swiglu", "score": 0, "memory_bytes": 0}]},
    {"attention": [{"name": "full", "score": 0, "memory_bytes": 2}, {"name": "small", "score": 0.25, "memory_bytes": 1}],
     "ffn": [{"name": "swiglu", "score": 0, "memory_bytes": 0}]}
  ]
}
JSON
  "$TESSERA" search "$work/problem.json" >"$work/out" 2>"$work/err" || { cat "$work/err"; fail "search exited non-zero"; }
  python3 - "$work/out" <<'PY' || fail "unexpected solution"
import json, sys
s = json.load(open(sys.argv[1]))
assert s["status"] == "optimal", s
assert abs(s["objective"] - 0.25) < 1e-12, s
assert [l["attention"] for l in s["layers"]] == ["full", "small"], s
assert s["totals"]["memory_bytes"] == 3, s
PY
  # --output, the provider named, the plugin pinned and a solver parameter give the same.
  "$TESSERA" search "$work/problem.json" --provider exact --plugin tessera-search-exact \
    --param max_nodes=1000 -o "$work/solution.json" >"$work/out2" || fail "search --output"
  [ -s "$work/out2" ] && fail "--output also printed to stdout"
  cmp -s "$work/out" "$work/solution.json" || fail "--output wrote another solution"
  # An infeasible budget is an answer (exit 0) with a reason.
  sed 's/"memory_bytes": 3}/"memory_bytes": 1}/' "$work/problem.json" >"$work/tight.json"
  "$TESSERA" search "$work/tight.json" >"$work/out3" 2>"$work/err3" || fail "an infeasible problem is not an error"
  expect_in '"status": "infeasible"' "$work/out3"
  expect_in "infeasible: " "$work/err3"
  ;;
search_providers)
  # Named costs and diversity through tessera search, with each provider: the same problem,
  # a choice that fits, the provider named in the solution; mip only where it was built.
  cat >"$work/problem.json" <<'JSON'
{
  "problem": "puzzle.block_selection",
  "budgets": {"decode_s": 0.003, "memory_bytes": 20},
  "layers": [
    {"attention": [{"name": "gqa", "score": 0, "memory_bytes": 8, "costs": {"decode_s": 0.002}},
                   {"name": "gqa-1kv", "score": 0.1, "memory_bytes": 6, "costs": {"decode_s": 0.001}},
                   {"name": "noop", "score": 0.5, "memory_bytes": 0, "costs": {"decode_s": 0}}],
     "ffn": [{"name": "swiglu", "score": 0, "memory_bytes": 8, "costs": {"decode_s": 0.001}},
             {"name": "linear", "score": 0.2, "memory_bytes": 2, "costs": {"decode_s": 0.0002}}]},
    {"attention": [{"name": "gqa", "score": 0, "memory_bytes": 8, "costs": {"decode_s": 0.002}},
                   {"name": "noop", "score": 0.3, "memory_bytes": 0, "costs": {"decode_s": 0}}],
     "ffn": [{"name": "swiglu", "score": 0, "memory_bytes": 8, "costs": {"decode_s": 0.001}},
             {"name": "linear", "score": 0.05, "memory_bytes": 2, "costs": {"decode_s": 0.0002}}]}
  ],
  "diversity": {"max_common": 2, "solutions": [[{"attention": "gqa-1kv", "ffn": "swiglu"},
                                                {"attention": "noop", "ffn": "swiglu"}]]}
}
JSON
  providers="exact greedy lagrangian"
  if [ -f "$PLUGIN_DIR/libtessera-search-mip.so" ]; then
    providers="$providers mip"
  else
    echo "note: libtessera-search-mip.so was not built (COIN-OR CBC not found); mip not run"
  fi
  for p in $providers; do
    "$TESSERA" search "$work/problem.json" --provider "$p" -o "$work/$p.json" 2>"$work/err" ||
      { cat "$work/err"; fail "search --provider $p exited non-zero"; }
    python3 - "$work/problem.json" "$work/$p.json" "$p" <<'PY' || fail "unexpected solution from $p"
import json, sys
problem, s, provider = json.load(open(sys.argv[1])), json.load(open(sys.argv[2])), sys.argv[3]
assert s["solver"] == provider, s
assert s["status"] in ("optimal", "feasible"), s
if provider in ("exact", "mip"):
    assert s["status"] == "optimal" and abs(s["objective"] - 0.55) < 1e-12, s  # 0.45 has 3 in common
chosen = [(l["attention"], l["ffn"]) for l in s["layers"]]
totals = {"decode_s": 0.0, "memory_bytes": 0.0}
for layer, (a, f) in zip(problem["layers"], chosen):
    for kind, name in (("attention", a), ("ffn", f)):
        v = next(v for v in layer[kind] if v["name"] == name)
        totals["decode_s"] += v["costs"]["decode_s"]
        totals["memory_bytes"] += v["memory_bytes"]
for name, budget in problem["budgets"].items():
    assert totals[name] <= budget * (1 + 1e-12), (name, totals, s)
    assert abs(s["totals"][name] - totals[name]) < 1e-12, s
earlier = problem["diversity"]["solutions"][0]
common = sum((a == e["attention"]) + (f == e["ffn"]) for (a, f), e in zip(chosen, earlier))
assert common <= 2 and s["common"] == [common], s
PY
  done
  # Solver parameters reach the provider; unknown ones are refused.
  "$TESSERA" search "$work/problem.json" --provider lagrangian --param iterations=20 --param step=1.5 >"$work/out" ||
    fail "lagrangian with parameters"
  if "$TESSERA" search "$work/problem.json" --provider greedy --param max_nodes=5 >"$work/out" 2>"$work/err"; then
    fail "greedy accepted a parameter"
  fi
  expect_in "search-greedy: unknown parameter 'max_nodes'; it accepts no parameters" "$work/err"
  ;;
search_errors)
  check_error() {  # expected-substring, then the command's arguments
    local want=$1; shift
    if "$TESSERA" "$@" >"$work/out" 2>"$work/err"; then fail "'$*' succeeded"; fi
    [ "$(wc -l <"$work/err")" -eq 1 ] || { cat "$work/err"; fail "'$*': error is not one line"; }
    expect_in "tessera: error:" "$work/err"
    expect_in "$want" "$work/err"
  }
  check_error "problem is required" search
  check_error "problem '$work/missing.json' does not exist" search "$work/missing.json"
  check_error "is a folder" search "$work"
  printf '{"problem": "puzzle.block_selection",\n  "layers": [\n    {"attention": ]}\n' >"$work/broken.json"
  check_error "broken.json:3:19: invalid JSON" search "$work/broken.json"
  printf '[1, 2]' >"$work/array.json"
  check_error "the problem document is a JSON array" search "$work/array.json"
  printf '{"problem": "parallel.configuration"}' >"$work/unknown.json"
  check_error "unknown problem type 'parallel.configuration'; known problem types: puzzle.block_selection" search "$work/unknown.json"
  printf '{"problem": "puzzle.block_selection", "layers": [{"attention": [], "ffn": []}]}' >"$work/empty.json"
  check_error "layers[0].attention is empty" search "$work/empty.json"
  check_error "search 'nope'" search "$work/unknown.json" --provider nope
  check_error "plugin 'no-such-plugin'" search "$work/unknown.json" --plugin no-such-plugin
  check_error "--param 'max_nodes': expected KEY=VALUE" search "$work/unknown.json" --param max_nodes
  check_error "parameter 'max_nodes' is 0" search "$work/unknown.json" --param max_nodes=0
  check_error "unknown parameter 'depth'" search "$work/unknown.json" --param depth=3
  printf '{"problem": "puzzle.block_selection", "layers": [{"attention": [{"name": "a", "score": 0}], "ffn": [{"name": "f", "score": 0}]}]}' >"$work/ok.json"
  check_error "cannot write the solution to '$work/no-such-folder/solution.json'" search "$work/ok.json" -o "$work/no-such-folder/solution.json"
  ;;
plugin_check_wrong_plugin_fails)
  if "$TESSERA" plugin-check "$FIXTURE_DIR/libtessera-fixture-wrong-attention.so" >"$work/out" 2>"$work/err"; then
    fail "plugin-check passed a plugin that ignores tree masks"
  fi
  expect_in "FAIL  attention gqa" "$work/out"
  # Only the tree-mask cases are wrong; the causal ones pass.
  grep '^FAIL' "$work/out" | grep -vq 'tree_mask' && fail "a case without a tree mask failed"
  grep -q '^PASS  attention gqa' "$work/out" || fail "causal cases should pass"
  expect_in "tree_mask" "$work/err"
  [ "$(wc -l <"$work/err")" -eq 1 ] || fail "error is not one line"
  # It offers no training: said, not failed.
  expect_in "NOTE  attention 'gqa': no backward (cannot be trained)" "$work/out"
  ;;
plugin_check_wrong_backward_fails)
  # A swiglu whose backward forgets the gate's SiLU derivative: its forward cases pass, its
  # backward fails against the reference and by finite differences of its own forward.
  if "$TESSERA" plugin-check "$FIXTURE_DIR/libtessera-fixture-wrong-backward.so" >"$work/out" 2>"$work/err"; then
    cat "$work/out"; fail "plugin-check passed a plugin whose backward is wrong"
  fi
  expect_in "PASS  ffn swiglu hidden=64 intermediate=40" "$work/out"
  expect_in "FAIL  backward ffn swiglu hidden=64 intermediate=40 recompute=none" "$work/out"
  expect_in "FAIL  backward properties ffn swiglu finite differences" "$work/out"
  expect_in "gradient of 'gate_proj.weight'" "$work/out"
  grep '^FAIL' "$work/out" | grep -vq '^FAIL  backward' && { cat "$work/out"; fail "a forward case failed"; }
  # The rest of its training is right.
  expect_in "PASS  backward properties ffn swiglu recompute policies give identical gradients" "$work/out"
  expect_in "PASS  backward properties ffn swiglu two backward calls add twice one" "$work/out"
  expect_in "backward ffn swiglu" "$work/err"
  ;;
generate_heterogeneous)
  "$TESSERA" generate "$hetero" --tokens 1,2,3,4 -n 12 >"$work/out" 2>"$work/err" || { cat "$work/err"; fail "generate exited non-zero"; }
  n=$(wc -w <"$work/out")
  [ "$n" -ge 1 ] && [ "$n" -le 12 ] || fail "expected 1..12 tokens, got $n"
  expect_in "tok/s" "$work/err"
  # Greedy decoding is deterministic.
  "$TESSERA" generate "$hetero" --tokens 1,2,3,4 -n 12 -q >"$work/out2" 2>/dev/null
  cmp -s "$work/out" "$work/out2" || fail "greedy output differs between runs"
  ;;
init_random_deterministic)
  "$TESSERA" init-random --manifest "$hetero" --seed 7 -o "$work/a" >/dev/null || fail "init-random a"
  "$TESSERA" init-random --manifest "$hetero" --seed 7 -o "$work/b" >/dev/null || fail "init-random b"
  "$TESSERA" init-random --manifest "$hetero" --seed 8 -o "$work/c" >/dev/null || fail "init-random c"
  cmp -s "$work/a/model.safetensors" "$work/b/model.safetensors" || fail "same seed, different bytes"
  cmp -s "$work/a/model.safetensors" "$work/c/model.safetensors" && fail "different seeds, same bytes"
  # The written model runs, and equals itself run from the folder.
  "$TESSERA" generate "$work/a" --tokens 5,6,7 -n 6 -q >"$work/g1" || fail "generate from folder"
  "$TESSERA" generate "$work/a/manifest.toml" --tokens 5,6,7 -n 6 -q >"$work/g2" || fail "generate from manifest"
  cmp -s "$work/g1" "$work/g2" || fail "folder and manifest differ"
  "$TESSERA" init-random --shape smollm2-135m --seed 1 -o "$work/s" >"$work/out" || fail "smollm2 shape"
  expect_in "parameters" "$work/out"
  # An existing model is replaced only with --force, and a failed write leaves it as it was.
  if "$TESSERA" init-random --manifest "$hetero" --seed 8 -o "$work/a" 2>"$work/err"; then
    fail "init-random overwrote a model without --force"
  fi
  expect_in "exists and is not empty; choose another or allow overwriting (--force)" "$work/err"
  cmp -s "$work/a/model.safetensors" "$work/b/model.safetensors" || fail "the refused run changed a"
  if (ulimit -f 64 && "$TESSERA" init-random --manifest "$hetero" --seed 8 -o "$work/a" --force \
    2>"$work/err"); then fail "init-random wrote past the file-size limit"; fi
  expect_in "File too large" "$work/err"
  cmp -s "$work/a/model.safetensors" "$work/b/model.safetensors" || fail "the failed run changed a"
  ls -d "$work"/a.* 2>/dev/null && fail "a staging folder was left behind"
  "$TESSERA" init-random --manifest "$hetero" --seed 8 -o "$work/a" --force >/dev/null ||
    fail "init-random --force"
  cmp -s "$work/a/model.safetensors" "$work/c/model.safetensors" || fail "--force did not replace a"
  ;;
sampling_reproducible)
  args=(generate "$hetero" --tokens 1,2,3 -n 16 -q --decoder sampling --temperature 1.5 --top-k 50 --top-p 0.95)
  "$TESSERA" "${args[@]}" --seed 11 >"$work/a" || fail "sampling a"
  "$TESSERA" "${args[@]}" --seed 11 >"$work/b" || fail "sampling b"
  "$TESSERA" "${args[@]}" --seed 12 >"$work/c" || fail "sampling c"
  cmp -s "$work/a" "$work/b" || fail "same seed, different tokens"
  cmp -s "$work/a" "$work/c" && fail "different seeds gave identical 16 tokens"
  ;;
validate_reports_layers)
  "$TESSERA" validate "$hetero" >"$work/out" 2>&1 || { cat "$work/out"; fail "validate exited non-zero"; }
  expect_in "layer 0" "$work/out"
  expect_in "bytes per token" "$work/out"
  expect_in "ok" "$work/out"
  # [runtime] kv_dtype = "f16": info and validate count 16-bit K/V rows, half the f32 bytes.
  sed 's/^\[runtime\]/[runtime]\nkv_dtype = "f16"/' "$hetero" >"$work/kv16.toml"
  "$TESSERA" info "$hetero" >"$work/info32" || fail "info"
  "$TESSERA" info "$work/kv16.toml" >"$work/info16" || fail "info kv16"
  b32=$(grep -o 'kv cache *[0-9]* bytes per token (f32)' "$work/info32" | grep -o '[0-9]*' | head -1)
  b16=$(grep -o 'kv cache *[0-9]* bytes per token (f16)' "$work/info16" | grep -o '[0-9]*' | head -1)
  [ -n "$b32" ] && [ -n "$b16" ] && [ "$((2 * b16))" -eq "$b32" ] ||
    { cat "$work/info32" "$work/info16"; fail "kv bytes f32 $b32, f16 $b16"; }
  "$TESSERA" validate "$work/kv16.toml" >"$work/out16" 2>&1 || { cat "$work/out16"; fail "validate kv16"; }
  ;;
sliding_window_generates)
  # A block kind the core has never heard of (sliding-window gqa, from a fixture plugin that
  # declares its weights through describe): random weights, safetensors written by
  # init-random, generate, validate and info, with no change to the core.
  mkdir -p "$work/plugins"
  cp "$FIXTURE_DIR/libtessera-fixture-sliding-window.so" "$work/plugins/"
  cat >"$work/sliding.toml" <<'TOML'
[model]
hidden_size = 64
num_layers = 2
num_heads = 4
num_kv_heads = 2
intermediate_size = 128
vocab_size = 128
max_seq_len = 64

[weights]
format = "random"
seed = 3

[[layers]]
range = "0"
attention = { kind = "sliding-gqa", window = 4 }

[[layers]]
range = "1"
TOML
  run=(--plugin-path "$work/plugins")
  "$TESSERA" generate "$work/sliding.toml" "${run[@]}" --tokens 1,2,3,4,5,6 -n 8 -q >"$work/a" 2>"$work/err" ||
    { cat "$work/err"; fail "generate with sliding-gqa exited non-zero"; }
  n=$(wc -w <"$work/a")
  [ "$n" -ge 1 ] && [ "$n" -le 8 ] || fail "expected 1..8 tokens, got $n"
  "$TESSERA" init-random --manifest "$work/sliding.toml" "${run[@]}" --seed 3 -o "$work/folder" \
    >"$work/init" || fail "init-random with sliding-gqa"
  expect_in "parameters" "$work/init"
  "$TESSERA" generate "$work/folder" "${run[@]}" --tokens 1,2,3,4,5,6 -n 8 -q >"$work/b" ||
    fail "generate from the safetensors folder"
  cmp -s "$work/a" "$work/b" || fail "random weights and their safetensors generate differently"
  "$TESSERA" validate "$work/sliding.toml" "${run[@]}" >"$work/validate" 2>&1 ||
    { cat "$work/validate"; fail "validate with sliding-gqa"; }
  expect_in "layer 0 attention sliding-gqa (fixture-sliding-window)" "$work/validate"
  "$TESSERA" info "$work/sliding.toml" "${run[@]}" >"$work/info" || fail "info with sliding-gqa"
  expect_in "attention sliding-gqa" "$work/info"
  expect_in "512 bytes per token (f32)" "$work/info"  # 2 layers x K and V x 2 heads x 16 x 4 bytes
  # Without the plugin, the error names the kind and where the manifest asks for it.
  if "$TESSERA" generate "$work/sliding.toml" --tokens 1 >/dev/null 2>"$work/err"; then
    fail "generate without the fixture plugin succeeded"
  fi
  expect_in "sliding.toml:16:13" "$work/err"
  expect_in "sliding-gqa" "$work/err"
  ;;
plugin_check_sliding_window)
  # Its own kind passes on the property checks (and with its window given, too).
  lib="$FIXTURE_DIR/libtessera-fixture-sliding-window.so"
  for args in "" "--param window=2"; do
    # shellcheck disable=SC2086
    "$TESSERA" plugin-check "$lib" $args >"$work/out" 2>&1 ||
      { cat "$work/out"; fail "plugin-check of the sliding-window fixture ($args) exited non-zero"; }
    grep -q '^FAIL' "$work/out" && { cat "$work/out"; fail "a case failed"; }
    expect_in "PASS  properties attention sliding-gqa info agrees with describe" "$work/out"
    expect_in "PASS  properties attention sliding-gqa batch of two equals each alone" "$work/out"
    expect_in "PASS  properties attention sliding-gqa prefill equals chunks" "$work/out"
    expect_in "PASS  properties attention sliding-gqa chain tree mask equals causal" "$work/out"
    grep -Eq '^[1-9][0-9]* passed, 0 failed' "$work/out" || { cat "$work/out"; fail "no passing cases"; }
  done
  # A parameter its describe refuses fails the check, saying how parameters are given.
  if "$TESSERA" plugin-check "$lib" --param window=0 >"$work/out" 2>&1; then
    fail "passed with window 0"
  fi
  expect_in "window 0 must be >= 1" "$work/out"
  expect_in "--param key=value" "$work/out"
  ;;
error_messages)
  check_error() {  # expected-substring, then the command's arguments
    local want=$1; shift
    if "$TESSERA" "$@" >"$work/out" 2>"$work/err"; then fail "'$*' succeeded"; fi
    [ "$(wc -l <"$work/err")" -eq 1 ] || { cat "$work/err"; fail "'$*': error is not one line"; }
    expect_in "tessera: error:" "$work/err"
    expect_in "$want" "$work/err"
  }
  check_error "model is required" generate
  check_error "no-such-flag" plugins --no-such-flag
  check_error "does not exist" generate "$work/missing.toml" --tokens 1
  check_error "--tokens entry 1" generate "$hetero" --tokens 1,x
  check_error "no tokenizer" generate "$hetero" --prompt hello
  printf '[model]\nhidden_size = 64\nnum_layer = 2\n' >"$work/bad.toml"
  check_error "bad.toml:3" validate "$work/bad.toml"
  check_error "libtessera-none.so" plugin-check "$work/libtessera-none.so"
  check_error "smollm2-135m" init-random --shape nope -o "$work/x"
  check_error "does not exist" bench "$work/missing.toml"
  check_error "max_seq_len" bench "$hetero" --prompt-len 250 --gen 10
  check_error "--kv-dtype: f8 not in {f32,bf16,f16}" generate "$hetero" --tokens 1 --kv-dtype f8
  check_error "whole models run on the CPU only for now" generate "$hetero" --tokens 1 --device cuda
  : >"$work/some.gguf"
  check_error "which this command needs (\`tessera convert MODEL DIR --to manifest\`" \
    init-random --manifest "$work/some.gguf" -o "$work/x"
  # Commands and numeric flags: what was wrong and what was expected, in a line of sense.
  check_error "unknown command 'frobnicate'; the commands are: plugins, validate" frobnicate
  check_error "--max-tokens: 'ten' is not an integer; expected an integer from 1 to 1048576" \
    generate "$hetero" --tokens 1 -n ten
  check_error "--max-tokens: '2.5' is not an integer" generate "$hetero" --tokens 1 -n 2.5
  check_error "--seed: '1234567890123456789012345' is out of range" \
    generate "$hetero" --tokens 1 --seed 1234567890123456789012345
  check_error "--seed: '-3' is out of range; expected an integer from 0 to 18446744073709551615" \
    init-random --shape smollm2-135m -o "$work/x" --seed -3
  check_error "--tolerance: '-1' is out of range; expected a number above 0" \
    plugin-check "$PLUGIN_DIR/libtessera-ffn-cpu.so" --tolerance -1
  [ "$(wc -c <"$work/err")" -lt 200 ] || fail "the tolerance message is $(wc -c <"$work/err") bytes"
  check_error "--top-p: '1.5' is out of range; expected a number above 0 and at most 1" \
    generate "$hetero" --tokens 1 --top-p 1.5
  check_error "--temperature: 'warm' is not a number" generate "$hetero" --tokens 1 --temperature warm
  check_error "--plugin-path: Directory does not exist" plugins --plugin-path "$work/no-such-dir"
  check_error "--plugin-path: Directory is actually a file" plugins --plugin-path "$work/bad.toml"
  # FIFOs named as inputs are refused at once, not opened (which would wait for a writer).
  mkfifo "$work/pipe.toml" "$work/pipe.gguf" "$work/pipe.safetensors"
  mkdir "$work/pipe-hf" && mkfifo "$work/pipe-hf/config.json"
  cat >"$work/pipe-weights.toml" <<'TOML'
[model]
hidden_size = 64
num_layers = 1
num_heads = 4
num_kv_heads = 2
intermediate_size = 128
vocab_size = 256
max_seq_len = 64

[weights]
format = "safetensors"
path = "pipe.safetensors"

[[layers]]
range = "0"
TOML
  for args in "validate $work/pipe.toml" "info $work/pipe.toml" "train $work/pipe.toml" \
    "info $work/pipe.gguf" "info $work/pipe-hf" "generate $work/pipe-weights.toml --tokens 1"; do
    # shellcheck disable=SC2086
    if timeout 20 "$TESSERA" $args >"$work/out" 2>"$work/err"; then fail "'$args' succeeded"; fi
    [ $? -ne 124 ] || fail "'$args' hung on a FIFO"
    expect_in "a FIFO (named pipe), not a regular file" "$work/err"
  done
  # A truncated library on the plugin path is skipped with a warning; the others still serve.
  mkdir "$work/broken-plugins"
  head -c 20000 "$PLUGIN_DIR/libtessera-ffn-cpu.so" >"$work/broken-plugins/libtessera-cut.so"
  timeout 20 "$TESSERA" plugins --plugin-path "$work/broken-plugins" >"$work/out" 2>"$work/err" ||
    fail "plugins failed because of one broken library"
  expect_in "tessera-ffn-cpu" "$work/out"
  expect_in "warning: skipped $work/broken-plugins/libtessera-cut.so" "$work/err"
  expect_in "it is truncated: segment" "$work/err"
  timeout 20 "$TESSERA" generate "$hetero" --tokens 1 -n 2 -q --plugin-path "$work/broken-plugins" \
    >"$work/out" || fail "generate failed because of one broken library"
  sed 's/^ffn = { kind = "linear" }/ffn = { kind = "nosuch" }/' "$hetero" >"$work/nosuch.toml"
  grep -q 'kind = "nosuch"' "$work/nosuch.toml" || fail "the nosuch manifest"
  check_error "skipped (it failed to load): cannot load plugin '$work/broken-plugins/libtessera-cut.so'" \
    generate "$work/nosuch.toml" --tokens 1 --plugin-path "$work/broken-plugins"
  # A model bigger than the machine is refused before anything is allocated (a 70B layer
  # shape, 4000 of them: about 12 TiB of f32).
  cat >"$work/huge.toml" <<'TOML'
[model]
hidden_size = 8192
num_layers = 4000
num_heads = 64
num_kv_heads = 8
intermediate_size = 28672
vocab_size = 128256
[weights]
format = "random"
[[layers]]
range = "0-3999"
TOML
  for args in "init-random --manifest $work/huge.toml -o $work/huge" \
    "generate $work/huge.toml --tokens 1"; do
    # shellcheck disable=SC2086
    if timeout 60 "$TESSERA" $args >"$work/out" 2>"$work/err"; then fail "'$args' succeeded"; fi
    expect_in "huge.toml: the random weights (3424718954496 parameters in f32, from [model]" \
      "$work/err"
    expect_in "needs 12.46 TiB; " "$work/err"
  done
  [ -e "$work/huge" ] && fail "init-random left an output behind"
  sed 's/^num_layers = 4000/num_layers = 1000000000/' "$work/huge.toml" >"$work/layers.toml"
  check_error "'num_layers' in [model] is 1000000000; expected at most 1048576" info "$work/layers.toml"
  # Sampling settings take the sampling decoder, unless greedy was asked for.
  check_error "--seed set how to sample, and --decoder greedy does not sample; use --decoder sampling" \
    generate "$hetero" --tokens 1 --seed 3 --decoder greedy
  "$TESSERA" generate "$hetero" --tokens 1,2 -n 6 --seed 3 --temperature 1.5 -q >"$work/s1" ||
    fail "generate --seed without --decoder failed"
  "$TESSERA" generate "$hetero" --tokens 1,2 -n 6 --seed 3 --temperature 1.5 -q >"$work/s2"
  cmp -s "$work/s1" "$work/s2" || fail "the same seed sampled different tokens"
  ;;
bench_reports_roofline)
  # Bigger than a last-level cache (256 MB of f32 weights), so that decode reads memory.
  cat >"$work/big.toml" <<'TOML'
[model]
hidden_size = 1024
num_layers = 3
num_heads = 8
num_kv_heads = 2
intermediate_size = 4096
vocab_size = 16384
max_seq_len = 64

[weights]
format = "random"

[[layers]]
range = "0-2"
TOML
  "$TESSERA" bench "$work/big.toml" --prompt-len 16 --gen 8 --repetitions 2 --probe-mib 64 --json \
    >"$work/f32.json" 2>"$work/err" || { cat "$work/err"; fail "bench exited non-zero"; }
  TESSERA_CPU_ISA=avx2 "$TESSERA" bench "$work/big.toml" --weight-dtype bf16 --prompt-len 16 \
    --gen 8 --repetitions 1 --probe-mib 64 --json >"$work/bf16.json" ||
    fail "bench --weight-dtype bf16 exited non-zero"
  "$TESSERA" bench "$work/big.toml" --kv-dtype f16 --prompt-len 16 --gen 8 --repetitions 1 \
    --probe-mib 64 --json >"$work/kv16.json" 2>"$work/err" ||
    { cat "$work/err"; fail "bench --kv-dtype f16 exited non-zero"; }
  python3 - "$work/f32.json" "$work/bf16.json" "$work/kv16.json" <<'PY' ||
import json, sys
f32, bf16, kv16 = (json.load(open(p)) for p in sys.argv[1:4])
# --kv-dtype f16 halves the cache's bytes and leaves the weights alone.
assert f32["kv_dtype"] == "f32" and kv16["kv_dtype"] == "f16", (f32["kv_dtype"], kv16["kv_dtype"])
assert abs(2 * kv16["kv_bytes_per_token"] - f32["kv_bytes_per_token"]) < 1e-6, kv16
assert kv16["weight_bytes_per_token"] == f32["weight_bytes_per_token"], kv16
def close(a, b, rel): return abs(a - b) <= rel * max(abs(a), abs(b))
for r in (f32, bf16):
    assert r["prefill_tok_s"] > 0 and r["decode_tok_s"] > 0 and r["bandwidth_bytes_per_s"] > 0, r
    assert len(r["decode_tok_s_runs"]) == r["repetitions"], r
    assert close(r["bytes_per_token"], r["weight_bytes_per_token"] + r["kv_bytes_per_token"], 1e-6), r
    share = r["decode_tok_s"] * r["bytes_per_token"] / r["bandwidth_bytes_per_s"]
    assert close(r["roofline_share"], share, 1e-3), (r["roofline_share"], share)
    assert 0 < r["roofline_share"] < 1.5, r["roofline_share"]
    assert r["bandwidth_probe_threads"] >= 1, r
    # One share per repetition, each against the probe next to it, none above the
    # best probe's bandwidth.
    runs = r["roofline_share_runs"]
    assert len(runs) == r["repetitions"] == len(r["bandwidth_runs"]), r
    assert min(runs) <= r["roofline_share_median"] <= max(runs), r
    assert all(0 < b <= r["bandwidth_bytes_per_s"] for b in r["bandwidth_runs"]), r
    assert r["kernels"] in ("avx2", "avx512"), r
# TESSERA_CPU_ISA=avx2 keeps the kernels on AVX2 whatever the CPU has.
assert bf16["kernels"] == "avx2", bf16["kernels"]
assert f32["weight_dtype"] == "f32" and bf16["weight_dtype"] == "bf16"
# bf16 halves every matrix; the f32 norms are a tiny remainder.
ratio = bf16["weight_bytes_per_token"] / f32["weight_bytes_per_token"]
assert 0.5 < ratio < 0.501, ratio
PY
    fail "bench --json output is inconsistent"
  "$TESSERA" bench "$hetero" --prompt-len 8 --gen 4 --repetitions 1 --probe-mib 16 >"$work/text" 2>&1 ||
    { cat "$work/text"; fail "bench (text) exited non-zero"; }
  for field in "prefill" "decode" "bytes per decoded token" "read bandwidth" "roofline" \
    "each repetition against the probe next to it" "kernels"; do
    expect_in "$field" "$work/text"
  done
  ;;
generate_prompt_gguf)
  # The tiny synthetic GGUF models (random weights): llama has a tokenizer and a ChatML
  # template, deci has neither. The output text means nothing; the plumbing is the point.
  cp "$SOURCE_DIR/tests/data/gguf/tiny_llama.gguf-fixture" "$work/llama.gguf"
  cp "$SOURCE_DIR/tests/data/gguf/tiny_deci.gguf-fixture" "$work/deci.gguf"
  "$TESSERA" generate "$work/llama.gguf" --prompt "hello world" -n 6 >"$work/out" 2>"$work/err" ||
    { cat "$work/err"; fail "generate --prompt exited non-zero"; }
  expect_in "tok/s" "$work/err"
  "$TESSERA" generate "$work/llama.gguf" --prompt "hello world" -n 6 -q >"$work/out2" || fail "second run"
  cmp -s "$work/out" "$work/out2" || fail "greedy text differs between runs"
  # The template wraps the prompt (system message, user turn, generation prompt): more tokens
  # than --raw, and --system replaces the template's default system message.
  templated=$(grep -o 'prompt [0-9]* tokens' "$work/err" | grep -o '[0-9]*')
  "$TESSERA" generate "$work/llama.gguf" --prompt "hello world" --raw -n 2 2>"$work/err_raw" >/dev/null ||
    fail "generate --raw exited non-zero"
  raw=$(grep -o 'prompt [0-9]* tokens' "$work/err_raw" | grep -o '[0-9]*')
  [ "$templated" -gt $((raw + 8)) ] || fail "template gave $templated tokens, raw $raw"
  "$TESSERA" generate "$work/llama.gguf" --prompt "hello world" --system "x" -n 2 2>"$work/err_sys" >/dev/null ||
    fail "generate --system exited non-zero"
  with_system=$(grep -o 'prompt [0-9]* tokens' "$work/err_sys" | grep -o '[0-9]*')
  [ "$with_system" -lt "$templated" ] || fail "--system x gave $with_system tokens, default $templated"
  # convert writes the GGUF tokenizer as tokenizer.json (+ tokenizer_config.json with the
  # template): the Hugging Face folder generates the same text from the same prompt.
  "$TESSERA" convert "$work/llama.gguf" "$work/llama-hf" --to hf >/dev/null 2>"$work/err_conv" ||
    { cat "$work/err_conv"; fail "convert gguf --to hf"; }
  [ -f "$work/llama-hf/tokenizer.json" ] || fail "convert wrote no tokenizer.json"
  grep -q "chat_template" "$work/llama-hf/tokenizer_config.json" || fail "no chat template written"
  grep -q "not written" "$work/err_conv" && fail "convert says the tokenizer was not written"
  "$TESSERA" generate "$work/llama-hf" --prompt "hello world" -n 6 -q >"$work/out_hf" ||
    fail "generate on the converted folder"
  cmp -s "$work/out2" "$work/out_hf" || fail "the converted folder generates other text"
  # Token ids still work, on both models.
  "$TESSERA" generate "$work/llama.gguf" --tokens 1,5,9 -n 4 -q >"$work/ids" || fail "--tokens on llama"
  grep -Eq '^([0-9]+ )+$' "$work/ids" || { cat "$work/ids"; fail "expected token ids"; }
  "$TESSERA" generate "$work/deci.gguf" --tokens 1,5,9 -n 4 -q >"$work/ids" || fail "--tokens on deci"
  grep -Eq '^([0-9]+ )+$' "$work/ids" || { cat "$work/ids"; fail "expected token ids"; }
  ;;
chat_pipe_gguf)
  cp "$SOURCE_DIR/tests/data/gguf/tiny_llama.gguf-fixture" "$work/llama.gguf"
  printf 'hello\n' | "$TESSERA" chat "$work/llama.gguf" -n 5 -q >"$work/one" || fail "chat exited non-zero"
  [ -s "$work/one" ] || fail "chat printed no reply"
  # Replies are greedy: after /reset the same message gets the same reply; after /exit
  # nothing more is read.
  printf 'hello\n\n/reset\nhello\n/exit\nignored\n' |
    "$TESSERA" chat "$work/llama.gguf" -n 5 >"$work/two" 2>"$work/err" || { cat "$work/err"; fail "chat with /reset"; }
  cat "$work/one" "$work/one" | cmp -s - "$work/two" || { cat "$work/two"; fail "the reply after /reset differs"; }
  expect_in "(new conversation)" "$work/err"
  [ "$(grep -c '^\[conversation' "$work/err")" -eq 2 ] || { cat "$work/err"; fail "expected two turns"; }
  # The second turn of a conversation reuses the first one's cache.
  printf 'hello\nworld\n' | "$TESSERA" chat "$work/llama.gguf" -n 5 >/dev/null 2>"$work/err" || fail "two turns"
  grep -Eq '^\[conversation [0-9]+ tokens, [1-9][0-9]* reused' "$work/err" ||
    { cat "$work/err"; fail "the second turn reused nothing"; }
  printf '/nope\n' | "$TESSERA" chat "$work/llama.gguf" 2>"$work/err" >/dev/null || fail "unknown command"
  expect_in "unknown command '/nope'" "$work/err"
  ;;
gguf_prompt_errors)
  cp "$SOURCE_DIR/tests/data/gguf/tiny_llama.gguf-fixture" "$work/llama.gguf"
  cp "$SOURCE_DIR/tests/data/gguf/tiny_deci.gguf-fixture" "$work/deci.gguf"
  check_error() {  # expected-substring, then the command's arguments
    local want=$1; shift
    if "$TESSERA" "$@" >"$work/out" 2>"$work/err" </dev/null; then fail "'$*' succeeded"; fi
    [ "$(wc -l <"$work/err")" -eq 1 ] || { cat "$work/err"; fail "'$*': error is not one line"; }
    expect_in "tessera: error:" "$work/err"
    expect_in "$want" "$work/err"
  }
  check_error "--prompt is empty" generate "$work/llama.gguf" --prompt ""
  long=$(printf 'x%.0s' $(seq 600))
  check_error "has a context of 256 tokens (max_seq_len)" generate "$work/llama.gguf" --prompt "$long"
  check_error "tokenizer.ggml.model' is missing" generate "$work/deci.gguf" --prompt hi
  check_error "pass token ids with --tokens" generate "$work/deci.gguf" --prompt hi
  check_error "chat needs one" chat "$work/deci.gguf"
  check_error "has no tokenizer" chat "$hetero"
  check_error "--raw excludes --system" generate "$work/llama.gguf" --prompt hi --raw --system x
  check_error "--system requires --prompt" generate "$work/llama.gguf" --tokens 1 --system x
  check_error "give a prompt" generate "$work/llama.gguf"
  ;;
default_model_paris | default_model_chat)
  model=${TESSERA_CACHE:-$HOME/.cache/tessera}/models/SmolLM2-135M-Instruct.Q4_1.gguf
  if [ ! -f "$model" ]; then
    # CI (scripts/test.sh) requires the model: a missing file fails there instead of skipping.
    [ -n "${TESSERA_REQUIRE_DEFAULT_MODEL:-}" ] && [ "$TESSERA_REQUIRE_DEFAULT_MODEL" != 0 ] &&
      fail "$model is absent and TESSERA_REQUIRE_DEFAULT_MODEL is set (scripts/fetch-default-model.sh)"
    echo "skipped: $model is absent (scripts/fetch-default-model.sh)"; exit 77
  fi
  if [ "$1" = default_model_paris ]; then
    "$TESSERA" generate "$model" --prompt "What is the capital of France?" >"$work/out" 2>"$work/err" ||
      { cat "$work/err"; fail "generate exited non-zero"; }
    cat "$work/out" "$work/err"
    expect_in "Paris" "$work/out"
    expect_in "(end token)" "$work/err"
  else
    # Turn 2 with the cache of turn 1 must answer exactly as one prompt holding the whole
    # conversation does (greedy decoding, the same tokens in front of it).
    printf 'My name is Alice.\n' | "$TESSERA" chat "$model" -n 24 -q >"$work/one" || fail "chat, one turn"
    printf 'My name is Alice.\nWhat is my name?\n' | "$TESSERA" chat "$model" -n 24 >"$work/two" 2>"$work/err" ||
      { cat "$work/err"; fail "chat, two turns"; }
    cat "$work/two" "$work/err"
    grep -Eq '^\[conversation [0-9]+ tokens, [1-9][0-9]* reused' "$work/err" || fail "turn 2 reused no cache"
    python3 - "$work/one" "$work/two" "$work/prompt" "$work/reply2" <<'PY' || fail "turn 1 of the two-turn chat differs"
import sys
one, two = (open(p, encoding="utf-8").read() for p in sys.argv[1:3])
assert two.startswith(one), (one, two)
reply1 = one[:-1]  # the chat ends each reply with a newline
system = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
turns = [("system", system), ("user", "My name is Alice."), ("assistant", reply1), ("user", "What is my name?")]
prompt = "".join(f"<|im_start|>{role}\n{text}<|im_end|>\n" for role, text in turns) + "<|im_start|>assistant\n"
open(sys.argv[3], "w", encoding="utf-8").write(prompt)
open(sys.argv[4], "w", encoding="utf-8").write(two[len(one):])
PY
    prompt=$(cat "$work/prompt"; echo x)
    "$TESSERA" generate "$model" --raw --prompt "${prompt%x}" -n 24 -q >"$work/single" || fail "generate --raw"
    cmp -s "$work/single" "$work/reply2" ||
      { echo "single prompt:"; cat "$work/single"; echo "chat turn 2:"; cat "$work/reply2"; fail "turn 2 differs"; }
  fi
  ;;
hf_convert_round_trip)
  # A heterogeneous model DeciLM can express (FFN widths are multiples of 256).
  cat >"$work/hetero.toml" <<'TOML'
[model]
name = "cli-hetero"
hidden_size = 64
num_layers = 5
num_heads = 4
num_kv_heads = 2
intermediate_size = 256
vocab_size = 300
rope_theta = 10000.0
rope_scaling = { type = "llama3", factor = 8.0, low_freq_factor = 1.0, high_freq_factor = 4.0, original_max_position_embeddings = 32 }
max_seq_len = 64
eos_token_id = 2
[weights]
format = "random"
[[layers]]
range = "0-1"
[[layers]]
range = "2"
attention = { kind = "linear" }
ffn = { kind = "swiglu", intermediate_size = 512 }
[[layers]]
range = "3"
attention = { kind = "noop" }
ffn = { kind = "linear" }
[[layers]]
range = "4"
attention = { kind = "gqa", kv_heads = 1 }
ffn = { kind = "noop" }
TOML
  "$TESSERA" init-random --manifest "$work/hetero.toml" --seed 5 -o "$work/orig" >/dev/null || fail "init-random"
  "$TESSERA" convert "$work/orig" "$work/hf" --to hf >"$work/out" 2>&1 || { cat "$work/out"; fail "convert --to hf"; }
  expect_in "DeciLMForCausalLM" "$work/out"
  for f in config.json model.safetensors; do [ -f "$work/hf/$f" ] || fail "$f not written"; done
  expect_in '"model_type": "nemotron-nas"' "$work/hf/config.json"
  expect_in '"ffn_mult": 12.0' "$work/hf/config.json"
  ls -d "$work"/hf.* 2>/dev/null && fail "a staging folder was left behind"

  "$TESSERA" info "$work/hf" >"$work/info" 2>&1 || { cat "$work/info"; fail "info"; }
  expect_in "hf (DeciLMForCausalLM)" "$work/info"
  expect_in "0-1     attention gqa kv_heads=2 | ffn swiglu intermediate_size=256" "$work/info"
  expect_in "attention noop | ffn linear" "$work/info"
  expect_in "llama3 scaling" "$work/info"
  expect_in "kv cache" "$work/info"
  # 2 layers x kv 2 + 1 layer x kv 1, head_dim 16, K and V in f32: (2*2 + 1) * 16 * 2 * 4 = 640.
  expect_in "640 bytes per token" "$work/info"
  expect_in "40960 bytes at max_seq_len 64" "$work/info"
  # validate takes the Hugging Face folder as generate does, weights and all.
  "$TESSERA" validate "$work/hf" >"$work/validate" 2>&1 || { cat "$work/validate"; fail "validate hf"; }
  expect_in "layer 4 attention gqa" "$work/validate"
  expect_in "ok" "$work/validate"
  "$TESSERA" info "$work/hf" --json >"$work/info.json" || fail "info --json"
  expect_in '"architecture": "DeciLMForCausalLM"' "$work/info.json"
  expect_in '"bytes_per_token": 640' "$work/info.json"
  # The random manifest is described without generating its weights.
  "$TESSERA" info "$work/hetero.toml" >"$work/info-random" || fail "info on a random manifest"
  expect_in "not generated" "$work/info-random"

  "$TESSERA" convert "$work/hf" "$work/back" --to manifest >/dev/null || fail "convert --to manifest"
  [ -f "$work/back/manifest.toml" ] && [ -f "$work/back/model.safetensors" ] || fail "manifest files missing"
  expect_in 'format = "safetensors"' "$work/back/manifest.toml"
  "$TESSERA" generate "$work/orig" --tokens 5,6,7,8 -n 10 -q >"$work/g-orig" || fail "generate orig"
  "$TESSERA" generate "$work/back" --tokens 5,6,7,8 -n 10 -q >"$work/g-back" || fail "generate back"
  "$TESSERA" generate "$work/hf" --tokens 5,6,7,8 -n 10 -q >"$work/g-hf" || fail "generate hf"
  [ -s "$work/g-orig" ] || fail "no tokens generated"
  cmp -s "$work/g-orig" "$work/g-back" || fail "tokens differ after hf -> manifest: $(cat "$work/g-orig") vs $(cat "$work/g-back")"
  cmp -s "$work/g-orig" "$work/g-hf" || fail "tokens differ from the hf folder"

  # bf16 and sharded output.
  "$TESSERA" convert "$work/orig" "$work/hf16" --to hf --dtype bf16 --max-shard-size 100KB >/dev/null || fail "bf16 sharded"
  [ -f "$work/hf16/model.safetensors.index.json" ] || fail "no shard index"
  expect_in '"torch_dtype": "bfloat16"' "$work/hf16/config.json"
  "$TESSERA" info "$work/hf16" --json >"$work/info16.json" || fail "info bf16"
  # info counts bytes in the dtype the model runs in: a Hugging Face folder's manifest keeps
  # weight_dtype f32, so the bf16 tensors count as f32.
  python3 -c 'import json, sys; d = json.load(open(sys.argv[1]))["bytes_by_dtype"]; assert list(d) == ["f32"], d' \
    "$work/info16.json" || fail "info bf16: bytes not counted as f32"
  # --force replaces an existing conversion.
  "$TESSERA" convert "$work/orig" "$work/hf" --to hf --dtype f16 --force >/dev/null || fail "convert --force"
  expect_in '"torch_dtype": "float16"' "$work/hf/config.json"
  ;;
hf_convert_errors)
  check_error() {  # expected-substring, then the command's arguments
    local want=$1; shift
    if "$TESSERA" "$@" >"$work/out" 2>"$work/err"; then fail "'$*' succeeded"; fi
    [ "$(wc -l <"$work/err")" -eq 1 ] || { cat "$work/err"; fail "'$*': error is not one line"; }
    expect_in "tessera: error:" "$work/err"
    expect_in "$want" "$work/err"
  }
  "$TESSERA" init-random --manifest "$hetero" --seed 1 -o "$work/m" >/dev/null || fail "init-random"
  # tiny-hetero's FFN widths (128 at hidden 64) have no DeciLM ffn_mult; the first layer is named.
  check_error "layer 0: swiglu intermediate_size 128 cannot be written as a DeciLM ffn_mult" convert "$work/m" "$work/x" --to hf
  [ -e "$work/x" ] && fail "a failed conversion left $work/x"
  check_error "expected hf or manifest" convert "$work/m" "$work/x" --to onnx
  check_error "expected bf16, f16 or f32" convert "$work/m" "$work/x" --to manifest --dtype f8
  check_error "is not a positive number of bytes" convert "$work/m" "$work/x" --to hf --max-shard-size 5XB
  mkdir -p "$work/full" && touch "$work/full/keep"
  check_error "exists and is not empty" convert "$work/m" "$work/full" --to manifest
  [ -f "$work/full/keep" ] || fail "the existing folder was touched"
  check_error "does not exist" info "$work/missing"
  mkdir -p "$work/bad-hf"
  printf '{"architectures": ["MistralForCausalLM"], "hidden_size": 8}' >"$work/bad-hf/config.json"
  check_error "MistralForCausalLM" info "$work/bad-hf"
  printf '{"architectures": ["LlamaForCausalLM"], "hidden_size": 64, "num_hidden_layers": 1, "num_attention_heads": 4, "vocab_size": 10, "intermediate_size": 32, "hidden_act": "gelu"}' >"$work/bad-hf/config.json"
  check_error "'hidden_act'" convert "$work/bad-hf" "$work/y" --to manifest
  printf '{"architectures": ["LlamaForCausalLM"], "hidden_size": 64, "num_hidden_layers": 1, "num_attention_heads": 4, "vocab_size": 10, "intermediate_size": 32}' >"$work/bad-hf/config.json"
  check_error "neither model.safetensors nor model.safetensors.index.json" info "$work/bad-hf"
  ;;
puzzle_library)
  # tessera puzzle library on the tiny GGUF model and generated text: the variants of every
  # layer, library.json, a library folder that runs as the parent, the skip when built, and
  # located errors.
  export TESSERA_CACHE="$work/cache"
  cp "$SOURCE_DIR/tests/data/gguf/tiny_llama.gguf-fixture" "$work/llama.gguf"
  mkdir -p "$work/corpus"
  for i in $(seq 1 12); do
    for j in $(seq 1 12); do
      echo "Document $i, line $j: the quick brown fox jumps over the lazy dog $((i * j)) times."
    done >"$work/corpus/doc$i.txt"
  done
  cat >"$work/puzzle.toml" <<TOML
[puzzle]
parent = "llama.gguf"
output = "p"

[data]
path = "corpus"
seq_len = 64
batch_size = 4
held_out_documents = 2

[library]
ffn_fractions = [1, 0.5, 0.25]
ffn_width_multiple = 8
calibration_tokens = 1024
TOML
  "$TESSERA" puzzle library "$work/puzzle.toml" >"$work/out" 2>"$work/err" ||
    { cat "$work/out" "$work/err"; fail "puzzle library exited non-zero"; }
  cat "$work/out"
  expect_in "calibrate  1,024 tokens (4 batches of up to 4 x 64) from the start of the train part" "$work/out"
  expect_in "calibrating 1,024/1,024 tokens" "$work/out"
  expect_in "least-squares" "$work/out"
  expect_in "mean-pooled" "$work/out"
  expect_in "library    $work/p/library (" "$work/out"
  for f in manifest.toml model.safetensors library.json tokenizer.json; do
    [ -s "$work/p/library/$f" ] || fail "the library has no $f"
  done
  grep -q '"format": "tessera.puzzle.library"' "$work/p/library/library.json" || fail "library.json format"
  grep -q '"init": "pruned"' "$work/p/library/library.json" || fail "no pruned variant in library.json"
  grep -q 'variants.ffn.linear.linear_mlp.weight' <("$TESSERA" info "$work/p/library" --tensors 2>&1) ||
    grep -q 'variants.ffn.linear.linear_mlp.weight' "$work/p/library/model.safetensors" ||
    fail "the library holds no linear FFN variant"
  # The library folder runs as the parent: the same greedy tokens.
  "$TESSERA" generate "$work/llama.gguf" --tokens 1,2,3 -n 6 >"$work/gen-parent" 2>/dev/null || fail "generate on the parent"
  "$TESSERA" generate "$work/p/library" --tokens 1,2,3 -n 6 >"$work/gen-library" 2>"$work/gen-err" ||
    { cat "$work/gen-err"; fail "generate on the library folder"; }
  [ -s "$work/gen-parent" ] || fail "the parent generated nothing"
  diff "$work/gen-parent" "$work/gen-library" || fail "the library folder does not generate as the parent"
  # Built already: skipped; --force builds again.
  "$TESSERA" puzzle library "$work/puzzle.toml" >"$work/out2" 2>&1 || fail "second run"
  expect_in "is already built (library.json); --force builds it again" "$work/out2"
  "$TESSERA" puzzle library "$work/puzzle.toml" --force >"$work/out3" 2>&1 || { cat "$work/out3"; fail "--force"; }
  expect_in "calibrating 1,024/1,024 tokens" "$work/out3"
  check_error() {  # expected-substring, config file
    local want=$1; shift
    if "$TESSERA" puzzle library "$@" >"$work/eout" 2>"$work/err" </dev/null; then fail "'puzzle library $*' succeeded"; fi
    [ "$(wc -l <"$work/err")" -eq 1 ] || { cat "$work/err"; fail "'puzzle library $*': error is not one line"; }
    expect_in "tessera: error:" "$work/err"
    expect_in "$want" "$work/err"
  }
  check_error "$work/absent.toml:1:1: puzzle config does not exist" "$work/absent.toml"
  sed 's/^ffn_width_multiple = 8/ffn_width_multiple = 8\nkv_heads = [0]/' "$work/puzzle.toml" >"$work/bad.toml"
  check_error "$work/bad.toml:14:13: 'kv_heads' in [library] holds 0; expected KV-head counts >= 1" "$work/bad.toml"
  sed 's/^parent = "llama.gguf"/parent = "absent.gguf"/; s/^output = "p"/output = "q"/' "$work/puzzle.toml" >"$work/bad2.toml"
  check_error "$work/bad2.toml: [puzzle] parent: cannot open $work/absent.gguf" "$work/bad2.toml"
  sed 's/^output = "p"/output = "q"/; s/^kv_heads.*//; s/^ffn_width_multiple = 8/ffn_width_multiple = 8\nkv_heads = [3]/' "$work/puzzle.toml" >"$work/bad3.toml"
  check_error "kv_heads 3 does not divide layer 0's" "$work/bad3.toml"
  [ -e "$work/q/library/library.json" ] && fail "a refused library was written"
  # The later stages refuse to run before the ones they read.
  sed 's/^output = "p"/output = "fresh"/' "$work/puzzle.toml" >"$work/fresh.toml"
  for stage in score cost solve realize; do
    if "$TESSERA" puzzle $stage "$work/fresh.toml" >"$work/eout" 2>"$work/err"; then fail "$stage ran without a library"; fi
    expect_in "no block library in $work/fresh/library; build it first with \`tessera puzzle library" "$work/err"
  done
  # score, cost, solve, realize on the library built above.
  cat >>"$work/puzzle.toml" <<TOML

[score]
tokens = 512

[cost]
prefill_len = 32
decode_len = 32
batch_sizes = [1, 2]
repeats = 3

[solve]
provider = "exact"
compare = ["greedy"]
decode_speedup = 1.0
frontier = [1.5, 2]
solutions = 2
TOML
  # (Timings of a model this small are noise: a 1.0x target always admits the parent, whose parts
  # add up to its whole, so the main search finds a child whatever the machine does.)
  if "$TESSERA" puzzle solve "$work/puzzle.toml" >"$work/eout" 2>"$work/err"; then fail "solve ran without scores"; fi
  expect_in "no scores.json in $work/p; run \`tessera puzzle score" "$work/err"
  "$TESSERA" puzzle score "$work/puzzle.toml" >"$work/out4" 2>&1 || { cat "$work/out4"; fail "puzzle score"; }
  cat "$work/out4"
  expect_in "score      14 variants on 512 held-out tokens (2 batches of up to 4 x 64), one parent pass per batch" "$work/out4"
  expect_in "scoring batch 2/2: 28/28 variants" "$work/out4"
  grep -q '"complete": true' "$work/p/scores.json" || fail "scores.json is not complete"
  "$TESSERA" puzzle score "$work/puzzle.toml" >"$work/out5" 2>&1 || fail "second score"
  expect_in "are complete (512 tokens); --force scores again" "$work/out5"
  # A stopped run resumes after its last batch: mark the file as one batch in.
  python3 - "$work/p/scores.json" <<'PY'
import json, sys
p = sys.argv[1]
d = json.load(open(p))
d["complete"] = False
d["done"]["batches"] = 1
d["done"]["tokens"] = 256
for layer in d["layers"]:
    for part in ("attention", "ffn"):
        for v in layer[part]:
            v["kl_sum"] = v["kl_sum"] / 2
            v["agreed"] = v["agreed"] // 2
json.dump(d, open(p, "w"))
PY
  "$TESSERA" puzzle score "$work/puzzle.toml" >"$work/out6" 2>&1 || { cat "$work/out6"; fail "resumed score"; }
  expect_in "resume     after batch 1 of 2 (256 tokens scored)" "$work/out6"
  expect_in "scoring batch 2/2: 28/28 variants" "$work/out6"
  grep -q '"complete": true' "$work/p/scores.json" || fail "the resumed scores are not complete"
  "$TESSERA" puzzle cost "$work/puzzle.toml" >"$work/out7" 2>&1 || { cat "$work/out7"; fail "puzzle cost"; }
  cat "$work/out7"
  expect_in "scenario   prefill 32 tokens, decode 32 tokens (steps timed at context 48), batch sizes 1, 2; bf16 weights" "$work/out7"
  expect_in "measured   9 variant groups in the whole model" "$work/out7"
  expect_in "the parent: prefill" "$work/out7"
  expect_in "beyond its blocks (embedding, norms, head)" "$work/out7"
  [ -s "$work/p/costs.json" ] || fail "no costs.json"
  "$TESSERA" puzzle solve "$work/puzzle.toml" >"$work/out8" 2>&1 || { cat "$work/out8"; fail "puzzle solve"; }
  cat "$work/out8"
  expect_in "budgets    at batch 1: decode 1.00x the parent" "$work/out8"
  grep -qE '^  main +exact +found' "$work/out8" || fail "no main solution"
  grep -qE '^  greedy +greedy +found' "$work/out8" || fail "no greedy solution"
  grep -qE '^  frontier-2 +exact ' "$work/out8" || fail "no frontier-2 solve"
  grep -qE '^  diverse-1 ' "$work/out8" || fail "no diverse solution"
  for f in main.problem.json main.solution.json greedy.problem.json; do
    [ -s "$work/p/solve/$f" ] || fail "solve wrote no $f"
  done
  "$TESSERA" puzzle realize "$work/puzzle.toml" >"$work/out9" 2>&1 || { cat "$work/out9"; fail "puzzle realize"; }
  cat "$work/out9"
  expect_in "child      $work/p/child (0" "$work/out9"
  "$TESSERA" generate "$work/p/child" --tokens 1,2,3 -n 4 >"$work/gen-child" 2>"$work/gen-err" ||
    { cat "$work/gen-err"; fail "generate on the child"; }
  [ -s "$work/gen-child" ] || fail "the child generated nothing"
  grep -q "variants" "$work/p/child/manifest.toml" && fail "the child's manifest names library variants"
  "$TESSERA" puzzle evaluate "$work/puzzle.toml" >"$work/out10" 2>&1 || { cat "$work/out10"; fail "puzzle evaluate"; }
  cat "$work/out10"
  expect_in "child      $work/p/child (main)" "$work/out10"
  expect_in "KL(parent || child) " "$work/out10"
  grep -qE '^  main, batch 2: prefill parent .* decode parent .*x; noise' "$work/out10" || fail "no speed at batch 2"
  grep -q '"format": "tessera.puzzle.evaluation"' "$work/p/evaluation.json" || fail "no evaluation.json"
  expect_in "  main predicted by solve at batch 1: summed KL" "$work/out10"
  # distill: straight, and stopped after a checkpoint then resumed: the same library, bit for bit.
  for out in d1 d2; do
    sed "s/^output = \"p\"/output = \"$out\"/" "$work/puzzle.toml" >"$work/$out.toml"
    printf '\n[distill]\ntokens = 2560\nlr = 0.005\ncheckpoint_every = 3\neval_every = 5\n' >>"$work/$out.toml"
    mkdir -p "$work/$out" && cp -r "$work/p/library" "$work/$out/library"
  done
  "$TESSERA" puzzle distill "$work/d1.toml" >"$work/out13" 2>&1 || { cat "$work/out13"; fail "puzzle distill"; }
  cat "$work/out13"
  expect_in "distil     5 groups of variants" "$work/out13"
  expect_in "step 10/10" "$work/out13"
  expect_in "held-out normalised MSE (mean over layers): before -> after" "$work/out13"
  for f in library-distilled/library.json library-distilled/distill.json library-distilled/model.safetensors distill/log.jsonl distill/report.html; do
    [ -s "$work/d1/$f" ] || fail "distill wrote no $f"
  done
  # The distilled FFNs fit the parent better than the pruned ones did.
  python3 - "$work/d1/library-distilled/distill.json" <<'PY' || fail "distillation did not lower the pruned FFNs' loss"
import json, sys
d = json.load(open(sys.argv[1]))
pairs = [(v["before"], v["after"]) for l in d["layers"] for v in l["ffn"] if v["name"].startswith("swiglu")]
assert pairs and all(a < b for b, a in pairs), pairs
PY
  if TESSERA_TEST_STOP_AFTER_STEP=6 "$TESSERA" puzzle distill "$work/d2.toml" >"$work/out14" 2>&1; then fail "the stop seam did not stop"; fi
  expect_in "stopped after step 6" "$work/out14"
  [ -e "$work/d2/library-distilled" ] && fail "a stopped distillation wrote its library"
  "$TESSERA" puzzle distill "$work/d2.toml" >"$work/out15" 2>&1 || { cat "$work/out15"; fail "resumed distill"; }
  expect_in "start      resumed from $work/d2/distill/checkpoints/step-6 after step 6" "$work/out15"
  cmp "$work/d1/library-distilled/model.safetensors" "$work/d2/library-distilled/model.safetensors" ||
    fail "stopped and resumed, the distilled library differs from the straight run's"
  # The later stages read the distilled library.
  "$TESSERA" puzzle score "$work/d1.toml" >"$work/out16" 2>&1 || { cat "$work/out16"; fail "score on the distilled library"; }
  expect_in "library    $work/d1/library-distilled (2 layers)" "$work/out16"
  # global-distill, and evaluate's other children and MMLU, on a child that a memory budget makes
  # smaller than the parent (bytes, unlike this model's timings, are exact): stopped after a
  # checkpoint and resumed, GKD gives the straight run's child bit for bit, and that child is
  # closer to the parent than the realised one.
  {
    echo '{"question": "Which colour is the fox?", "answer_a": "brown", "answer_b": "blue", "answer_c": "green", "answer_d": "red", "correct_answer": "A", "topic": "foxes"}'
    echo '{"question": "question", "answer_a": "answer_a", "answer_b": "answer_b", "answer_c": "answer_c", "answer_d": "answer_d", "correct_answer": "answer", "topic": "foxes"}'
    echo '{"question": "What does the fox jump over?", "answer_a": "a cat", "answer_b": "the lazy dog", "answer_c": "a wall", "answer_d": "the moon", "correct_answer": "B", "topic": "foxes"}'
    echo '{"question": "How many documents?", "answer_a": "1", "answer_b": "2", "answer_c": "12", "answer_d": "40", "correct_answer": "C", "topic": "counting"}'
  } >"$work/mmlu.jsonl"
  for out in g1 g2; do
    mkdir -p "$work/$out" && cp -r "$work/p/library" "$work/p/scores.json" "$work/p/costs.json" "$work/$out/"
    sed "s/^output = \"p\"/output = \"$out\"/; s/^decode_speedup = 1.0/decode_speedup = 0\nmemory_fraction = 0.7/" "$work/puzzle.toml" >"$work/$out.toml"
    printf '\n[global_distill]\ntokens = 5120\nlr = 0.002\ncheckpoint_every = 4\neval_every = 10\n\n[evaluate]\nchildren = ["greedy"]\nmmlu = "mmlu.jsonl"\nskip_tokens = 512\n[evaluate.folders]\nfrom-p = "p/child"\n' >>"$work/$out.toml"
  done
  if "$TESSERA" puzzle global-distill "$work/g1.toml" >"$work/eout" 2>"$work/err"; then fail "global-distill ran without a child"; fi
  expect_in "no child in $work/g1/child; run \`tessera puzzle realize" "$work/err"
  for out in g1 g2; do
    "$TESSERA" puzzle solve "$work/$out.toml" >"$work/out17" 2>&1 || { cat "$work/out17"; fail "solve under a memory budget"; }
    "$TESSERA" puzzle realize "$work/$out.toml" >"$work/out17" 2>&1 || { cat "$work/out17"; fail "realize under a memory budget"; }
  done
  "$TESSERA" puzzle global-distill "$work/g1.toml" >"$work/out18" 2>&1 || { cat "$work/out18"; fail "puzzle global-distill"; }
  cat "$work/out18"
  expect_in "gkd        20 steps of 256 tokens (5,120 in all), kl 1, cosine 1, lr 0.002" "$work/out18"
  expect_in "step 20/20" "$work/out18"
  for f in child-gkd/manifest.toml child-gkd/puzzle.json global-distill/log.jsonl global-distill/report.html; do
    [ -s "$work/g1/$f" ] || fail "global-distill wrote no $f"
  done
  "$TESSERA" puzzle global-distill "$work/g1.toml" >"$work/out19" 2>&1 || fail "second global-distill"
  expect_in "is trained; --force trains it again" "$work/out19"
  if TESSERA_TEST_STOP_AFTER_STEP=8 "$TESSERA" puzzle global-distill "$work/g2.toml" >"$work/out20" 2>&1; then fail "the stop seam did not stop GKD"; fi
  expect_in "stopped after step 8" "$work/out20"
  [ -e "$work/g2/child-gkd" ] && fail "a stopped global distillation wrote its child"
  "$TESSERA" puzzle global-distill "$work/g2.toml" >"$work/out21" 2>&1 || { cat "$work/out21"; fail "resumed global-distill"; }
  expect_in "start      resumed from $work/g2/global-distill/checkpoints/step-8 after step 8" "$work/out21"
  cmp "$work/g1/child-gkd/model.safetensors" "$work/g2/child-gkd/model.safetensors" ||
    fail "stopped and resumed, the GKD child differs from the straight run's"
  "$TESSERA" puzzle evaluate "$work/g1.toml" >"$work/out22" 2>&1 || { cat "$work/out22"; fail "evaluate with children"; }
  cat "$work/out22"
  expect_in "child      $work/g1/child-greedy (" "$work/out22"
  expect_in "mmlu       $work/mmlu.jsonl: 3 of 3 questions (the first 10 of each subject)" "$work/out22"
  expect_in "  parent  MMLU " "$work/out22"
  expect_in "child      $work/p/child (from-p)" "$work/out22"
  expect_in "held-out tokens after the first 512 ([evaluate] skip_tokens)" "$work/out22"
  grep -qE '^  main\+gkd, batch 1: prefill parent' "$work/out22" || fail "no speed of the GKD child"
  python3 - "$work/g1/evaluation.json" <<'PY' || fail "unexpected evaluation.json"
import json, sys
e = json.load(open(sys.argv[1]))
assert e["format"] == "tessera.puzzle.evaluation" and e["version"] == 2, e
labels = [c["label"] for c in e["children"]]
assert labels == ["main", "greedy", "main+gkd", "from-p"], labels
assert "predicted" not in e["children"][3] and "predicted" in e["children"][0], e["children"]
assert e["parent"]["mmlu"]["questions"] == 3, e["parent"]
kl = {c["label"]: c["quality"]["kl"] for c in e["children"]}
assert kl["main"] > 0 and kl["main+gkd"] < kl["main"], kl
for c in e["children"]:
    assert c["mmlu"]["questions"] == 3 and [s["batch"] for s in c["speed"]] == [1, 2], c
PY
  # run: every stage is done, so each says so.
  "$TESSERA" puzzle run "$work/puzzle.toml" >"$work/out11" 2>&1 || { cat "$work/out11"; fail "puzzle run"; }
  for stage in library score cost solve realize global-distill evaluate; do expect_in "<== $stage: " "$work/out11"; done
  expect_in "is already built (library.json)" "$work/out11"
  expect_in "evaluation $work/p/evaluation.json is done" "$work/out11"
  expect_in "the pipeline ran in" "$work/out11"
  # run from nothing: every artefact, the same library (the stages are deterministic) and scores.
  sed 's/^output = "p"/output = "r"/' "$work/puzzle.toml" >"$work/fromscratch.toml"
  "$TESSERA" puzzle run "$work/fromscratch.toml" >"$work/out12" 2>&1 || { cat "$work/out12"; fail "puzzle run from nothing"; }
  for f in library/library.json scores.json costs.json solutions.json child/manifest.toml evaluation.json; do
    [ -s "$work/r/$f" ] || fail "puzzle run wrote no $f"
  done
  cmp "$work/p/library/model.safetensors" "$work/r/library/model.safetensors" || fail "the library is not deterministic"
  "$TESSERA" puzzle score "$work/puzzle.toml" --force >/dev/null 2>&1 || fail "score --force"
  diff <(grep -v seconds "$work/p/scores.json") <(grep -v seconds "$work/r/scores.json") >/dev/null ||
    fail "the scores are not deterministic"
  if "$TESSERA" puzzle realize "$work/puzzle.toml" --solution nope >"$work/eout" 2>"$work/err"; then fail "realize of an unknown solution"; fi
  expect_in "has no solution 'nope'; it has main, greedy, frontier-1.5, frontier-2, diverse-1" "$work/err"
  # A solution that found no child cannot be realised (timings of a model this small are noise,
  # so the infeasible answer is written in).
  python3 - "$work/p/solutions.json" <<'PY'
import json, sys
p = sys.argv[1]
d = json.load(open(p))
for r in d["solutions"]:
    if r["label"] == "frontier-2":
        r["feasible"] = False
        r["reason"] = "decode_s: the least reachable total is 1, over the budget of 0.5"
        r["layers"] = []
json.dump(d, open(p, "w"))
PY
  if "$TESSERA" puzzle realize "$work/puzzle.toml" --solution frontier-2 --force >"$work/eout" 2>"$work/err"; then fail "realize of an infeasible solution"; fi
  expect_in "solution 'frontier-2' found no child (decode_s: the least reachable total is 1" "$work/err"
  ;;
train_dry_run | train_errors | train_runs | train_distill | train_medusa)
  # tessera train on the tiny GGUF model (a tokenizer, max_seq_len 256) and generated text;
  # the token cache goes to the test's own folder.
  export TESSERA_CACHE="$work/cache"
  cp "$SOURCE_DIR/tests/data/gguf/tiny_llama.gguf-fixture" "$work/llama.gguf"
  mkdir -p "$work/corpus/sub" "$work/corpus/.hidden"
  for i in $(seq 1 24); do
    for j in $(seq 1 12); do
      echo "Document $i, line $j: the quick brown fox jumps over the lazy dog $((i * j)) times."
    done >"$work/corpus/doc$i.txt"
  done
  echo "a note, not text to train on" >"$work/corpus/sub/notes.md"
  echo "hidden" >"$work/corpus/.hidden/skip.txt"
  config() {  # extra [data] lines, then the file
    cat >"$2" <<TOML
[run]
output = "run"
steps = 40
seed = 1

[model]
path = "llama.gguf"

[data]
path = "corpus"
include = ["*.txt"]
seq_len = 64
batch_size = 4
eval_every = 10
$1
TOML
  }
  config "held_out_documents = 3" "$work/train.toml"
  if [ "$1" = train_dry_run ]; then
    "$TESSERA" train "$work/train.toml" --dry-run >"$work/out" 2>"$work/err" ||
      { cat "$work/out" "$work/err"; fail "train --dry-run exited non-zero"; }
    cat "$work/out"
    expect_in "objective lm" "$work/out"
    expect_in "24 documents of 24 files" "$work/out"  # notes.md and the hidden folder are skipped
    expect_in "tokenised in" "$work/out"
    expect_in "cache absent; written to $work/cache/tokens/corpus-" "$work/out"
    expect_in "train      21 documents" "$work/out"
    expect_in "held-out   3 documents" "$work/out"
    expect_in "40 x 4 sequences (batch 4 x grad_accumulation 1) = 256 tokens per step, 10,240 in all, 0.56 epochs" "$work/out"
    expect_in "every 10 steps and after the last" "$work/out"
    expect_in "optimizer  AdamW lr 0.0003" "$work/out"
    expect_in "dry run: nothing trained" "$work/out"
    grep -q $'\r' "$work/out" && fail "a pipe got terminal control characters"
    # The second run takes the tokens from the cache; the counts are the same.
    "$TESSERA" train "$work/train.toml" --dry-run >"$work/out2" 2>&1 || fail "second dry run"
    expect_in "tokens     from the cache $work/cache/tokens/corpus-" "$work/out2"
    diff <(grep -E '^(corpus|train|held-out|steps) ' "$work/out") <(grep -E '^(corpus|train|held-out|steps) ' "$work/out2") ||
      fail "the cached run counts other tokens"
    # A changed corpus is tokenised again.
    echo "one more line" >>"$work/corpus/doc1.txt"
    "$TESSERA" train "$work/train.toml" --dry-run >"$work/out3" 2>&1 || fail "third dry run"
    expect_in "cache stale: the corpus' files changed" "$work/out3"
    [ -e "$work/run" ] && fail "a dry run created the output folder"
    exit 0
  fi
  if [ "$1" = train_runs ]; then
    # 30 steps straight, and 20 then resumed to 30: the same weights, bit for bit.
    sed 's/^steps = 40/steps = 30/' "$work/train.toml" >"$work/straight.toml"
    "$TESSERA" train "$work/straight.toml" >"$work/out" 2>"$work/err" ||
      { cat "$work/out" "$work/err"; fail "train exited non-zero"; }
    cat "$work/out"
    expect_in "trains     " "$work/out"
    expect_in "start      a new run" "$work/out"
    expect_in "step 30/30" "$work/out"
    expect_in "model      $work/run/model" "$work/out"
    for f in log.jsonl loss.svg report.html model/manifest.toml model/model.safetensors checkpoints/latest checkpoints/step-30/weights.safetensors checkpoints/step-30/optimizer.safetensors checkpoints/step-30/cursor.txt; do
      [ -s "$work/run/$f" ] || fail "the run wrote no $f"
    done
    # The held-out loss falls: its first measurement (step 10) against its last (step 30).
    first=$(grep '"type":"eval"' "$work/run/log.jsonl" | head -1 | sed 's/.*"loss":\([^,]*\).*/\1/')
    last=$(grep '"type":"eval"' "$work/run/log.jsonl" | tail -1 | sed 's/.*"loss":\([^,]*\).*/\1/')
    awk -v a="$first" -v b="$last" 'BEGIN { exit !(b < a) }' || fail "held-out loss $first -> $last did not fall"
    # The trained model is a model: generate from it.
    "$TESSERA" generate "$work/run/model" --tokens 1,2,3 --max-tokens 4 >"$work/gen" 2>&1 ||
      { cat "$work/gen"; fail "generate on the trained model failed"; }
    # The same 30 steps with checkpoints every 10, cut off after step 20 (its step-30
    # checkpoint removed, `latest` back at step-20), then resumed: bit-identical weights.
    sed 's|^output = "run"|output = "resumed"|; s/^seed = 1/seed = 1\ncheckpoint_every = 10/' "$work/straight.toml" >"$work/first.toml"
    "$TESSERA" train "$work/first.toml" >"$work/out1" 2>&1 || { cat "$work/out1"; fail "the checkpointed run failed"; }
    [ -d "$work/resumed/checkpoints/step-10" ] && fail "the oldest checkpoint was kept"
    [ -d "$work/resumed/checkpoints/step-20" ] || fail "the second newest checkpoint was removed"
    rm -r "$work/resumed/checkpoints/step-30" "$work/resumed/model"
    echo step-20 >"$work/resumed/checkpoints/latest"
    sed 's/^seed = 1/seed = 1\nresume = true/' "$work/first.toml" >"$work/second.toml"
    "$TESSERA" train "$work/second.toml" >"$work/out2" 2>&1 || { cat "$work/out2"; fail "the resumed run failed"; }
    expect_in "start      resumed from $work/resumed/checkpoints/step-20 after step 20" "$work/out2"
    cmp "$work/run/model/model.safetensors" "$work/resumed/model/model.safetensors" ||
      fail "30 steps straight and 20 + 10 resumed give other weights"
    # A resume whose cursor file is gone is refused, naming the checkpoint.
    rm "$work/resumed/checkpoints/step-30/cursor.txt"
    if "$TESSERA" train "$work/second.toml" >"$work/out3" 2>"$work/err3"; then fail "resume without a cursor succeeded"; fi
    expect_in "the checkpoint $work/resumed/checkpoints/step-30 has no cursor.txt" "$work/err3"
    exit 0
  fi
  if [ "$1" = train_distill ]; then
    # Puzzle's order on the tiny model: a child with a pruned FFN in layer 1 and random weights
    # (no tokenizer of its own: the parent's reads the text), its FFNs trained block by block
    # against the parent's (BLD), then the whole child against the parent's outputs (GKD).
    "$TESSERA" convert "$work/llama.gguf" "$work/child" --to manifest >/dev/null || fail "convert"
    rm -f "$work/child/model.safetensors" "$work/child/tokenizer.json" "$work/child/tokenizer_config.json"
    sed -i 's/^format = "safetensors"/format = "random"\nseed = 5/; /^path = "model.safetensors"/d' "$work/child/manifest.toml"
    cat >>"$work/child/manifest.toml" <<TOML

[[layers]]
range = "1"
attention = { kind = "gqa" }
ffn = { kind = "swiglu", intermediate_size = 32 }
TOML
    sed -i '0,/^range = "0-1"/s//range = "0"/' "$work/child/manifest.toml"
    cat >"$work/bld.toml" <<TOML
[run]
objective = "distill-blocks"
output = "bld"
steps = 20
[model]
path = "child"
[parent]
path = "llama.gguf"
[data]
path = "corpus"
seq_len = 32
batch_size = 2
held_out_documents = 3
eval_every = 10
[optimizer]
lr = 1e-2
[[blocks]]
layers = "0-1"
part = "ffn"
TOML
    "$TESSERA" train "$work/bld.toml" >"$work/out" 2>&1 || { cat "$work/out"; fail "distill-blocks failed"; }
    cat "$work/out"
    expect_in "trains     8 tensors" "$work/out"  # two FFNs: gate, up, down and the norm
    evals() { grep '"type":"eval"' "$1" | sed 's/.*"loss":\([^,]*\).*/\1/'; }
    # Step 1's loss is the untrained child's (taken before its update): the held-out NMSE at
    # the end is well below it.
    first=$(grep '"type":"step"' "$work/bld/log.jsonl" | head -1 | sed 's/.*"loss":\([^,]*\).*/\1/')
    last=$(evals "$work/bld/log.jsonl" | tail -1)
    awk -v a="$first" -v b="$last" 'BEGIN { exit !(b < 0.5 * a) }' || fail "BLD NMSE $first -> held-out $last"
    sed 's/^objective = "distill-blocks"/objective = "distill"/; s/^output = "bld"/output = "gkd"/; s|^path = "child"|path = "bld/model"|; /^\[\[blocks\]\]/,$d' "$work/bld.toml" >"$work/gkd.toml"
    "$TESSERA" train "$work/gkd.toml" >"$work/out2" 2>&1 || { cat "$work/out2"; fail "distill failed"; }
    first=$(evals "$work/gkd/log.jsonl" | head -1); last=$(evals "$work/gkd/log.jsonl" | tail -1)
    awk -v a="$first" -v b="$last" 'BEGIN { exit !(b < a) }' || fail "GKD held-out loss $first -> $last"
    "$TESSERA" generate "$work/gkd/model" --tokens 1,2,3 -n 4 >"$work/gen" 2>&1 || { cat "$work/gen"; fail "generate on the distilled child"; }
    exit 0
  fi
  if [ "$1" = train_medusa ]; then
    # Medusa heads on the frozen tiny model: trained, resumed from a checkpoint, written where
    # the decoder reads them; the tree chosen for this machine; greedy against Medusa.
    cat >"$work/medusa.toml" <<TOML
[run]
objective = "medusa"
output = "medusa-run"
steps = 30
checkpoint_every = 15
[model]
path = "llama.gguf"
[data]
path = "corpus"
seq_len = 32
batch_size = 4
held_out_documents = 3
eval_every = 15
[optimizer]
lr = 1e-2
[medusa]
heads = 3
TOML
    "$TESSERA" train "$work/medusa.toml" >"$work/out" 2>&1 || { cat "$work/out"; fail "medusa training failed"; }
    cat "$work/out"
    expect_in "objective medusa" "$work/out"
    expect_in "trains     6 tensors of 3 Medusa heads" "$work/out"
    expect_in "head 0     (token +2) top-1 " "$work/out"
    expect_in "heads      $work/medusa-run/medusa" "$work/out"
    evals() { grep '"type":"eval"' "$1" | sed 's/.*"loss":\([^,]*\).*/\1/'; }
    first=$(evals "$work/medusa-run/log.jsonl" | head -1); last=$(evals "$work/medusa-run/log.jsonl" | tail -1)
    awk -v a="$first" -v b="$last" 'BEGIN { exit !(b < 0.9 * a) }' || fail "medusa held-out loss $first -> $last"
    [ -f "$work/medusa-run/medusa/medusa_lm_head.safetensors" ] || fail "no heads file"
    expect_in '"medusa_top_k_accuracy"' "$work/medusa-run/medusa/config.json"
    # The run cut back to its step-15 checkpoint and resumed: the same heads, bit for bit.
    cp -r "$work/medusa-run" "$work/medusa-resumed"
    rm -r "$work/medusa-resumed/checkpoints/step-30" "$work/medusa-resumed/medusa"
    echo step-15 >"$work/medusa-resumed/checkpoints/latest"
    sed 's/^output = "medusa-run"/output = "medusa-resumed"\nresume = true/' "$work/medusa.toml" >"$work/m30.toml"
    "$TESSERA" train "$work/m30.toml" >"$work/out" 2>&1 || { cat "$work/out"; fail "resumed run"; }
    expect_in "start      resumed from $work/medusa-resumed/checkpoints/step-15 after step 15" "$work/out"
    cmp "$work/medusa-run/medusa/medusa_lm_head.safetensors" "$work/medusa-resumed/medusa/medusa_lm_head.safetensors" ||
      fail "the resumed heads differ from the straight run's"
    heads="$work/medusa-run/medusa"
    "$TESSERA" medusa tree "$work/llama.gguf" --heads "$heads" --max-tokens 12 --repeats 2 --write >"$work/tree" 2>&1 ||
      { cat "$work/tree"; fail "medusa tree"; }
    cat "$work/tree"
    expect_in "chosen     " "$work/tree"
    expect_in "predicted  " "$work/tree"
    expect_in '"medusa_choices"' "$heads/config.json"
    "$TESSERA" medusa bench "$work/llama.gguf" --heads "$heads" -n 24 --prompts 3 --batch 2 --tree chain-2 >"$work/bench" 2>&1 ||
      { cat "$work/bench"; fail "medusa bench"; }
    cat "$work/bench"
    expect_in "3 of 3 identical" "$work/bench"
    expect_in "2 of 2 as alone, 2 of 2 as greedy in the batch" "$work/bench"
    "$TESSERA" generate "$work/llama.gguf" --tokens 1,2,3 -n 20 -q >"$work/g" 2>&1 || fail "greedy"
    "$TESSERA" generate "$work/llama.gguf" --tokens 1,2,3 -n 20 -q --decoder medusa --decoder-weights "$heads" \
      --decoder-param tree=chain-2 >"$work/m" 2>&1 || { cat "$work/m"; fail "generate --decoder medusa"; }
    diff "$work/g" "$work/m" || fail "medusa's tokens differ from greedy's"
    if "$TESSERA" generate "$work/llama.gguf" --tokens 1,2,3 --decoder medusa >"$work/m" 2>&1; then fail "medusa without heads ran"; fi
    expect_in "--decoder-weights" "$work/m"
    if "$TESSERA" generate "$work/llama.gguf" --tokens 1,2,3 --decoder medusa --decoder-weights "$heads" --decoder-param tree=chain-5 >"$work/m" 2>&1; then
      fail "a tree deeper than the heads ran"; fi
    expect_in "is 5 deep, but there are only 3 heads" "$work/m"
    if "$TESSERA" generate "$work/llama.gguf" --tokens 1,2,3 --decoder medusa --decoder-weights "$heads" --decoder-param x >"$work/m" 2>&1; then
      fail "a malformed --decoder-param ran"; fi
    expect_in "--decoder-param 'x': expected KEY=VALUE" "$work/m"
    config "held_out_documents = 3
[medusa]
heads = 2" "$work/c.toml"
    if "$TESSERA" train "$work/c.toml" --dry-run >"$work/m" 2>&1; then fail "[medusa] with objective lm ran"; fi
    expect_in '[medusa] applies only to objective = "medusa", not "lm"' "$work/m"
    exit 0
  fi
  check_error() {  # expected-substring, config file
    local want=$1; shift
    if "$TESSERA" train "$@" >"$work/out" 2>"$work/err" </dev/null; then fail "'train $*' succeeded"; fi
    [ "$(wc -l <"$work/err")" -eq 1 ] || { cat "$work/err"; fail "'train $*': error is not one line"; }
    expect_in "tessera: error:" "$work/err"
    expect_in "$want" "$work/err"
  }
  check_error "$work/absent.toml:1:1: training config does not exist" "$work/absent.toml" --dry-run
  config "held_out_documents = 3
seqlen = 3" "$work/c.toml"
  check_error "$work/c.toml:16:1: unknown key 'seqlen' in [data] (did you mean 'seq_len'?)" "$work/c.toml" --dry-run
  config "" "$work/c.toml"
  sed -i 's/^seq_len = 64/seq_len = 300/' "$work/c.toml"
  check_error "$work/c.toml:12:11: seq_len 300 in [data] is above the model's max_seq_len 256" "$work/c.toml" --dry-run
  config "separator = \"<|nope|>\"" "$work/c.toml"
  check_error "$work/c.toml:15:13: separator \"<|nope|>\" in [data] is not a token" "$work/c.toml" --dry-run
  config "held_out_documents = 24" "$work/c.toml"
  check_error "held_out_documents = 24 takes every one of the 24 documents" "$work/c.toml" --dry-run
  # Ten one-line documents: one held out is shorter than a sequence of 250 + 1.
  mkdir -p "$work/short"
  for i in $(seq 1 10); do echo "Short document $i about the quick brown fox and the lazy dog." >"$work/short/s$i.txt"; done
  config "held_out_documents = 1" "$work/c.toml"
  sed -i 's|^path = "corpus"|path = "short"|; s/^seq_len = 64/seq_len = 250/' "$work/c.toml"
  check_error "the held-out part would be empty: its 1 document packs to" "$work/c.toml" --dry-run
  echo "hello world" >"$work/tiny.txt"
  config "held_out_fraction = 0" "$work/c.toml"
  sed -i 's|^path = "corpus"|path = "tiny.txt"|; s/^eval_every = 10//' "$work/c.toml"
  check_error "the corpus is shorter than one sequence" "$work/c.toml" --dry-run
  sed -i 's|^path = "tiny.txt"|path = "nowhere"|' "$work/c.toml"
  check_error "the corpus path $work/nowhere does not exist" "$work/c.toml" --dry-run
  mkdir -p "$work/empty"; : >"$work/empty/a.txt"; : >"$work/empty/b.txt"
  sed -i 's|^path = "nowhere"|path = "empty"|' "$work/c.toml"
  check_error "the corpus has no text: its 2 files" "$work/c.toml" --dry-run
  sed -i 's|^include = \["\*.txt"\]|include = ["*.rst"]|' "$work/c.toml"
  check_error "has no file matching include = [\"*.rst\"]" "$work/c.toml" --dry-run
  cp "$SOURCE_DIR/tests/data/gguf/tiny_deci.gguf-fixture" "$work/deci.gguf"
  config "" "$work/c.toml"
  sed -i 's|^path = "llama.gguf"|path = "deci.gguf"|' "$work/c.toml"
  check_error "$work/c.toml:7:8: the model $work/deci.gguf has no tokenizer" "$work/c.toml" --dry-run
  sed -i 's|^path = "deci.gguf"|path = "missing.gguf"|' "$work/c.toml"
  check_error "$work/c.toml:7:8: cannot open $work/missing.gguf" "$work/c.toml" --dry-run
  config "" "$work/c.toml"
  mkdir -p "$work/run"; echo '{}' >"$work/run/log.jsonl"
  check_error "$work/c.toml:2:10: the output folder $work/run already holds a run (log.jsonl); set resume = true" "$work/c.toml" --dry-run
  check_error "The following argument was not expected: extra" "$work/c.toml" extra
  ;;
*) fail "unknown case $1" ;;
esac
echo "ok: $1"
