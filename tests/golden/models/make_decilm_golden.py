#!/usr/bin/env python3
"""Golden outputs of a small heterogeneous DeciLM (Puzzle child) model, computed by an
independent PyTorch implementation of the DeciLM forward pass written from the format's public
description (config.json with block_configs; Llama semantics otherwise). transformers has no
DeciLM class of its own, so this file is the reference.

  tessera convert tests/data/models/decilm_hetero.toml /tmp/decilm-hf --to hf
  ~/.cache/tessera/golden-venv/bin/python tests/golden/models/make_decilm_golden.py \
      --hf /tmp/decilm-hf

(--made-by init-random records the other way to make the folder, without the converter:
FOLDER_MAKERS below.)

(tests/golden/models/setup-env.sh makes the venv.) Writes
tests/golden/models/decilm_hetero_golden.json, which tests/unit/test_golden_decilm.cpp compares
Tessera with, both on the manifest (random weights regenerated from the seed) and on the same
model read back from an exported Hugging Face folder.

The semantics implemented, per layer i and block_configs[i]:
  attention.no_op                the attention sub-block and its input_layernorm are skipped
  attention.replace_with_linear  x += linear_attn(rmsnorm(x))        (hidden -> hidden, no bias)
  attention.n_heads_in_group     GQA with num_attention_heads / n_heads_in_group KV heads,
                                 rotate-half RoPE, causal softmax(q k^T / sqrt(head_dim)) v
  ffn.no_op                      the FFN sub-block and its post_attention_layernorm are skipped
  ffn.replace_with_linear        x += linear_mlp(rmsnorm(x))
  ffn.ffn_mult                   SwiGLU down(silu(gate(h)) * up(h)), width
                                 int(2 * ffn_mult * hidden / 3) rounded up to a multiple of 256
RMSNorm is Llama's: x / sqrt(mean(x^2) + eps) * w. Final norm, then lm_head (or the embedding
when tie_word_embeddings). Everything runs in float64 (weights read as stored, then widened),
so the golden values carry no float32 rounding of their own; the whole sequence is recomputed
at every step (no cache), which keeps this implementation as plain as possible.
"""

import argparse
import json
import math
import sys
from importlib.metadata import version
from pathlib import Path

import torch
from safetensors.torch import load_file

HERE = Path(__file__).resolve().parent
NEW_TOKENS = 32
TOP5_STEPS = 9  # last prompt position + the first 8 generated positions

# How the Hugging Face folder DIR was made from the committed manifest (its seed is 20250611).
FOLDER_MAKERS = {
    "convert": "tessera convert tests/data/models/decilm_hetero.toml DIR --to hf",
    "init-random": "tessera init-random --manifest tests/data/models/decilm_hetero.toml -o SRC "
                   "--seed 20250611 && python3 tests/golden/models/init_random_to_hf.py SRC DIR",
}

# Token-id prompts (vocabulary 256, no tokenizer): one token, short, medium, longer.
PROMPTS = [
    ("single_token", [1]),
    ("short", [1, 17, 42, 99, 200, 3, 250]),
    ("repeating", [1] + [5, 6, 7, 8] * 4),
    ("long", [1] + [(37 * i + 11) % 256 for i in range(47)]),
]


def sig7(x):
    # 7 significant digits: the reference is float64, so the file's rounding (<= 5e-7 relative)
    # stays well below Tessera's own f32 error and the test's tolerance can be tight.
    return float(f"{float(x):.7g}")


def ffn_width(ffn_mult, hidden):
    # DeciLM rounds ffn_mult to 6 decimals first, then rounds the width up to 256.
    width = int(2 * round(ffn_mult, 6) * hidden / 3)
    return (width + 255) // 256 * 256


