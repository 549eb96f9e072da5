#!/usr/bin/env bash
# The bad-input suite: one class of malformed input per run (the first argument), several cases
# each. Every case is held to the same checks:
#   - it exits non-zero, within $limit seconds, and not by a signal;
#   - its stderr is an error ("tessera: error: ...") that matches what the case expects: the
#     file (with line and column for TOML), the tensor, the layer or the flag;
#   - no bare exception text (std::..., what(), bad_alloc, terminate called) and no sanitizer
#     report;
#   - nothing is written or destroyed: every path and file content of the work folder is the
#     same afterwards.
set -uo pipefail
: "${TESSERA:?}" "${PLUGIN_DIR:?}" "${FIXTURE_DIR:?}" "${SOURCE_DIR:?}"
sanitized=${SANITIZED:-0}
work=$(mktemp -d)
logs=$(mktemp -d)
trap 'rm -rf "$work" "$logs"' EXIT
limit=20
[ "$sanitized" = 1 ] && limit=90
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
edit="python3 $here/safetensors_edit.py"
failures=0
cases=0

snapshot() {
  (cd "$work" && find . -printf '%p %y\n' | LC_ALL=C sort && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 -r md5sum)
}

# bad NAME WANT -- COMMAND...: WANT is an extended regular expression the error must match.
bad() {
  local name=$1 want=$2
  shift 3
  cases=$((cases + 1))
  local before after rc problem=""
  before=$(snapshot)
  (cd "$work" && exec timeout -s KILL "$limit" "$@") >"$logs/out" 2>"$logs/err" </dev/null
  rc=$?
  after=$(snapshot)
  if [ "$rc" -eq 0 ]; then
    problem="it succeeded"
  elif [ "$rc" -eq 137 ]; then
    problem="it did not finish within ${limit}s (killed)"
  elif [ "$rc" -gt 128 ]; then
    problem="it died of signal $((rc - 128))"
  elif ! grep -q '^tessera: error: ' "$logs/err"; then
    problem="no 'tessera: error:' line on stderr"
  elif ! grep -Eq -- "$want" "$logs/err"; then
    problem="the error does not match /$want/"
  elif grep -Eq 'terminate called|what\(\)|std::|basic_string|bad_alloc|vector::|Segmentation|core dumped|Sanitizer|runtime error:' "$logs/err"; then
    problem="bare exception text or a sanitizer report"
  elif [ "$before" != "$after" ]; then
    problem="the work folder changed: $(diff <(echo "$before") <(echo "$after") | head -5 | tr '\n' ' ')"
  fi
  if [ -n "$problem" ]; then
    failures=$((failures + 1))
    echo "FAIL  $name: $problem (exit $rc)"
    sed 's/^/      /' "$logs/err" | head -c 2000
  else
    echo "PASS  $name: $(head -c 240 "$logs/err" | head -1)"
  fi
}

# ok NAME WANT -- COMMAND...: a case that must succeed, its stderr matching WANT (warnings).
ok() {
  local name=$1 want=$2
  shift 3
  cases=$((cases + 1))
  (cd "$work" && exec timeout -s KILL "$limit" "$@") >"$logs/out" 2>"$logs/err" </dev/null
  local rc=$?
  if [ "$rc" -ne 0 ] || ! grep -Eq -- "$want" "$logs/err" "$logs/out"; then
    failures=$((failures + 1))
    echo "FAIL  $name: exit $rc or no /$want/"
    sed 's/^/      /' "$logs/err" | head -c 2000
  else
    echo "PASS  $name"
  fi
}

tiny="$work/tiny.toml"
cp "$SOURCE_DIR/examples/manifests/tiny-hetero.toml" "$tiny"
# tiny.toml with one sed expression applied, as NAME.toml in the work folder.
variant() { sed "$2" "$tiny" >"$work/$1.toml"; }
# A manifest folder with safetensors weights: m/manifest.toml, m/model.safetensors.
make_folder() {
  "$TESSERA" init-random --manifest "$tiny" --seed 1 -o "$work/$1" >/dev/null || {
    echo "setup: init-random failed"
    exit 1
  }
}

