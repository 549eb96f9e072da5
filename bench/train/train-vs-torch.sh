#!/usr/bin/env bash
# Training speed of tessera train against PyTorch eager, side by side on this machine: the
# default model (SmolLM2-135M-Instruct, dequantised to f32), the same batch shape, thread
# count and step (forward, next-token loss, backward, clipping, AdamW). Prints the median
# seconds per step for each and the speed ratio (torch s/step over tessera's; the target is
# >= 1.2), the share of the machine's GEMM rate each reaches (6 x parameters x tokens per
# step, over the f32 GEMM FLOP/s tessera_bench measures in the same run on the model's FFN
# shapes), and the memory report tessera gives under each recompute policy.
#
#   bench/train/train-vs-torch.sh [TESSERA] [--batch 2] [--seq-len 128] [--steps 6] [--threads N]
#
# Needs torch, numpy and safetensors in python3 (tests/golden/models/setup-env.sh makes a venv
# with them; PYTHON names its python) and the corpus (scripts/fetch-corpus.sh).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
tessera=${1:-$root/build/release/bin/tessera}
[ $# -gt 0 ] && shift
batch=2 seq=128 steps=6 threads=$(nproc)  # tessera uses every hardware thread
while [ $# -gt 0 ]; do
  case "$1" in
    --batch) batch=$2; shift 2 ;;
    --seq-len) seq=$2; shift 2 ;;
    --steps) steps=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
python=${PYTHON:-python3}
[ -x "$tessera" ] || { echo "no tessera binary at $tessera (build it, or pass its path)" >&2; exit 1; }
model=$("$root/scripts/fetch-default-model.sh" | tail -1)
corpus=$("$root/scripts/fetch-corpus.sh" | tail -1)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

"$tessera" convert "$model" "$work/hf" --to hf --decilm --dtype f32 >/dev/null
echo "torch eager ..." >&2
torch_json=$("$python" "$here/torch_step.py" --hf "$work/hf" --batch "$batch" --seq-len "$seq" --steps "$steps" --threads "$threads")

# The GEMM rate of this machine now: tessera's f32 register-tile product on the FFN's shapes
# (512 tokens), every thread.
bench_bin=$(dirname "$tessera")/tessera_bench
gemm_flops=0
if [ -x "$bench_bin" ]; then
  echo "GEMM rate (tessera_bench) ..." >&2
  "$bench_bin" --benchmark_filter='BM_Gemm/512/(1536/576|576/1536)/0/' \
    --benchmark_format=json --benchmark_repetitions=3 >"$work/gemm.json" 2>/dev/null
  gemm_flops=$("$python" -c '
import json, sys
runs = [b for b in json.load(open(sys.argv[1]))["benchmarks"] if b.get("run_type") == "iteration"]
print(max(b["FLOP/s"] for b in runs))' "$work/gemm.json")
else
  echo "no tessera_bench beside $tessera: the GEMM share is left out" >&2
fi

for policy in none core all; do
  cat >"$work/$policy.toml" <<TOML
[run]
output = "$work/run-$policy"
steps = $steps
[model]
path = "$model"
[data]
path = "$corpus"
seq_len = $seq
batch_size = $batch
held_out_fraction = 0
[optimizer]
lr = 3e-4
[recompute]
policy = "$policy"
TOML
  echo "tessera train (recompute $policy) ..." >&2
  "$tessera" train "$work/$policy.toml" >"$work/$policy.out" 2>&1 ||
    { cat "$work/$policy.out" >&2; exit 1; }
done

"$python" - "$work" "$steps" "$torch_json" "$gemm_flops" <<'PY'
import json, sys
work, steps, torch_json = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
gemm = float(sys.argv[4])
step_flops = 6.0 * torch_json["parameters"] * torch_json["tokens_per_step"]
def per_step(policy):
    rows = [json.loads(l) for l in open(f"{work}/run-{policy}/log.jsonl") if '"type":"step"' in l]
    t = [r["elapsed_s"] for r in rows]
    d = sorted(b - a for a, b in zip(t, t[1:]))  # the median step, as for torch
    return (d[(len(d) - 1) // 2] + d[len(d) // 2]) / 2
torch_s = torch_json["seconds_per_step"]
print(f"batch {torch_json['tokens_per_step']} tokens per step, threads {torch_json['threads']}, "
      f"torch {torch_json['torch']}, {torch_json['parameters'] / 1e6:.1f} M parameters")
if gemm > 0:
    print(f"GEMM rate (f32, FFN shapes, this run): {gemm / 1e9:.1f} GFLOP/s")
print(f"{'':22s} {'s/step':>8s} {'tokens/s':>9s} {'speed vs torch':>15s} {'6NT GFLOP/s':>12s} "
      f"{'of GEMM':>8s}")
def row(name, s, ratio):
    share = f"{100 * step_flops / s / gemm:7.1f}%" if gemm > 0 else "       -"
    print(f"{name:22s} {s:8.3f} {torch_json['tokens_per_step'] / s:9.1f} {ratio:15.2f} "
          f"{step_flops / s / 1e9:12.1f} {share}")
row("torch eager", torch_s, 1.0)
for policy in ("none", "core", "all"):
    s = per_step(policy)
    row("tessera recompute " + policy, s, torch_s / s)
PY
for policy in none core all; do
  echo "--- memory, recompute $policy"
  sed -n '/^activation memory/,/^head /p' "$work/$policy.out"
done
