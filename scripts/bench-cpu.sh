#!/usr/bin/env bash
# The CPU speed table of docs/performance.md: `tessera bench` on the SmolLM2-135M
# shape for each weight dtype, at the two points llama-bench reports (pp512:
# prefill of 512 tokens; tg128: 128 tokens decoded from an empty context, here
# after a 1-token prompt) plus decode after a 512-token prompt, printed as a
# Markdown table. Each row is one `tessera bench --json` run; the share of the
# roofline is the median over the repetitions, each against the bandwidth probe
# run next to it.
#
# Usage: scripts/bench-cpu.sh [MODEL] [tessera binary]
#   MODEL   default smollm2-135m (built-in shape, random weights); a GGUF file,
#           manifest or Hugging Face folder also works
# Environment: THREADS (default 2), REPS (default 5), DTYPES (default "f32 bf16 f16"),
#   TESSERA_CPU_ISA=avx2 to keep the kernels on AVX2.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

model=${1:-smollm2-135m}
tessera=${2:-build/release/bin/tessera}
threads=${THREADS:-2}
reps=${REPS:-5}
dtypes=${DTYPES:-f32 bf16 f16}
if [[ ! -x "$tessera" ]]; then
  echo "bench-cpu: $tessera is not built (cmake --preset release && cmake --build build/release)" >&2
  exit 1
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/tessera-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT
for dtype in $dtypes; do
  # tg128 and pp512 in one run would mix a 1-token and a 512-token prompt: two runs.
  "$tessera" bench "$model" --weight-dtype "$dtype" --threads "$threads" --prompt-len 1 \
    --gen 128 --repetitions "$reps" --json >"$work/$dtype-tg.json" 2>"$work/err" ||
    { cat "$work/err" >&2; exit 1; }
  "$tessera" bench "$model" --weight-dtype "$dtype" --threads "$threads" --prompt-len 512 \
    --gen 128 --repetitions "$reps" --json >"$work/$dtype-pp.json" 2>"$work/err" ||
    { cat "$work/err" >&2; exit 1; }
done

python3 - "$work" $dtypes <<'PY'
import json, os, sys
work, dtypes = sys.argv[1], sys.argv[2:]
print("| weights | kernels | MB/token | tg128 tok/s | share of roofline | decode after 512 tok/s | share | pp512 tok/s | probe GB/s |")
print("|---|---|---|---|---|---|---|---|---|")
for d in dtypes:
    tg = json.load(open(os.path.join(work, f"{d}-tg.json")))
    pp = json.load(open(os.path.join(work, f"{d}-pp.json")))
    print(f"| {d} | {tg['kernels']} | {tg['weight_bytes_per_token'] / 1e6:.0f} "
          f"| {tg['decode_tok_s']:.1f} | {100 * tg['roofline_share_median']:.0f} % "
          f"| {pp['decode_tok_s']:.1f} | {100 * pp['roofline_share_median']:.0f} % "
          f"| {pp['prefill_tok_s']:.0f} "
          f"| {min(tg['bandwidth_runs'] + pp['bandwidth_runs']) / 1e9:.0f}-"
          f"{max(tg['bandwidth_runs'] + pp['bandwidth_runs']) / 1e9:.0f} |")
PY