case "$1" in
plugin_entry)
  # A descriptor the host can read, wrong in one way each: refused by plugin-check, and when on
  # the plugin path of a command that needs no plugin of theirs, reported without stopping it.
  for defect in data-entry null-descriptor small-descriptor abi-major-next null-vtable small-vtable \
    missing-forward dup-provider; do
    bad "plugin-check fixture-$defect" "libtessera-fixture-$defect\.so" -- \
      "$TESSERA" plugin-check "$FIXTURE_DIR/libtessera-fixture-$defect.so"
  done
  bad "plugin-check a library without the entry symbol" "libtessera-notaplugin\.so.*tessera_plugin" -- \
    "$TESSERA" plugin-check "$FIXTURE_DIR/libtessera-notaplugin.so"
  mkdir "$work/path" && cp "$FIXTURE_DIR/libtessera-fixture-null-descriptor.so" "$work/path/"
  variant needs-fixture 's/ffn = { kind = "linear" }/ffn = { kind = "linear", plugin = "fixture-defective" }/'
  bad "a manifest naming a plugin that did not load" "needs-fixture\.toml:[0-9]+:[0-9]+.*libtessera-fixture-null-descriptor\.so" -- \
    "$TESSERA" generate needs-fixture.toml --tokens 1 -n 1 --plugin-path path
  ;;
truncated_elf)
  real="$PLUGIN_DIR/libtessera-ffn-cpu.so"
  mkdir "$work/cut"
  for bytes in 0 16 64 700 3000 20000; do
    head -c "$bytes" "$real" >"$work/cut/libtessera-cut$bytes.so"
  done
  printf 'not an ELF file\n' >"$work/cut/libtessera-text.so"
  for f in cut0 cut16 cut64 cut700 cut3000 cut20000 text; do
    bad "plugin-check a library of $f" "libtessera-$f\.so" -- "$TESSERA" plugin-check "cut/libtessera-$f.so"
  done
  ok "plugins with them on the path lists the rest and warns" "warning: skipped .*libtessera-cut3000\.so.*truncated" -- \
    "$TESSERA" plugins --plugin-path cut
  ;;
threads)
  variant threads-big 's/^threads = 0 .*/threads = 100000/'
  bad "manifest threads 100000" "threads-big\.toml:[0-9]+:[0-9]+: 'threads'.*1024" -- \
    "$TESSERA" generate threads-big.toml --tokens 1 -n 1
  variant threads-neg 's/^threads = 0 .*/threads = -2/'
  bad "manifest threads -2" "threads-neg\.toml:[0-9]+:[0-9]+: 'threads'" -- \
    "$TESSERA" generate threads-neg.toml --tokens 1 -n 1
  variant threads-text 's/^threads = 0 .*/threads = "many"/'
  bad "manifest threads as text" "threads-text\.toml:[0-9]+:[0-9]+: 'threads'" -- \
    "$TESSERA" generate threads-text.toml --tokens 1 -n 1
  bad "--threads 100000" "--threads" -- "$TESSERA" generate tiny.toml --tokens 1 -n 1 --threads 100000
  if [ "$sanitized" != 1 ]; then
    # Thread creation fails partway when the address space cannot hold more stacks.
    bad "threads refused by the system partway" "thread" -- \
      bash -c 'ulimit -v 600000; exec "$0" generate tiny.toml --tokens 1 -n 1 --threads 1000' "$TESSERA"
  fi
  ;;
fifo)
  mkfifo "$work/pipe.toml" "$work/pipe.gguf" "$work/pipe.safetensors" "$work/pipe.json"
  mkdir "$work/hf" && mkfifo "$work/hf/config.json"
  bad "manifest FIFO" "pipe\.toml.*FIFO" -- "$TESSERA" generate pipe.toml --tokens 1 -n 1
  bad "validate manifest FIFO" "pipe\.toml.*FIFO" -- "$TESSERA" validate pipe.toml
  bad "GGUF FIFO" "pipe\.gguf.*FIFO" -- "$TESSERA" info pipe.gguf
  bad "Hugging Face config FIFO" "config\.json.*FIFO" -- "$TESSERA" info hf
  variant weights-pipe 's/^format = "random"/format = "safetensors"\npath = "pipe.safetensors"/; /^seed = /d'
  bad "weights FIFO" "pipe\.safetensors.*FIFO" -- "$TESSERA" generate weights-pipe.toml --tokens 1 -n 1
  bad "search problem FIFO" "pipe\.json.*FIFO" -- "$TESSERA" search pipe.json
  bad "train config FIFO" "pipe\.toml.*FIFO" -- "$TESSERA" train pipe.toml
  ;;
