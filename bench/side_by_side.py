#!/usr/bin/env python3
"""Decode and prefill speed of tessera beside llama.cpp, on the same GGUF files, in one run.

Builds nothing. Give it a llama.cpp build folder (with bin/llama-bench) and one or more GGUF
files; the two programs run alternately on each file, 2 threads by default, and the script
prints tokens/s of both and their ratio (tessera / llama.cpp) for tg128 (128 tokens decoded
from an empty context) and pp512 (a 512-token prompt), medians over the repetitions. Only
ratios from one run on one machine compare (docs/performance.md).

  bench/side_by_side.py --llama /path/to/llama.cpp/build FILE.gguf [FILE.gguf ...]

tessera runs each file with --weight-dtype stored: quantised tensors stay quantised.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path


def run_json(cmd):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def llama_rate(llama_bench, model, threads, prompt, gen):
    rows = run_json([str(llama_bench), "-m", str(model), "-t", str(threads), "-p", str(prompt),
                     "-n", str(gen), "-r", "1", "-o", "json"])
    return rows[0]["avg_ts"]


def tessera_rate(tessera, model, threads, prompt, gen, weight_dtype):
    r = run_json([str(tessera), "bench", str(model), "--json", "--threads", str(threads),
                  "--weight-dtype", weight_dtype, "--prompt-len", str(prompt), "--gen", str(gen),
                  "--repetitions", "1", "--probe-mib", "64"])
    return r["decode_tok_s"] if gen > 1 else r["prefill_tok_s"], r


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--llama", required=True, type=Path, help="llama.cpp build folder")
    ap.add_argument("--tessera", type=Path,
                    default=Path(__file__).resolve().parent.parent / "build/release/bin/tessera")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repetitions", type=int, default=5)
    ap.add_argument("--weight-dtype", default="stored")
    ap.add_argument("models", nargs="+", type=Path)
    a = ap.parse_args()
    llama_bench = a.llama / "bin" / "llama-bench"
    for path, what in ((llama_bench, "llama-bench"), (a.tessera, "tessera")):
        if not os.access(path, os.X_OK):
            sys.exit(f"side_by_side: {what} not found at {path}")
    print(f"{'file':40} {'test':6} {'llama.cpp':>10} {'tessera':>10} {'ratio':>7}")
    for model in a.models:
        for test, prompt, gen in (("tg128", 1, 128), ("pp512", 512, 1)):
            ours, theirs = [], []
            try:
                for _ in range(a.repetitions):  # alternate, so that both see the same machine
                    theirs.append(llama_rate(llama_bench, model, a.threads,
                                             0 if gen > 1 else prompt, gen if gen > 1 else 0))
                    ours.append(tessera_rate(a.tessera, model, a.threads, prompt, gen,
                                             a.weight_dtype)[0])
            except subprocess.CalledProcessError as e:
                why = (e.stderr or "").strip().splitlines()
                print(f"{model.name:40} {test:6} failed: {why[-1] if why else e}", flush=True)
                break
            l, t = statistics.median(theirs), statistics.median(ours)
            print(f"{model.name:40} {test:6} {l:10.1f} {t:10.1f} {t / l:7.2f}", flush=True)


if __name__ == "__main__":
    main()