class DeciLM:
    def __init__(self, folder):
        folder = Path(folder)
        self.config = json.loads((folder / "config.json").read_text())
        c = self.config
        assert c["architectures"] == ["DeciLMForCausalLM"], c["architectures"]
        self.hidden = c["hidden_size"]
        self.heads = c["num_attention_heads"]
        self.head_dim = c.get("head_dim") or self.hidden // self.heads
        self.eps = c["rms_norm_eps"]
        self.theta = c.get("rope_theta", 10000.0)
        assert c.get("rope_scaling") in (None, {}), "RoPE scaling is not part of this reference"
        self.tied = c.get("tie_word_embeddings", False)
        self.blocks = c["block_configs"]
        assert len(self.blocks) == c["num_hidden_layers"]
        self.w = {}
        index = folder / "model.safetensors.index.json"
        files = (sorted(set(json.loads(index.read_text())["weight_map"].values()))
                 if index.exists() else ["model.safetensors"])
        for name in files:
            for key, t in load_file(str(folder / name)).items():
                self.w[key] = t.to(torch.float64)

    def rmsnorm(self, x, name):
        return x / torch.sqrt((x * x).mean(-1, keepdim=True) + self.eps) * self.w[name]

    def rope(self, x, positions):
        # x: [heads, n, head_dim]; rotate-half pairs element j with j + head_dim / 2.
        half = self.head_dim // 2
        inv_freq = self.theta ** (-torch.arange(0, half, dtype=torch.float64) * 2 / self.head_dim)
        angles = positions.to(torch.float64)[:, None] * inv_freq[None, :]
        cos = torch.cat([angles.cos(), angles.cos()], -1)
        sin = torch.cat([angles.sin(), angles.sin()], -1)
        rotated = torch.cat([-x[..., half:], x[..., :half]], -1)
        return x * cos + rotated * sin

    def attention(self, h, prefix, n_heads_in_group):
        n = h.shape[0]
        kv_heads = self.heads // n_heads_in_group
        q = (h @ self.w[prefix + "q_proj.weight"].T).view(n, self.heads, self.head_dim)
        k = (h @ self.w[prefix + "k_proj.weight"].T).view(n, kv_heads, self.head_dim)
        v = (h @ self.w[prefix + "v_proj.weight"].T).view(n, kv_heads, self.head_dim)
        positions = torch.arange(n)
        q = self.rope(q.transpose(0, 1), positions)  # [heads, n, d]
        k = self.rope(k.transpose(0, 1), positions)
        v = v.transpose(0, 1)
        # Query head j reads KV head j // n_heads_in_group.
        k = k.repeat_interleave(n_heads_in_group, 0)
        v = v.repeat_interleave(n_heads_in_group, 0)
        scores = q @ k.transpose(1, 2) / math.sqrt(self.head_dim)
        causal = torch.ones(n, n, dtype=torch.bool).tril()
        scores = scores.masked_fill(~causal, float("-inf"))
        out = torch.softmax(scores, -1) @ v  # [heads, n, d]
        out = out.transpose(0, 1).reshape(n, self.heads * self.head_dim)
        return out @ self.w[prefix + "o_proj.weight"].T

    def swiglu(self, h, prefix, ffn_mult):
        gate = h @ self.w[prefix + "gate_proj.weight"].T
        assert gate.shape[1] == ffn_width(ffn_mult, self.hidden), (prefix, gate.shape)
        up = h @ self.w[prefix + "up_proj.weight"].T
        return (torch.nn.functional.silu(gate) * up) @ self.w[prefix + "down_proj.weight"].T

    @torch.no_grad()
    def logits(self, ids):
        x = self.w["model.embed_tokens.weight"][torch.tensor(ids)]
        for i, block in enumerate(self.blocks):
            layer = f"model.layers.{i}."
            attn, ffn = block["attention"], block["ffn"]
            if not attn.get("no_op"):
                h = self.rmsnorm(x, layer + "input_layernorm.weight")
                if attn.get("replace_with_linear"):
                    x = x + h @ self.w[layer + "self_attn.linear_attn.weight"].T
                else:
                    for key in ("window_length", "num_sink_tokens", "sparsify"):
                        assert not attn.get(key), f"layer {i}: {key} is not in this reference"
                    x = x + self.attention(h, layer + "self_attn.", attn["n_heads_in_group"])
            if not ffn.get("no_op"):
                h = self.rmsnorm(x, layer + "post_attention_layernorm.weight")
                if ffn.get("replace_with_linear"):
                    x = x + h @ self.w[layer + "mlp.linear_mlp.weight"].T
                else:
                    assert not ffn.get("sparsify"), f"layer {i}: sparsify is not in this reference"
                    x = x + self.swiglu(h, layer + "mlp.", ffn["ffn_mult"])
        x = self.rmsnorm(x, "model.norm.weight")
        head = self.w["model.embed_tokens.weight" if self.tied else "lm_head.weight"]
        return x @ head.T