init_random)
  make_folder existing
  bad "init-random over an existing model without --force" "existing.*--force" -- \
    "$TESSERA" init-random --manifest tiny.toml -o existing
  : >"$work/a-file"
  bad "init-random onto a file" "a-file" -- "$TESSERA" init-random --manifest tiny.toml -o a-file
  bad "init-random with a file-size limit" "out.*File too large" -- \
    bash -c 'ulimit -f 64; exec "$0" init-random --manifest tiny.toml -o out' "$TESSERA"
  bad "init-random with an unknown shape" "unknown built-in model shape 'nope'; known shapes: .*smollm2-135m" -- \
    "$TESSERA" init-random --shape nope -o out
  variant bad-layers 's/^range = "2"/range = "2-9"/'
  bad "init-random from a manifest with overlapping ranges" "bad-layers\.toml:[0-9]+:[0-9]+" -- \
    "$TESSERA" init-random --manifest bad-layers.toml -o out
  ;;
extra_tensors)
  make_folder m
  for extra in model.layers.0.self_attn.q_proj.bias model.layers.9.mlp.up_proj.weight misspelt.weight; do
    cp -r "$work/m" "$work/x-$extra"
    $edit "$work/m/model.safetensors" "$work/x-$extra/model.safetensors" extra "$extra"
    bad "manifest safetensors with an extra $extra" "x-$extra/manifest\.toml:[0-9]+:[0-9]+: tensor '$extra'.*model\.safetensors" -- \
      "$TESSERA" generate "x-$extra" --tokens 1 -n 1
  done
  ;;
overlapping_tensors)
  make_folder m
  for mode in overlap past_end header_length; do
    cp -r "$work/m" "$work/$mode"
    $edit "$work/m/model.safetensors" "$work/$mode/model.safetensors" "$mode"
    bad "safetensors $mode" "$mode/model\.safetensors" -- "$TESSERA" generate "$mode" --tokens 1 -n 1
  done
  ;;
flags)
  bad "-n ten" "--max-tokens: 'ten' is not an integer" -- "$TESSERA" generate tiny.toml --tokens 1 -n ten
  bad "-n 0" "--max-tokens" -- "$TESSERA" generate tiny.toml --tokens 1 -n 0
  bad "--seed with 25 digits" "--seed: '1234567890123456789012345' is out of range" -- \
    "$TESSERA" generate tiny.toml --tokens 1 --seed 1234567890123456789012345
  bad "--top-p 1.5" "--top-p" -- "$TESSERA" generate tiny.toml --tokens 1 --top-p 1.5
  bad "--temperature -1" "--temperature" -- "$TESSERA" generate tiny.toml --tokens 1 --temperature -1
  bad "--tolerance -1" "--tolerance: '-1' is out of range" -- \
    "$TESSERA" plugin-check "$PLUGIN_DIR/libtessera-ffn-cpu.so" --tolerance -1
  bad "--probe-mib 0" "--probe-mib" -- "$TESSERA" bench tiny.toml --probe-mib 0 --prompt-len 8 --gen 8
  bad "--tokens with a word" "--tokens entry" -- "$TESSERA" generate tiny.toml --tokens 1,x
  bad "--tokens beyond the vocabulary" "256" -- "$TESSERA" generate tiny.toml --tokens 1,999
  ;;
