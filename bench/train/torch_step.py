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
from make_decilm_golden import DeciLM  # noqa: E402  (config and weights only)

F = torch.nn.functional


def forward(model, ids, rope):
    """f32 Llama/DeciLM forward of one sequence, written as PyTorch users write it: fused
    scaled_dot_product_attention, GQA by repeat_interleave, rotate-half RoPE."""
    w, n, hd = model.w, len(ids), model.head_dim
    cos, sin = rope[0][:n], rope[1][:n]

    def norm(x, name):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + model.eps) * w[name]

    def rotate(x):
        half = hd // 2
        return x * cos + torch.cat([-x[..., half:], x[..., :half]], -1) * sin

    x = w["model.embed_tokens.weight"][torch.tensor(ids)]
    for i, block in enumerate(model.blocks):
        p = f"model.layers.{i}."
        group = block["attention"]["n_heads_in_group"]
        kv = model.heads // group
        h = norm(x, p + "input_layernorm.weight")
        q = (h @ w[p + "self_attn.q_proj.weight"].T).view(n, model.heads, hd).transpose(0, 1)
        k = (h @ w[p + "self_attn.k_proj.weight"].T).view(n, kv, hd).transpose(0, 1)
        v = (h @ w[p + "self_attn.v_proj.weight"].T).view(n, kv, hd).transpose(0, 1)
        q, k = rotate(q), rotate(k)
        k, v = k.repeat_interleave(group, 0), v.repeat_interleave(group, 0)
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + a.transpose(0, 1).reshape(n, -1) @ w[p + "self_attn.o_proj.weight"].T
        h = norm(x, p + "post_attention_layernorm.weight")
        g = h @ w[p + "mlp.gate_proj.weight"].T
        u = h @ w[p + "mlp.up_proj.weight"].T
        x = x + (F.silu(g) * u) @ w[p + "mlp.down_proj.weight"].T
    x = norm(x, "model.norm.weight")
    head = w["model.embed_tokens.weight" if model.tied else "lm_head.weight"]
    return x @ head.T


def rope_tables(model, length):
    half = model.head_dim // 2
    inv = model.theta ** (-torch.arange(0, half, dtype=torch.float64) * 2 / model.head_dim)
    angles = torch.arange(length, dtype=torch.float64)[:, None] * inv[None, :]
    cos = torch.cat([angles.cos(), angles.cos()], -1).to(torch.float32)
    sin = torch.cat([angles.sin(), angles.sin()], -1).to(torch.float32)
    return cos, sin


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
    rope = rope_tables(model, a.seq_len)
    times = []
    for _ in range(a.steps):
        ids = torch.randint(0, vocab, (a.batch, a.seq_len + 1))
        start = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = 0
        for row in ids.tolist():
            logits = forward(model, row[:-1], rope)
            loss = loss + torch.nn.functional.cross_entropy(logits, torch.tensor(row[1:]),
                                                            reduction="sum")
        loss = loss / (a.batch * a.seq_len)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params.values(), 1.0)
        opt.step()
        times.append(time.perf_counter() - start)
    steady = sorted(times[1:] if len(times) > 1 else times)
    # The median step: a shared machine's slow moments move it less than the mean.
    median = (steady[(len(steady) - 1) // 2] + steady[len(steady) // 2]) / 2
    print(json.dumps({"seconds_per_step": median, "steps": len(steady),
                      "tokens_per_step": a.batch * a.seq_len, "torch": torch.__version__,
                      "parameters": sum(t.numel() for t in params.values()),
                      "threads": torch.get_num_threads()}))


if __name__ == "__main__":
    main()
