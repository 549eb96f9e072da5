#!/usr/bin/env python3
"""Golden gradients of the heterogeneous DeciLM model (tests/data/models/decilm_hetero.toml):
torch autograd through the independent float64 forward pass of make_decilm_golden.py, for the
language-modelling loss on one packed batch of two sequences.

  tessera convert tests/data/models/decilm_hetero.toml /tmp/decilm-hf --to hf
  ~/.cache/tessera/golden-venv/bin/python tests/golden/models/make_decilm_train_golden.py \\
      --hf /tmp/decilm-hf

Writes tests/golden/models/decilm_hetero_train_golden.json, which
tests/unit/test_golden_train.cpp compares Tessera's trainer with (the model's random weights
regenerated from the manifest's seed, in f32).

The batch: sequences are independent and causal, positions restart at 0 in each, every token
but a sequence's last predicts the next token of its sequence. The loss is the mean
cross-entropy over those targets; the gradients are d loss / d every weight the model has.
Per tensor the file keeps the gradient's L2 norm and sum, its four largest entries by
magnitude and four fixed entries (flat indices 0, n/3, 2n/3, n-1), each to 9 significant
digits.
"""

import argparse
import json
import sys
from importlib.metadata import version
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_decilm_golden import DeciLM, dump  # noqa: E402

HERE = Path(__file__).resolve().parent

# Two sequences packed into one batch (vocabulary 256).
SEQUENCES = [
    [1, 17, 42, 99, 200, 3, 250, 5, 6, 7, 8, 61, 128],
    [1] + [(37 * i + 11) % 256 for i in range(7)],
]


def sig9(x):
    return float(f"{float(x):.9g}")


def forward(model, ids):
    """The logits of one sequence, with gradients (make_decilm_golden's forward, no no_grad)."""
    w = model.w
    x = w["model.embed_tokens.weight"][torch.tensor(ids)]
    for i, block in enumerate(model.blocks):
        layer = f"model.layers.{i}."
        attn, ffn = block["attention"], block["ffn"]
        if not attn.get("no_op"):
            h = model.rmsnorm(x, layer + "input_layernorm.weight")
            if attn.get("replace_with_linear"):
                x = x + h @ w[layer + "self_attn.linear_attn.weight"].T
            else:
                x = x + model.attention(h, layer + "self_attn.", attn["n_heads_in_group"])
        if not ffn.get("no_op"):
            h = model.rmsnorm(x, layer + "post_attention_layernorm.weight")
            if ffn.get("replace_with_linear"):
                x = x + h @ w[layer + "mlp.linear_mlp.weight"].T
            else:
                x = x + model.swiglu(h, layer + "mlp.", ffn["ffn_mult"])
    x = model.rmsnorm(x, "model.norm.weight")
    head = w["model.embed_tokens.weight" if model.tied else "lm_head.weight"]
    return x @ head.T


def summary(grad):
    flat = grad.reshape(-1)
    n = flat.numel()
    top = torch.topk(flat.abs(), min(4, n)).indices.tolist()
    fixed = [0, n // 3, (2 * n) // 3, n - 1]
    picks = []
    for index in top + fixed:
        if index not in picks:
            picks.append(index)
    return {
        "shape": list(grad.shape),
        "norm": sig9(flat.norm()),
        "sum": sig9(flat.sum()),
        "samples": [[int(i), sig9(flat[i])] for i in picks],
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hf", required=True, help="the exported Hugging Face folder")
    parser.add_argument("--manifest", default="tests/data/models/decilm_hetero.toml")
    parser.add_argument("--output", default=str(HERE / "decilm_hetero_train_golden.json"))
    args = parser.parse_args()
    model = DeciLM(args.hf)
    for t in model.w.values():
        t.requires_grad_(True)

    total, count = torch.zeros((), dtype=torch.float64), 0
    for ids in SEQUENCES:
        logits = forward(model, ids)
        targets = torch.tensor(ids[1:])
        total = total + torch.nn.functional.cross_entropy(logits[:-1], targets, reduction="sum")
        count += len(ids) - 1
    loss = total / count
    loss.backward()

    grads = {name: summary(t.grad) for name, t in sorted(model.w.items()) if t.grad is not None}
    unused = sorted(name for name, t in model.w.items() if t.grad is None)
    print(f"loss {loss.item():.9g}, {len(grads)} gradients, unused {unused}", file=sys.stderr)
    header = {
        "what": "torch autograd through the float64 DeciLM forward pass of make_decilm_golden.py; "
                "mean next-token cross-entropy over one packed batch",
        "manifest": args.manifest,
        "command": "~/.cache/tessera/golden-venv/bin/python "
                   "tests/golden/models/make_decilm_train_golden.py --hf DIR",
        "versions": {p: version(p) for p in ("torch", "safetensors", "numpy")},
        "rounding": "9 significant digits",
    }
    out = Path(args.output)
    body = {"header": header, "sequences": SEQUENCES, "targets": count,
            "loss": sig9(loss.item()), "gradients": grads}
    out.write_text(dump(body) + "\n", encoding="utf-8")
    print(f"wrote {out} ({out.stat().st_size} bytes)", file=sys.stderr)


if __name__ == "__main__":
    main()