memory)
  # Shapes whose weights cannot fit: refused up front with the figure and the file.
  variant big 's/^hidden_size = 64/hidden_size = 8192/; s/^num_layers = 6/num_layers = 80/; s/^intermediate_size = 128 .*/intermediate_size = 28672/; s/^num_heads = 4/num_heads = 64/; s/^num_kv_heads = 2 .*/num_kv_heads = 8/; s/^vocab_size = 256/vocab_size = 128256/; s/^range = "5"/range = "5-79"/; s/kv_heads = [14] }/kv_heads = 8 }/'
  bad "a 70B shape" "big\.toml.*GiB.*MemAvailable" -- "$TESSERA" generate big.toml --tokens 1 -n 1
  variant deep 's/^hidden_size = 64/hidden_size = 4096/; s/^num_layers = 6/num_layers = 100000/; s/^range = "5"/range = "5-99999"/; s/^num_heads = 4/num_heads = 32/; s/^num_kv_heads = 2 .*/num_kv_heads = 8/; s/kv_heads = [14] }/kv_heads = 8 }/'
  bad "100,000 layers" "deep\.toml.*(GiB|num_layers)" -- "$TESSERA" generate deep.toml --tokens 1 -n 1
  # A KV cache of 16M tokens x 128 KiB (two layers of head_dim 4096), asked for by chat.
  mkdir "$work/kv"
  sed 's/^max_seq_len = 256/max_seq_len = 1000000000/; s/^vocab_size = 256/vocab_size = 640/; s/^attention = { kind = "gqa" }/attention = { kind = "gqa", head_dim = 4096 }/' \
    "$tiny" >"$work/kv/manifest.toml"
  cp "$SOURCE_DIR/tests/data/tokenizer/toy_smollm.json" "$work/kv/tokenizer.json"
  printf '{"chat_template": "{%% for m in messages %%}<|im_start|>{{ m.role }}\\n{{ m.content }}<|im_end|>\\n{%% endfor %%}"}\n' \
    >"$work/kv/tokenizer_config.json"
  bad "a KV cache of 16M tokens" "kv/manifest\.toml: the KV cache.*TiB.*MemAvailable" -- \
    "$TESSERA" chat kv --context 16000000
  mkdir "$work/hf"
  cat >"$work/hf/config.json" <<'JSON'
{"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 64,
 "intermediate_size": 128, "num_attention_heads": 4, "num_key_value_heads": 2,
 "num_hidden_layers": 1000000000, "vocab_size": 256, "max_position_embeddings": 64,
 "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "torch_dtype": "float32"}
JSON
  bad "config.json num_hidden_layers 1e9" "config\.json.*num_hidden_layers" -- "$TESSERA" generate hf --tokens 1 -n 1
  available_kib=$(awk '/^MemAvailable:/ { print $2 }' /proc/meminfo)
  if [ "${available_kib:-0}" -lt $((64 * 1024 * 1024)) ]; then
    bad "--probe-mib 65536" "bandwidth probe.*64\.00 GiB.*MemAvailable" -- \
      "$TESSERA" bench tiny.toml --probe-mib 65536 --prompt-len 8 --gen 8
  fi
  ;;
manifest_located)
  variant odd-head 's/^hidden_size = 64/hidden_size = 66/; s/^num_heads = 4/num_heads = 6/; s/^num_kv_heads = 2 .*/num_kv_heads = 6/; s/kv_heads = [14] }/kv_heads = 6 }/'
  bad "odd head_dim for RoPE" "odd-head\.toml:[0-9]+:[0-9]+: layer 0 .*head_dim 11" -- \
    "$TESSERA" generate odd-head.toml --tokens 1 -n 1
  variant unknown-kind 's/attention = { kind = "linear" }/attention = { kind = "bogus" }/'
  bad "unknown block kind" "layer 3 attention 'bogus' \(unknown-kind\.toml:[0-9]+:[0-9]+\)" -- \
    "$TESSERA" generate unknown-kind.toml --tokens 1 -n 1
  variant unknown-plugin 's/attention = { kind = "linear" }/attention = { kind = "linear", plugin = "nobody" }/'
  bad "unknown plugin name" "layer 3 attention .*\(unknown-plugin\.toml:[0-9]+:[0-9]+\).*nobody" -- \
    "$TESSERA" generate unknown-plugin.toml --tokens 1 -n 1
  variant wrong-interface 's/attention = { kind = "linear" }/attention = { kind = "linear", plugin = "tessera-ffn-cpu" }/'
  bad "a plugin of the wrong interface" "layer 3 attention .*\(wrong-interface\.toml:[0-9]+:[0-9]+\).*tessera-ffn-cpu" -- \
    "$TESSERA" generate wrong-interface.toml --tokens 1 -n 1
  variant unknown-decoder 's/^kind = "greedy"/kind = "nosuch"/'
  bad "unknown decoder" "decoder 'nosuch' \(unknown-decoder\.toml:[0-9]+:[0-9]+\)" -- \
    "$TESSERA" generate unknown-decoder.toml --tokens 1 -n 1
  variant decoder-param 's/^kind = "greedy"/kind = "greedy"\nbeam = 4/'
  bad "a decoder parameter it does not take" "decoder-param\.toml:[0-9]+:[0-9]+.*beam" -- \
    "$TESSERA" generate decoder-param.toml --tokens 1 -n 1
  variant kv-dtype 's/^dtype = "f32"/dtype = "f32"\nkv_dtype = "q9"/'
  bad "an unknown kv_dtype" "kv-dtype\.toml:[0-9]+:[0-9]+: 'kv_dtype'" -- \
    "$TESSERA" generate kv-dtype.toml --tokens 1 -n 1
  # A block that keeps its cache in f32 whatever kv_dtype asks (a fixture that outscores the
  # built-in gqa, so it serves every gqa layer).
  make_folder kvf
  mkdir "$work/fixture" && cp "$FIXTURE_DIR/libtessera-fixture-wrong-attention.so" "$work/fixture/"
  sed -i 's/^dtype = "f32"/dtype = "f32"\nkv_dtype = "f16"/' "$work/kvf/manifest.toml"
  bad "a block that ignores kv_dtype" "layer 0 attention gqa \(tessera-fixture-wrong-attention\) \(kvf/manifest\.toml:[0-9]+:[0-9]+\): keeps its KV cache in f32" -- \
    "$TESSERA" generate kvf --tokens 1 -n 1 --plugin-path fixture
  variant block-param 's/attention = { kind = "gqa", kv_heads = 1 }/attention = { kind = "gqa", kv_heads = 3 }/'
  bad "kv_heads that do not divide the heads" "block-param\.toml:[0-9]+:[0-9]+.*layer 2" -- \
    "$TESSERA" generate block-param.toml --tokens 1 -n 1
  variant typo 's/^rope_theta/rope_thetta/'
  bad "a misspelt key" "typo\.toml:[0-9]+:[0-9]+.*rope_thetta" -- "$TESSERA" validate typo.toml
  ;;
