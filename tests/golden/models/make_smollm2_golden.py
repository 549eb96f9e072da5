#!/usr/bin/env python3
"""Golden outputs of the real default model (SmolLM2-135M-Instruct, Q4_1 GGUF) from an
independent implementation: transformers' Llama, loaded from the same GGUF file and dequantised
to f32 (gguf.quants, the same arithmetic as Tessera's loader).

  tests/golden/models/setup-env.sh     # once: the pinned venv, prints its python
  ~/.cache/tessera/golden-venv/bin/python tests/golden/models/make_smollm2_golden.py [--gguf PATH]

Writes tests/golden/models/smollm2_golden.json; tests/unit/test_golden_smollm2.cpp compares
Tessera with it. For each prompt it records
  text, ids              the prompt and its token ids (the Hugging Face tokenizer transformers
                         builds from the GGUF metadata; no BOS: the GGUF says add_bos_token false)
  ids_tokenizer_json     only where the cross-check tokenizer disagrees (see below)
  greedy                 exactly 32 greedy tokens (argmax, no penalty, no stop on EOS)
  margins                top-1 minus top-2 logit at each of the 32 steps (near-ties show here)
  top5                   ids and logits of the 5 largest logits at steps 0..8: step 0 is the
                         last prompt position, step k the position of generated token k
Logits are rounded to 5 significant digits.

Cross-check: the ids are compared with tokenizers.Tokenizer on the tokenizer.json that
tests/golden/tokenizer/make_golden.py rebuilds from the same GGUF metadata (the one Tessera's
tokenizer tests are checked against), when that file is in the cache.
"""

import argparse
import hashlib
import json
import os
import sys
import time
from importlib.metadata import version
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

HERE = Path(__file__).resolve().parent
CACHE = Path(os.environ.get("TESSERA_CACHE", Path.home() / ".cache" / "tessera"))
DEFAULT_GGUF = CACHE / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
EXPECTED_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
NEW_TOKENS = 32
TOP5_STEPS = 9  # last prompt position + the first 8 generated positions

LONG_PASSAGE = (
    "The lighthouse keeper climbed the spiral stairs every evening at dusk, carrying a small "
    "brass lamp and a notebook bound in green leather. For thirty-one years he had written "
    "down the same things: the direction of the wind, the colour of the sea, the number of "
    "ships that passed before midnight, and anything unusual he noticed along the rocky shore. "
    "Most nights were quiet. A fishing boat would drift past, its lanterns swaying, or a cargo "
    "ship would slide along the horizon like a slow, bright city. In winter the storms came "
    "from the north and the waves broke so high against the cliffs that the salt spray "
    "reached the windows of the lantern room. On those nights he did not sleep at all. He sat "
    "beside the great lens, listening to the glass hum as it turned, and he wrote until the "
    "pages were full. When the village school asked him what he had learned from all those "
    "years of watching, he thought for a long time before he answered. He said that"
)

# (name, kind, content): kind "chat" is one user message through the model's chat template.
PROMPTS = [
    ("chat_capital_of_france", "chat", "What is the capital of France?"),
    ("chat_haiku", "chat", "Write a haiku about autumn leaves."),
    ("prose", "text", "The history of the printing press begins in the fifteenth century, when"),
    ("code", "text",
     "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n    if n < 2:\n"),
    ("number_sequence", "text", "Prime numbers: 2, 3, 5, 7, 11, 13, 17, 19, 23,"),
    ("list", "text", "Shopping list:\n1. Eggs\n2. Milk\n3. Bread\n4."),
    ("multilingual", "text",
     "Voilà : le café de la crème brûlée à Zürich. 東京は日本の首都です。北京是中国的首都，"),
    ("emoji", "text", "I love pizza 🍕 and sunny days ☀️! My favourite emoji is 😀 because"),
    ("long_passage", "text", LONG_PASSAGE),
]


def sig5(x):
    return float(f"{float(x):.5g}")


