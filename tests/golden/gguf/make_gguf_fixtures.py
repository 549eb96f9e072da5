#!/usr/bin/env python3
"""Writes the small GGUF fixtures of the GGUF reader tests, and their expected values.

Tooling only (pip install gguf numpy); the C++ tests read what this writes:

  tests/data/gguf/quants.gguf-fixture            one small tensor per ggml type the reader dequantises
                                         (plus a Q5_0 one it must refuse)
  tests/data/gguf/quants.expected.f32    gguf.quants.dequantize of each tensor, f32 LE, in order
  tests/data/gguf/quants.expected.json   name -> type, shape (ggml order), first float, count
  tests/data/gguf/metadata.gguf-fixture          every metadata value type, nested arrays, alignment 64
  tests/data/gguf/metadata_v2.gguf-fixture       the same bytes with version 2 (v2 and v3 share a layout)
  tests/data/gguf/tiny_types.gguf-fixture        one block of each type, under 2 KB: a fuzzing seed
  tests/golden/gguf/smollm2_q4_1.json    a few dequantised values of the real SmolLM2 file,
                                         written only when that file is present

Q8_0, Q4_0 and Q4_1 data are quantised by gguf.quants.quantize from random floats. The Python
package cannot quantise the K-quants, so their blocks are random bytes with finite f16 scales
(normal and a few subnormal) and the expectation is gguf.quants.dequantize of those same bytes.

Run from anywhere: python3 tests/golden/gguf/make_gguf_fixtures.py [--seed N]
"""

import argparse
import json
import os
import struct
import sys
from pathlib import Path

import numpy as np
import gguf
from gguf import GGMLQuantizationType as Q

ROOT = Path(__file__).resolve().parents[3]
DATA = ROOT / "tests" / "data" / "gguf"
GOLDEN = ROOT / "tests" / "golden" / "gguf"
SMOLLM2 = Path(os.path.expanduser("~/.cache/tessera/models/SmolLM2-135M-Instruct.Q4_1.gguf"))


def random_f16_scales(rng, n, subnormal_every=0):
    """n finite f16 values as raw uint16: mostly normal, optionally some subnormal."""
    vals = (rng.uniform(0.001, 0.1, n) * rng.choice([-1.0, 1.0], n)).astype(np.float16)
    raw = vals.view(np.uint16).copy()
    if subnormal_every:
        raw[::subnormal_every] = rng.integers(1, 0x3FF, len(raw[::subnormal_every]), dtype=np.uint16)
    return raw


def kquant_blocks(rng, qtype, n_blocks):
    block_elems, block_bytes = gguf.GGML_QUANT_SIZES[qtype]
    blocks = rng.integers(0, 256, (n_blocks, block_bytes), dtype=np.uint8)
    if qtype in (Q.Q4_K, Q.Q5_K):  # f16 d and dmin lead the block
        for field in (0, 2):
            blocks[:, field:field + 2] = random_f16_scales(rng, n_blocks, 3).view(np.uint8).reshape(-1, 2)
    elif qtype == Q.Q6_K:  # f16 d ends the block
        blocks[:, -2:] = random_f16_scales(rng, n_blocks, 3).view(np.uint8).reshape(-1, 2)
    return blocks