weight_mismatch)
  make_folder m
  name=model.layers.0.mlp.down_proj.weight
  for mode in shape dtype drop; do
    cp -r "$work/m" "$work/$mode"
    $edit "$work/m/model.safetensors" "$work/$mode/model.safetensors" "$mode" "$name"
    bad "a tensor's $mode" "$mode/manifest\.toml.*'$name'.*($mode/model\.safetensors|missing)" -- \
      "$TESSERA" generate "$mode" --tokens 1 -n 1
  done
  cp -r "$work/m" "$work/embed"
  $edit "$work/m/model.safetensors" "$work/embed/model.safetensors" shape model.embed_tokens.weight
  bad "the embedding's shape" "embed/manifest\.toml.*'model\.embed_tokens\.weight'.*embed/model\.safetensors" -- \
    "$TESSERA" generate embed --tokens 1 -n 1
  ;;
nul)
  make_folder m
  sed 's|^path = "model.safetensors"|path = "model\\u0000.safetensors"|' "$work/m/manifest.toml" >"$work/m/nul-path.toml"
  bad "NUL in the weights path" "nul-path\.toml:[0-9]+:[0-9]+: .*NUL" -- "$TESSERA" generate m/nul-path.toml --tokens 1 -n 1
  variant nul-plugin-path 's|^threads = 0 .*|threads = 0\nplugin_paths = ["a\\u0000b"]|'
  bad "NUL in a plugin path" "nul-plugin-path\.toml:[0-9]+:[0-9]+: .*NUL" -- \
    "$TESSERA" generate nul-plugin-path.toml --tokens 1 -n 1
  variant nul-name 's|^name = "tiny-hetero"|name = "tiny\\u0000hetero"|'
  bad "NUL in the model name" "nul-name\.toml:[0-9]+:[0-9]+: .*NUL" -- "$TESSERA" validate nul-name.toml
  variant nul-key 's|^rope_theta|"rope\\u0000theta"|'
  bad "NUL in a key" "nul-key\.toml:[0-9]+:[0-9]+: .*NUL" -- "$TESSERA" validate nul-key.toml
  ;;
chat_template)
  mkdir "$work/c"
  sed 's/^vocab_size = 256/vocab_size = 640/' "$tiny" >"$work/c/manifest.toml"
  cp "$SOURCE_DIR/tests/data/tokenizer/toy_smollm.json" "$work/c/tokenizer.json"
  printf '{"chat_template": "{%% for m in messages %%}[[{{ m.content }}]]{%% endfor %%}"}\n' >"$work/c/tokenizer_config.json"
  bad "generate with an unknown template" "c/tokenizer_config\.json.*unrecognised.*--raw" -- \
    "$TESSERA" generate c --prompt hello -n 1
  bad "chat with an unknown template" "c/tokenizer_config\.json.*unrecognised.*--raw" -- "$TESSERA" chat c
  mkdir "$work/j"
  cp "$work/c/manifest.toml" "$work/c/tokenizer.json" "$work/j/"
  printf '{{ bos_token }}{%% for m in messages %%}<turn>{{ m.content }}{%% endfor %%}\n' >"$work/j/chat_template.jinja"
  bad "generate with an unknown chat_template.jinja" "j/chat_template\.jinja.*unrecognised.*--raw" -- \
    "$TESSERA" generate j --prompt hello -n 1
  mkdir "$work/t"
  cp "$work/c/manifest.toml" "$work/c/tokenizer.json" "$work/t/"
  printf '{"chat_template": 7}\n' >"$work/t/tokenizer_config.json"
  bad "a chat_template that is a number" "t/tokenizer_config\.json.*chat_template" -- \
    "$TESSERA" generate t --prompt hello -n 1
  ;;
