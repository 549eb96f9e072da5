#!/usr/bin/env python3
"""Seconds per training step of PyTorch eager on a Hugging Face DeciLM/Llama folder: the same
step tessera train takes (forward, mean next-token cross-entropy, backward, AdamW), f32, on
random token ids of the same shape. Prints one JSON line.

  python3 bench/train/torch_step.py --hf DIR --batch 2 --seq-len 128 --steps 6 --threads 2
"""

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests" / "golden" / "models"))
from make_decilm_golden import DeciLM  # noqa: E402
from make_decilm_train_golden import forward  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hf", required=True)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model = DeciLM(a.hf)
    params = {}
    for name, t in model.w.items():
        params[name] = torch.nn.Parameter(t.to(torch.float32))
    model.w = params
    opt = torch.optim.AdamW(params.values(), lr=3e-4, betas=(0.9, 0.95), weight_decay=0.1)
    vocab = model.w["model.embed_tokens.weight"].shape[0]
    times = []
    for _ in range(a.steps):
        ids = torch.randint(0, vocab, (a.batch, a.seq_len + 1))
        start = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = 0
        for row in ids.tolist():
            logits = forward(model, row[:-1])
            loss = loss + torch.nn.functional.cross_entropy(logits, torch.tensor(row[1:]),
                                                            reduction="sum")
        loss = loss / (a.batch * a.seq_len)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params.values(), 1.0)
        opt.step()
        times.append(time.perf_counter() - start)
    steady = times[1:] if len(times) > 1 else times
    print(json.dumps({"seconds_per_step": sum(steady) / len(steady), "steps": len(steady),
                      "tokens_per_step": a.batch * a.seq_len, "torch": torch.__version__,
                      "threads": torch.get_num_threads()}))


if __name__ == "__main__":
    main()
