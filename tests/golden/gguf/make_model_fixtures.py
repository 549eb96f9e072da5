#!/usr/bin/env python3
"""Writes the tiny synthetic GGUF models of the GGUF model-loading tests, and the same weights
as Hugging Face safetensors. Random weights, a few tens of kilobytes each: no real model.

Tooling only (pip install gguf numpy safetensors); the C++ tests read what this writes:

  tests/data/gguf/tiny_llama.gguf-fixture              architecture llama: 2 layers, hidden 32,
                                                       4 heads, 2 KV heads, FFN 64, tied
                                                       embeddings, a byte-level BPE tokenizer
                                                       (gpt2) and a ChatML chat template
  tests/data/gguf/tiny_llama_hf.safetensors-fixture    its weights under Hugging Face names
  tests/data/gguf/tiny_deci.gguf-fixture               architecture deci: 4 layers built
                                                       differently (see DECI_LAYERS), untied,
                                                       no tokenizer
  tests/data/gguf/tiny_deci_hf.safetensors-fixture     its weights under Hugging Face names

GGUF files converted from Hugging Face Llama checkpoints store the rows of attn_q and attn_k
reordered for a RoPE that rotates neighbouring pairs: within each head, Hugging Face row
t * head_dim/2 + j (t in {0, 1}) is stored at row 2 * j + t. The GGUF fixtures are written in
that order, the safetensors files in Hugging Face's, so a loader that forgets to undo the
reordering gives different logits.

Weights that GGUF quantises (Q8_0, Q4_0) are stored in the safetensors file as the f32 values
gguf.quants.dequantize gives back, so both files describe exactly the same model.

Run from anywhere: python3 tests/golden/gguf/make_model_fixtures.py [--seed N]
"""

import argparse
from pathlib import Path

import numpy as np
import gguf
from gguf import GGMLQuantizationType as Q
from safetensors.numpy import save_file

ROOT = Path(__file__).resolve().parents[3]
DATA = ROOT / "tests" / "data" / "gguf"

HIDDEN = 32
HEADS = 4
HEAD_DIM = HIDDEN // HEADS
CONTEXT = 256

# deci layers: (query heads, KV heads, FFN size). 0 heads and 0 KV heads: no attention;
# heads but 0 KV heads: the linear replacement; FFN size 0: no FFN.
DECI_LAYERS = [(HEADS, 2, 64), (HEADS, 0, 96), (0, 0, 64), (HEADS, 1, 0)]

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
MERGES = ["h e", "l l", "o Ġ", "Ġ w", "Ġw o", "r l", "he ll", "hell o", "Ġ P", "a r", "i s"]
CHAT_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a tiny test model.<|im_end|>\\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")