commands)
  bad "an unknown command" "unknown command 'frobnicate'; the commands are" -- "$TESSERA" frobnicate
  bad "a misspelt command" "unknown command 'genrate'" -- "$TESSERA" genrate tiny.toml
  bad "an unknown flag" "--no-such-flag" -- "$TESSERA" generate tiny.toml --no-such-flag
  bad "a model that does not exist" "missing\.toml.*does not exist" -- "$TESSERA" generate missing.toml --tokens 1
  cp "$tiny" "$work/tiny.txt"
  bad "a model of no known kind" "tiny\.txt.*not a known kind" -- "$TESSERA" generate tiny.txt --tokens 1
  ;;
plugin_path)
  bad "--plugin-path that does not exist" "--plugin-path: Directory does not exist" -- \
    "$TESSERA" plugins --plugin-path no-such-dir
  bad "--plugin-path that is a file" "--plugin-path: Directory is actually a file" -- \
    "$TESSERA" plugins --plugin-path tiny.toml
  variant manifest-path 's|^threads = 0 .*|threads = 0\nplugin_paths = ["no-such-dir"]|'
  bad "manifest plugin_paths that does not exist" "manifest-path\.toml:[0-9]+:[0-9]+.*no-such-dir" -- \
    "$TESSERA" generate manifest-path.toml --tokens 1 -n 1
  # A library that takes a built-in plugin's name is the one refused, and named.
  mkdir "$work/shadow" && cp "$PLUGIN_DIR/libtessera-ffn-cpu.so" "$work/shadow/libtessera-my-ffn.so"
  ok "a library reusing a built-in's name is skipped, naming it" \
    "skipped .*shadow/libtessera-my-ffn\.so.*name 'tessera-ffn-cpu' is that of the built-in plugin" -- \
    "$TESSERA" plugins --plugin-path shadow
  ok "the built-in still serves the model" "generated 1 tokens" -- \
    "$TESSERA" generate tiny.toml --tokens 1 -n 1 --plugin-path shadow
  mkdir "$work/broken" && head -c 3000 "$PLUGIN_DIR/libtessera-ffn-cpu.so" >"$work/broken/libtessera-broken.so"
  ok "one broken library does not stop plugins" "tessera-attention-cpu" -- \
    "$TESSERA" plugins --plugin-path broken
  ;;
messages)
  # Messages that once misled: each says what is wrong and what to do.
  bad "--temperature with --decoder greedy" "--temperature set how to sample, and --decoder greedy does not sample; use --decoder sampling" -- \
    "$TESSERA" generate tiny.toml --tokens 1 -n 1 --decoder greedy --temperature 0.5
  bad "--device cuda" "whole models run on the CPU only for now" -- \
    "$TESSERA" generate tiny.toml --tokens 1 -n 1 --device cuda
  bad "--tolerance -1 in a line" "^tessera: error: --tolerance: '-1' is out of range; expected a number above 0$" -- \
    "$TESSERA" plugin-check "$PLUGIN_DIR/libtessera-ffn-cpu.so" --tolerance -1
  ok "--temperature alone chooses sampling" "generated 1 tokens" -- \
    "$TESSERA" generate tiny.toml --tokens 1 -n 1 --temperature 0.5
  cp "$SOURCE_DIR/tests/data/gguf/tiny_llama.gguf-fixture" "$work/tiny.gguf"
  ok "validate takes a GGUF file" "^ok$" -- "$TESSERA" validate tiny.gguf
  ;;
*)
  echo "unknown class '$1'" >&2
  exit 2
  ;;
esac

echo "$1: $((cases - failures)) of $cases cases passed"
[ "$cases" -gt 0 ] && [ "$failures" -eq 0 ]
