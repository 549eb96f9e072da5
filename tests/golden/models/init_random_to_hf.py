#!/usr/bin/env python3
"""Stand-in for `tessera convert MANIFEST DIR --to hf` on a heterogeneous model: turns the
output of `tessera init-random --manifest M -o SRC` (manifest.toml + model.safetensors, tensors
already under Hugging Face names) into a DeciLM folder (config.json with block_configs + the
same model.safetensors), with the config written here from the manifest.

  python3 tests/golden/models/init_random_to_hf.py SRC DST

Only for making the DeciLM golden when the real converter is not at hand; make_decilm_golden.py
records which of the two made the folder it read. Handles what decilm_hetero.toml uses: gqa
(kv_heads), linear, noop attention; swiglu (intermediate_size), linear, noop FFN.
"""

import json
import shutil
import sys
import tomllib
from pathlib import Path


def ffn_width(ffn_mult, hidden):
    width = int(2 * round(ffn_mult, 6) * hidden / 3)
    return (width + 255) // 256 * 256


def ffn_mult_for(width, hidden):
    # The first multiplier on a 1/1000 grid whose DeciLM width is exactly `width`.
    for k in range(1, 1_000_000):
        if ffn_width(k / 1000, hidden) == width:
            return k / 1000
        if ffn_width(k / 1000, hidden) > width:
            break
    sys.exit(f"no ffn_mult gives width {width} at hidden {hidden} (not a multiple of 256?)")


def layers_of(manifest):
    n = manifest["model"]["num_layers"]
    out = [None] * n
    for entry in manifest["layers"]:
        r = str(entry["range"])
        first, _, last = r.partition("-")
        for i in range(int(first), int(last or first) + 1):
            out[i] = entry
    assert all(out), "every layer must be listed"
    return out


def block_configs(manifest):
    model = manifest["model"]
    hidden, heads = model["hidden_size"], model["num_heads"]
    configs = []
    for entry in layers_of(manifest):
        attn = entry.get("attention", {"kind": "gqa"})
        ffn = entry.get("ffn", {"kind": "swiglu"})
        a = {"no_op": False, "replace_with_linear": False, "n_heads_in_group": None,
             "window_length": None, "num_sink_tokens": None, "sparsify": None}
        if attn["kind"] == "noop":
            a["no_op"] = True
        elif attn["kind"] == "linear":
            a["replace_with_linear"] = True
        else:
            a["n_heads_in_group"] = heads // attn.get("kv_heads", model["num_kv_heads"])
        f = {"no_op": False, "replace_with_linear": False, "ffn_mult": None, "sparsify": None}
        if ffn["kind"] == "noop":
            f["no_op"] = True
        elif ffn["kind"] == "linear":
            f["replace_with_linear"] = True
        else:
            f["ffn_mult"] = ffn_mult_for(ffn.get("intermediate_size", model["intermediate_size"]),
                                         hidden)
        configs.append({"attention": a, "ffn": f})
    return configs


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    src, dst = Path(sys.argv[1]), Path(sys.argv[2])
    manifest = tomllib.loads((src / "manifest.toml").read_text())
    model = manifest["model"]
    assert model["hidden_size"] == model["num_heads"] * model.get(
        "head_dim", model["hidden_size"] // model["num_heads"]), "DeciLM has no head_dim key"
    config = {
        "architectures": ["DeciLMForCausalLM"],
        "model_type": "nemotron-nas",
        "hidden_size": model["hidden_size"],
        "num_attention_heads": model["num_heads"],
        "num_hidden_layers": model["num_layers"],
        "vocab_size": model["vocab_size"],
        "max_position_embeddings": model.get("max_seq_len", 2048),
        "rms_norm_eps": model.get("rms_norm_eps", 1e-5),
        "rope_theta": model.get("rope_theta", 10000.0),
        "rope_scaling": None,
        "hidden_act": "silu",
        "tie_word_embeddings": model.get("tie_embeddings", False),
        "bos_token_id": model.get("bos_token_id"),
        "eos_token_id": model.get("eos_token_id"),
        "torch_dtype": "float32",
        "block_configs": block_configs(manifest),
    }
    dst.mkdir(parents=True, exist_ok=True)
    (dst / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    shutil.copyfile(src / "model.safetensors", dst / "model.safetensors")
    print(f"wrote {dst}/config.json and model.safetensors")


if __name__ == "__main__":
    main()