def byte_alphabet():
    """The GPT-2 byte-level alphabet: the character each byte is written as in a vocabulary."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAC + 1)) + \
        list(range(0xAE, 0xFF + 1))
    chars = {}
    extra = 0
    for byte in range(256):
        if byte in printable:
            chars[byte] = chr(byte)
        else:
            chars[byte] = chr(256 + extra)
            extra += 1
    return [chars[b] for b in range(256)]


def vocabulary():
    tokens = SPECIAL_TOKENS + byte_alphabet()
    for merge in MERGES:
        left, right = merge.split(" ")
        if left + right not in tokens:
            tokens.append(left + right)
    types = [3] * len(SPECIAL_TOKENS) + [1] * (len(tokens) - len(SPECIAL_TOKENS))
    return tokens, types


def to_gguf_rope_order(w, n_heads):
    """Hugging Face rows -> the GGUF order (pairs of each head's two halves interleaved)."""
    rows, cols = w.shape
    head_dim = rows // n_heads
    return w.reshape(n_heads, 2, head_dim // 2, cols).transpose(0, 2, 1, 3).reshape(rows, cols)


class Model:
    """Random weights kept twice: as GGUF tensors (name, array, ggml type) and under HF names."""

    def __init__(self, rng):
        self.rng = rng
        self.gguf = []  # (gguf name, data for GGUFWriter, raw ggml type or None)
        self.hf = {}

    def linear(self, rows, cols):
        return (self.rng.standard_normal((rows, cols)) / np.sqrt(cols)).astype(np.float32)

    def add(self, gguf_name, hf_name, w, qtype=Q.F32, rope_heads=0):
        hf_w = w
        if qtype in (Q.F32, Q.F16):
            stored = w.astype(np.float16) if qtype == Q.F16 else w
            hf_w = stored
            raw = None
        else:
            stored = gguf.quants.quantize(w, qtype)
            hf_w = gguf.quants.dequantize(stored, qtype).astype(np.float32).reshape(w.shape)
            raw = qtype
        if rope_heads:
            assert qtype == Q.F32
            stored = to_gguf_rope_order(stored, rope_heads)
        self.gguf.append((gguf_name, np.ascontiguousarray(stored), raw))
        self.hf[hf_name] = np.ascontiguousarray(hf_w)

    def norm(self, gguf_name, hf_name):
        w = (1.0 + 0.1 * self.rng.standard_normal(HIDDEN)).astype(np.float32)
        self.add(gguf_name, hf_name, w)

    def write(self, writer, safetensors_path):
        for name, data, raw in self.gguf:
            if raw is None:
                writer.add_tensor(name, data)
            else:
                writer.add_tensor(name, data, raw_dtype=raw)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        save_file(self.hf, str(safetensors_path), metadata={"format": "pt"})


def add_attention(model, layer, kv_heads):
    blk, hf = f"blk.{layer}.", f"model.layers.{layer}."
    model.norm(blk + "attn_norm.weight", hf + "input_layernorm.weight")
    q = model.linear(HEADS * HEAD_DIM, HIDDEN)
    k = model.linear(kv_heads * HEAD_DIM, HIDDEN)
    model.add(blk + "attn_q.weight", hf + "self_attn.q_proj.weight", q, rope_heads=HEADS)
    model.add(blk + "attn_k.weight", hf + "self_attn.k_proj.weight", k, rope_heads=kv_heads)
    model.add(blk + "attn_v.weight", hf + "self_attn.v_proj.weight",
              model.linear(kv_heads * HEAD_DIM, HIDDEN))
    model.add(blk + "attn_output.weight", hf + "self_attn.o_proj.weight",
              model.linear(HIDDEN, HEADS * HEAD_DIM), Q.Q8_0)


def add_ffn(model, layer, size):
    blk, hf = f"blk.{layer}.", f"model.layers.{layer}."
    model.norm(blk + "ffn_norm.weight", hf + "post_attention_layernorm.weight")
    model.add(blk + "ffn_gate.weight", hf + "mlp.gate_proj.weight", model.linear(size, HIDDEN), Q.Q8_0)
    model.add(blk + "ffn_up.weight", hf + "mlp.up_proj.weight", model.linear(size, HIDDEN), Q.Q4_0)
    model.add(blk + "ffn_down.weight", hf + "mlp.down_proj.weight", model.linear(HIDDEN, size), Q.Q8_0)


def write_llama(rng):
    tokens, types = vocabulary()
    vocab = len(tokens)
    writer = gguf.GGUFWriter(str(DATA / "tiny_llama.gguf-fixture"), "llama")
    writer.add_name("tiny llama fixture")
    writer.add_block_count(2)
    writer.add_context_length(CONTEXT)
    writer.add_embedding_length(HIDDEN)
    writer.add_feed_forward_length(64)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(2)
    writer.add_rope_freq_base(50000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_rope_dimension_count(HEAD_DIM)
    writer.add_vocab_size(vocab)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("gpt2")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(MERGES)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(0)
    writer.add_add_bos_token(False)
    writer.add_chat_template(CHAT_TEMPLATE)

    model = Model(rng)
    embed = (rng.standard_normal((vocab, HIDDEN)) / np.sqrt(HIDDEN)).astype(np.float32)
    model.add("token_embd.weight", "model.embed_tokens.weight", embed, Q.F16)
    for layer in range(2):
        add_attention(model, layer, 2)
        add_ffn(model, layer, 64)
    model.norm("output_norm.weight", "model.norm.weight")
    model.write(writer, DATA / "tiny_llama_hf.safetensors-fixture")


def write_deci(rng):
    vocab = 64
    writer = gguf.GGUFWriter(str(DATA / "tiny_deci.gguf-fixture"), "deci")
    writer.add_name("tiny deci fixture")
    writer.add_block_count(len(DECI_LAYERS))
    writer.add_context_length(CONTEXT)
    writer.add_embedding_length(HIDDEN)
    writer.add_head_count([h for h, _, _ in DECI_LAYERS])
    writer.add_head_count_kv([kv for _, kv, _ in DECI_LAYERS])
    writer.add_feed_forward_length([f for _, _, f in DECI_LAYERS])
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_key_length(HEAD_DIM)
    writer.add_value_length(HEAD_DIM)
    writer.add_rope_dimension_count(HEAD_DIM)
    writer.add_vocab_size(vocab)

    model = Model(rng)
    embed = (rng.standard_normal((vocab, HIDDEN)) / np.sqrt(HIDDEN)).astype(np.float32)
    model.add("token_embd.weight", "model.embed_tokens.weight", embed)
    for layer, (heads, kv_heads, ffn) in enumerate(DECI_LAYERS):
        if heads and kv_heads:
            add_attention(model, layer, kv_heads)
        elif heads:  # the linear replacement is stored as attn_output
            model.norm(f"blk.{layer}.attn_norm.weight", f"model.layers.{layer}.input_layernorm.weight")
            model.add(f"blk.{layer}.attn_output.weight",
                      f"model.layers.{layer}.self_attn.linear_attn.weight", model.linear(HIDDEN, HIDDEN))
        if ffn:
            add_ffn(model, layer, ffn)
    model.norm("output_norm.weight", "model.norm.weight")
    model.add("output.weight", "lm_head.weight", model.linear(vocab, HIDDEN))
    model.write(writer, DATA / "tiny_deci_hf.safetensors-fixture")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=20250101)
    args = parser.parse_args()
    DATA.mkdir(parents=True, exist_ok=True)
    write_llama(np.random.default_rng(args.seed))
    write_deci(np.random.default_rng(args.seed + 1))
    for p in sorted(DATA.glob("tiny_*")):
        print(f"{p.relative_to(ROOT)}: {p.stat().st_size} bytes")


if __name__ == "__main__":
    main()
