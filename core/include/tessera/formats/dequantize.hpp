// ggml tensor types (as stored in GGUF files) and their dequantisation to f32.
//
// Block layouts follow the public ggml format: a type packs `block_elems` consecutive values
// of the fastest-varying dimension into `block_bytes` bytes. Every dequantiser here produces
// bit-for-bit the same floats as the scalar reference (the same float operations in the same
// order, never fused), which in turn matches the Python `gguf` package's dequantize.
#pragma once

#include <tessera/abi.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

namespace tessera {

// Type ids of ggml tensors (the `type` field of a GGUF tensor info). Only the ones whose
// layout this reader knows are listed; ids 4 and 5 (old Q4_2/Q4_3) are retired.
enum class GgmlType : uint32_t {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q4_1 = 3,
  Q5_0 = 6,
  Q5_1 = 7,
  Q8_0 = 8,
  Q8_1 = 9,
  Q2_K = 10,
  Q3_K = 11,
  Q4_K = 12,
  Q5_K = 13,
  Q6_K = 14,
  Q8_K = 15,
  IQ2_XXS = 16,
  IQ2_XS = 17,
  IQ3_XXS = 18,
  IQ1_S = 19,
  IQ4_NL = 20,
  IQ3_S = 21,
  IQ2_S = 22,
  IQ4_XS = 23,
  I8 = 24,
  I16 = 25,
  I32 = 26,
  I64 = 27,
  F64 = 28,
  IQ1_M = 29,
  BF16 = 30,
};

// Size of the super-blocks of the K-quants.
inline constexpr int64_t kQK_K = 256;

struct GgmlTypeInfo {
  const char* name;     // as ggml spells it, e.g. "Q4_K"
  int64_t block_elems;  // values per block (1 for plain types)
  size_t block_bytes;   // bytes per block
  bool dequantizable;   // dequantize_to_f32 supports it
};

// The layout of a type id, or nullptr when the id is unknown.
const GgmlTypeInfo* ggml_type_info(uint32_t type);

// "Q4_K", or "type 123" for an unknown id.
std::string ggml_type_name(uint32_t type);

// Bytes taken by `n` values of `type`, or nullopt when the type is unknown, `n` is negative,
// not a multiple of the block size, or the size overflows.
std::optional<uint64_t> ggml_bytes_for(uint32_t type, int64_t n);

// Dequantises `n` values (a multiple of the type's block size) of `type` from `src` to `dst`.
// Supported: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K, Q5_K, Q6_K. Uses AVX2 where compiled in.
// Throws tessera::ModelError for an unsupported type or a bad count.
void dequantize_to_f32(uint32_t type, const void* src, float* dst, int64_t n);

// The plain scalar loops, one value at a time: the reference the fast path is tested against.
void dequantize_to_f32_reference(uint32_t type, const void* src, float* dst, int64_t n);

// The ts_dtype a ggml type runs as without conversion (F32, F16, BF16 and the quantised types
// of ABI 2.3), or nullopt.
std::optional<ts_dtype> ts_dtype_of(uint32_t type);
// The ggml type id of a ts_dtype, or nullopt for i32, i64, u8.
std::optional<uint32_t> ggml_type_of(ts_dtype dtype);

}  // namespace tessera