def sha256_of(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@torch.no_grad()
def greedy_with_logits(model, ids):
    """Greedy decoding with the model's KV cache; returns tokens, margins, top-5 per step."""
    out = model(torch.tensor([ids]), use_cache=True)
    past = out.past_key_values
    logits = out.logits[0, -1]
    tokens, margins, top5 = [], [], []
    for step in range(NEW_TOKENS):
        values, indices = torch.topk(logits, 5)
        if step < TOP5_STEPS:
            top5.append({"ids": [int(i) for i in indices], "logits": [sig5(v) for v in values]})
        margins.append(sig5(values[0] - values[1]))
        # torch.argmax and topk agree on the winner; argmax returns the first index of a tie.
        token = int(torch.argmax(logits))
        tokens.append(token)
        if step + 1 == NEW_TOKENS:
            break
        out = model(torch.tensor([[token]]), past_key_values=past, use_cache=True)
        past = out.past_key_values
        logits = out.logits[0, -1]
    return tokens, margins, top5


def cross_check_tokenizer():
    path = CACHE / "tokenizers" / "SmolLM2-135M-Instruct" / "tokenizer.json"
    if not path.exists():
        print(f"note: {path} is absent (tests/golden/tokenizer/make_golden.py writes it); "
              "no tokenizer cross-check", file=sys.stderr)
        return None, None
    from tokenizers import Tokenizer
    return Tokenizer.from_file(str(path)), path


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
    parser.add_argument("--gguf", default=str(DEFAULT_GGUF))
    parser.add_argument("--output", default=str(HERE / "smollm2_golden.json"))
    args = parser.parse_args()
    gguf_path = Path(args.gguf)
    digest = sha256_of(gguf_path)
    if digest != EXPECTED_SHA256:
        sys.exit(f"{gguf_path}: sha256 {digest}, expected {EXPECTED_SHA256}")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.manual_seed(0)

    start = time.time()
    tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
    model = AutoModelForCausalLM.from_pretrained(
        str(gguf_path.parent), gguf_file=gguf_path.name, dtype=torch.float32,
        attn_implementation="eager")
    model.eval()
    print(f"loaded in {time.time() - start:.0f} s", file=sys.stderr)
    check, check_path = cross_check_tokenizer()

    cases, disagreements = [], []
    for name, kind, content in PROMPTS:
        if kind == "chat":
            messages = [{"role": "user", "content": content}]
            text = tokenizer.apply_chat_template(messages, tokenize=False,
                                                 add_generation_prompt=True)
        else:
            messages, text = None, content
        ids = tokenizer(text, add_special_tokens=False).input_ids
        assert tokenizer.decode(ids) == text, name
        case = {"name": name, "kind": kind}
        if messages:
            case["messages"] = messages
        case["text"] = text
        case["ids"] = ids
        if check is not None:
            other = check.encode(text, add_special_tokens=False).ids
            if other != ids:
                case["ids_tokenizer_json"] = other
                disagreements.append(name)
        t = time.time()
        case["greedy"], case["margins"], case["top5"] = greedy_with_logits(model, ids)
        print(f"{name}: {len(ids)} prompt tokens, {time.time() - t:.1f} s, min margin "
              f"{min(case['margins'])}: {tokenizer.decode(case['greedy'])!r}", file=sys.stderr)
        cases.append(case)

    header = {
        "what": "SmolLM2-135M-Instruct Q4_1 GGUF run by transformers' LlamaForCausalLM in f32 "
                "(dequantised by the gguf package), greedy, KV cache, eager attention, CPU",
        "command": "tests/golden/models/setup-env.sh && ~/.cache/tessera/golden-venv/bin/python "
                   "tests/golden/models/make_smollm2_golden.py",
        "gguf_file": gguf_path.name,
        "gguf_sha256": digest,
        "versions": {p: version(p) for p in
                     ("torch", "transformers", "tokenizers", "gguf", "numpy", "accelerate")},
        "python": sys.version.split()[0],
        "torch_threads": torch.get_num_threads(),
        "tokenizer": "transformers AutoTokenizer.from_pretrained(gguf_file=...): the Hugging Face "
                     "tokenizer converted from the GGUF metadata; add_special_tokens=False",
        "tokenizer_cross_check": (
            "not run" if check is None else
            f"tokenizers.Tokenizer on {check_path.relative_to(CACHE)} (under TESSERA_CACHE): "
            + ("agrees on every prompt" if not disagreements
               else "disagrees on " + ", ".join(disagreements) + " (ids_tokenizer_json)")),
        "new_tokens": NEW_TOKENS,
        "top5_steps": "step 0: last prompt position; step k: position of generated token k",
        "rounding": "logits and margins to 5 significant digits",
    }
    out = Path(args.output)
    out.write_text(dump({"header": header, "cases": cases}) + "\n", encoding="utf-8")
    print(f"wrote {out} ({out.stat().st_size} bytes); tokenizer disagreements: "
          f"{disagreements or 'none'}", file=sys.stderr)


if __name__ == "__main__":
    main()