def greedy(model, prompt):
    ids = list(prompt)
    tokens, margins, top5 = [], [], []
    for step in range(NEW_TOKENS):
        logits = model.logits(ids)[-1]
        values, indices = torch.topk(logits, 5)
        if step < TOP5_STEPS:
            top5.append({"ids": [int(i) for i in indices], "logits": [sig7(v) for v in values]})
        margins.append(sig7(values[0] - values[1]))
        token = int(torch.argmax(logits))
        tokens.append(token)
        ids.append(token)
    return tokens, margins, top5


def dump(value, indent=0):
    """JSON with every list of scalars on one line: small and still readable."""
    pad, inner = " " * indent, " " * (indent + 1)
    if isinstance(value, dict):
        items = [f"{inner}{json.dumps(k)}: {dump(v, indent + 1)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(value, list) and any(isinstance(v, (dict, list)) for v in value):
        return "[\n" + ",\n".join(inner + dump(v, indent + 1) for v in value) + "\n" + pad + "]"
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hf", required=True, help="the exported Hugging Face folder")
    parser.add_argument("--made-by", choices=sorted(FOLDER_MAKERS), default="convert",
                        help="what wrote the folder (recorded in the header)")
    parser.add_argument("--manifest", default="tests/data/models/decilm_hetero.toml")
    parser.add_argument("--output", default=str(HERE / "decilm_hetero_golden.json"))
    args = parser.parse_args()
    model = DeciLM(args.hf)

    cases = []
    for name, prompt in PROMPTS:
        tokens, margins, top5 = greedy(model, prompt)
        print(f"{name}: min margin {min(margins)}, tokens {tokens}", file=sys.stderr)
        cases.append({"name": name, "ids": prompt, "greedy": tokens, "margins": margins,
                      "top5": top5})
    header = {
        "what": "independent float64 PyTorch DeciLM forward pass (this script) on the model "
                "exported from the manifest; greedy, whole sequence recomputed every step",
        "manifest": args.manifest,
        "hf_folder_made_by": FOLDER_MAKERS[args.made_by],
        "command": "~/.cache/tessera/golden-venv/bin/python "
                   f"tests/golden/models/make_decilm_golden.py --hf DIR --made-by {args.made_by}",
        "config": {k: model.config[k] for k in ("architectures", "hidden_size",
                                                "num_attention_heads", "num_hidden_layers",
                                                "vocab_size", "tie_word_embeddings")},
        "block_configs": model.blocks,
        "versions": {p: version(p) for p in ("torch", "safetensors", "numpy")},
        "new_tokens": NEW_TOKENS,
        "top5_steps": "step 0: last prompt position; step k: position of generated token k",
        "rounding": "logits and margins to 7 significant digits",
    }
    out = Path(args.output)
    out.write_text(dump({"header": header, "cases": cases}) + "\n", encoding="utf-8")
    print(f"wrote {out} ({out.stat().st_size} bytes)", file=sys.stderr)


if __name__ == "__main__":
    main()
