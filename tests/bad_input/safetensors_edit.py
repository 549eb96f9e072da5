#!/usr/bin/env python3
"""Writes a copy of a safetensors file that is wrong in exactly one way (the bad-input suite).

    safetensors_edit.py SRC DST MODE [ARG]

MODE:
  extra NAME      add an f32 tensor NAME of 2 elements that nothing reads
  overlap         make the second tensor's byte range start inside the first's
  past_end        make the last tensor's range run past the end of the file
  dtype NAME      store tensor NAME's bytes as I32 instead of F32
  shape NAME      halve tensor NAME's first dimension (and its byte range)
  drop NAME       leave tensor NAME out
  header_length   claim a header of 2**40 bytes
Standard library only.
"""
import json
import struct
import sys


def main() -> None:
    src, dst, mode = sys.argv[1], sys.argv[2], sys.argv[3]
    arg = sys.argv[4] if len(sys.argv) > 4 else None
    blob = open(src, "rb").read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8 : 8 + n])
    data = blob[8 + n :]
    meta = header.pop("__metadata__", None)
    by_offset = sorted(header, key=lambda k: header[k]["data_offsets"][0])
    if mode == "extra":
        header[arg] = {"dtype": "F32", "shape": [2], "data_offsets": [len(data), len(data) + 8]}
        data += b"\0" * 8
    elif mode == "overlap":
        first, second = by_offset[0], by_offset[1]
        begin, end = header[first]["data_offsets"]
        size = header[second]["data_offsets"][1] - header[second]["data_offsets"][0]
        start = begin + (end - begin) // 2
        header[second]["data_offsets"] = [start, start + size]
    elif mode == "past_end":
        last = by_offset[-1]
        begin, end = header[last]["data_offsets"]
        header[last]["data_offsets"] = [begin, end + 4096]
    elif mode == "dtype":
        header[arg]["dtype"] = "I32"
    elif mode == "shape":
        t = header[arg]
        t["shape"][0] //= 2
        count = 1
        for d in t["shape"]:
            count *= d
        t["data_offsets"][1] = t["data_offsets"][0] + 4 * count
    elif mode == "drop":
        del header[arg]
    elif mode != "header_length":
        sys.exit(f"unknown mode {mode}")
    if meta is not None:
        header["__metadata__"] = meta
    text = json.dumps(header).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    length = 1 << 40 if mode == "header_length" else len(text)
    with open(dst, "wb") as out:
        out.write(struct.pack("<Q", length) + text + data)


if __name__ == "__main__":
    main()