def write_quants(rng):
    tensors = []  # (name, ggml type, ggml shape ne, bytes as uint8 array with rows)

    def add_float(name, qtype, rows, cols):
        x = rng.standard_normal((rows, cols)).astype(np.float32)
        x[0, 0] = 0.0
        if qtype == Q.F32:
            data = x
        elif qtype == Q.F16:
            data = x.astype(np.float16)
        else:
            data = gguf.quants.quantize(x, qtype)
        tensors.append((name, qtype, [cols, rows], data))

    add_float("f32", Q.F32, 3, 40)
    add_float("f16", Q.F16, 3, 40)
    add_float("bf16", Q.BF16, 3, 40)
    add_float("q8_0", Q.Q8_0, 3, 64)
    add_float("q4_0", Q.Q4_0, 3, 64)
    add_float("q4_1", Q.Q4_1, 3, 64)
    for name, qtype in (("q4_k", Q.Q4_K), ("q5_k", Q.Q5_K), ("q6_k", Q.Q6_K)):
        rows, cols = 2, 512
        blocks = kquant_blocks(rng, qtype, rows * cols // 256).reshape(rows, -1)
        tensors.append((name, qtype, [cols, rows], blocks))
    add_float("q5_0_unsupported", Q.Q5_0, 1, 32)

    writer = gguf.GGUFWriter(str(DATA / "quants.gguf-fixture"), "test")
    writer.add_string("general.name", "quant fixtures")
    for name, qtype, ne, data in tensors:
        if qtype in (Q.F32, Q.F16):
            writer.add_tensor(name, data)
        else:
            writer.add_tensor(name, data.view(np.uint8), raw_dtype=qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()

    expected = {}
    floats = []
    offset = 0
    for name, qtype, ne, data in tensors:
        if qtype == Q.Q5_0:
            continue
        if qtype in (Q.F32, Q.F16):
            values = data.astype(np.float32)
        else:
            values = gguf.quants.dequantize(data.view(np.uint8), qtype)
        values = np.ascontiguousarray(values, dtype=np.float32).reshape(-1)
        expected[name] = {"type": qtype.name, "ne": ne, "offset": offset, "count": int(values.size)}
        floats.append(values)
        offset += values.size
    np.concatenate(floats).astype("<f4").tofile(DATA / "quants.expected.f32")
    (DATA / "quants.expected.json").write_text(json.dumps(expected, indent=1) + "\n")


def write_tiny_types(rng):
    writer = gguf.GGUFWriter(str(DATA / "tiny_types.gguf-fixture"), "test")
    writer.add_tensor("f32", rng.standard_normal(8).astype(np.float32))
    writer.add_tensor("f16", rng.standard_normal(8).astype(np.float16))
    writer.add_tensor("bf16", gguf.quants.quantize(rng.standard_normal((1, 8)).astype(np.float32), Q.BF16),
                      raw_dtype=Q.BF16)
    for qtype in (Q.Q8_0, Q.Q4_0, Q.Q4_1, Q.Q5_0):
        x = rng.standard_normal((1, 32)).astype(np.float32)
        writer.add_tensor(qtype.name.lower(), gguf.quants.quantize(x, qtype), raw_dtype=qtype)
    for qtype in (Q.Q4_K, Q.Q5_K, Q.Q6_K):
        writer.add_tensor(qtype.name.lower(), kquant_blocks(rng, qtype, 1), raw_dtype=qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def write_metadata():
    path = DATA / "metadata.gguf-fixture"
    writer = gguf.GGUFWriter(str(path), "test")
    writer.add_custom_alignment(64)
    writer.add_uint8("test.u8", 200)
    writer.add_int8("test.i8", -100)
    writer.add_uint16("test.u16", 60000)
    writer.add_int16("test.i16", -30000)
    writer.add_uint32("test.u32", 4000000000)
    writer.add_int32("test.i32", -2000000000)
    writer.add_float32("test.f32", 3.5)
    writer.add_bool("test.bool", True)
    writer.add_string("test.string", "h\u00e9llo w\u00f6rld")
    writer.add_uint64("test.u64", 2**63 + 5)
    writer.add_int64("test.i64", -(2**62))
    writer.add_float64("test.f64", 3.141592653589793)
    writer.add_array("test.array_i32", [1, -2, 3])
    writer.add_array("test.array_f32", [0.5, 1.5])
    writer.add_array("test.array_str", ["a", "bc", ""])
    writer.add_key_value("test.array_u8", [7, 8, 9, 10], gguf.GGUFValueType.ARRAY, gguf.GGUFValueType.UINT8)
    writer.add_array("test.array_nested", [[1, 2], [3], ["x", "yz"]])
    writer.add_tensor("a", np.arange(5, dtype=np.float32))
    writer.add_tensor("b", np.arange(6, dtype=np.float32).reshape(2, 3))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()

    data = bytearray(path.read_bytes())
    assert data[:4] == b"GGUF" and struct.unpack_from("<I", data, 4)[0] == 3
    struct.pack_into("<I", data, 4, 2)
    (DATA / "metadata_v2.gguf-fixture").write_bytes(bytes(data))


def write_smollm2_golden():
    if not SMOLLM2.exists():
        print(f"note: {SMOLLM2} is absent; smollm2_q4_1.json not refreshed", file=sys.stderr)
        return
    reader = gguf.GGUFReader(str(SMOLLM2))
    golden = {"file": SMOLLM2.name, "tensor_count": len(reader.tensors), "tensors": {}}
    for name, rows in (("token_embd.weight", [0, 1, 49151]), ("blk.0.ffn_down.weight", [0, 575]),
                       ("blk.29.attn_q.weight", [0]), ("output_norm.weight", [0])):
        t = next(t for t in reader.tensors if t.name == name)
        values = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32)
        values = values.reshape(-1, int(t.shape[0]))
        golden["tensors"][name] = {
            "type": t.tensor_type.name,
            "ne": [int(d) for d in t.shape],
            "rows": {str(r): {"first": [float(v) for v in values[r, :16]],
                              "sum": float(values[r].astype(np.float64).sum())} for r in rows},
        }
    (GOLDEN / "smollm2_q4_1.json").write_text(json.dumps(golden, indent=1) + "\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=20240611)
    args = parser.parse_args()
    DATA.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    write_quants(rng)
    write_metadata()
    write_tiny_types(np.random.default_rng(args.seed + 1))
    write_smollm2_golden()
    for p in sorted(list(DATA.iterdir()) + list(GOLDEN.glob("*.json"))):
        print(f"{p.relative_to(ROOT)}: {p.stat().st_size} bytes")


if __name__ == "__main__":
    main()
