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
  expect_in "ABI 1." "$work/out"
  ;;
plugin_check_attention_cpu | plugin_check_ffn_cpu)
  lib=attention-cpu; [ "$1" = plugin_check_ffn_cpu ] && lib=ffn-cpu
  "$TESSERA" plugin-check "$PLUGIN_DIR/libtessera-$lib.so" >"$work/out" 2>&1 || { cat "$work/out"; fail "plugin-check $lib exited non-zero"; }
  grep -q '^FAIL' "$work/out" && fail "a case failed"
  grep -Eq '^[1-9][0-9]* passed, 0 failed' "$work/out" || { cat "$work/out"; fail "no passing cases"; }
  cat "$work/out"
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
  ;;
*) fail "unknown case $1" ;;
esac
echo "ok: $1"
