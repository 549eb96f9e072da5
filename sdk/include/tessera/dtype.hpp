// Element types of ts_tensor and scalar conversions between them.
#pragma once

#include <tessera/abi.h>

#include <cstdint>
#include <cstring>
#include <optional>
#include <string_view>

namespace tessera {

// Bytes of one element of a plain dtype; 0 for block-quantised and unknown dtypes (see
// dtype_block_bytes).
inline size_t dtype_size(int32_t dtype) {
  switch (dtype) {
    case TS_F32:
      return 4;
    case TS_F16:
      return 2;
    case TS_BF16:
      return 2;
    case TS_I32:
      return 4;
    case TS_I64:
      return 8;
    case TS_U8:
      return 1;
    default:
      return 0;
  }
}

inline const char* dtype_name(int32_t dtype) {
  switch (dtype) {
    case TS_F32:
      return "f32";
    case TS_F16:
      return "f16";
    case TS_BF16:
      return "bf16";
    case TS_I32:
      return "i32";
    case TS_I64:
      return "i64";
    case TS_U8:
      return "u8";
    case TS_Q8_0:
      return "q8_0";
    case TS_Q4_0:
      return "q4_0";
    case TS_Q4_1:
      return "q4_1";
    case TS_Q4_K:
      return "q4_k";
    case TS_Q5_K:
      return "q5_k";
    case TS_Q6_K:
      return "q6_k";
    default:
      return "unknown";
  }
}

inline std::optional<ts_dtype> parse_dtype(std::string_view s) {
  if (s == "f32" || s == "float32") return TS_F32;
  if (s == "f16" || s == "float16") return TS_F16;
  if (s == "bf16" || s == "bfloat16") return TS_BF16;
  if (s == "i32" || s == "int32") return TS_I32;
  if (s == "i64" || s == "int64") return TS_I64;
  if (s == "u8" || s == "uint8") return TS_U8;
  if (s == "q8_0") return TS_Q8_0;
  if (s == "q4_0") return TS_Q4_0;
  if (s == "q4_1") return TS_Q4_1;
  if (s == "q4_k") return TS_Q4_K;
  if (s == "q5_k") return TS_Q5_K;
  if (s == "q6_k") return TS_Q6_K;
  return std::nullopt;
}

// (ABI 2.3) Whether `dtype` is one of the block-quantised weight dtypes.
inline bool is_quantized(int32_t dtype) {
  return dtype >= TS_Q8_0 && dtype <= TS_Q6_K;
}

// Masks of 1u << ts_dtype, as ts_weight_decl.dtypes holds them.
inline constexpr uint32_t kFloatDtypeMask = (1u << TS_F32) | (1u << TS_F16) | (1u << TS_BF16);
inline constexpr uint32_t kQuantizedDtypeMask = (1u << TS_Q8_0) | (1u << TS_Q4_0) |
                                                (1u << TS_Q4_1) | (1u << TS_Q4_K) |
                                                (1u << TS_Q5_K) | (1u << TS_Q6_K);

// Values per block: 32 or 256 for the quantised dtypes, 1 for the plain ones, 0 if unknown.
inline int64_t dtype_block_elems(int32_t dtype) {
  if (dtype == TS_Q4_K || dtype == TS_Q5_K || dtype == TS_Q6_K) return 256;
  if (is_quantized(dtype)) return 32;
  return dtype_size(dtype) > 0 ? 1 : 0;
}

// Bytes per block (the public GGUF layouts); the element size for plain dtypes.
inline size_t dtype_block_bytes(int32_t dtype) {
  switch (dtype) {
    case TS_Q8_0:
      return 34;  // f16 d, 32 x int8
    case TS_Q4_0:
      return 18;  // f16 d, 16 bytes of nibbles
    case TS_Q4_1:
      return 20;  // f16 d, f16 m, nibbles
    case TS_Q4_K:
      return 144;  // f16 d, f16 dmin, 12 bytes of 6-bit scales and mins, 128 of nibbles
    case TS_Q5_K:
      return 176;  // as Q4_K, plus 32 bytes of fifth bits
    case TS_Q6_K:
      return 210;  // 128 low nibbles, 64 of high pairs, 16 int8 scales, f16 d
    default:
      return dtype_size(dtype);
  }
}

// Bytes of `n` values of `dtype`, or 0 when the dtype is unknown or n is negative or not a
// whole number of blocks.
inline size_t dtype_bytes(int32_t dtype, int64_t n) {
  const int64_t block = dtype_block_elems(dtype);
  if (block <= 0 || n < 0 || n % block != 0) return 0;
  return static_cast<size_t>(n / block) * dtype_block_bytes(dtype);
}

inline const char* device_name(int32_t device) {
  return device == TS_DEVICE_CUDA ? "cuda" : device == TS_DEVICE_CPU ? "cpu" : "unknown";
}

inline float bf16_to_f32(uint16_t h) {
  uint32_t bits = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

// Round to nearest even; NaN stays NaN.
inline uint16_t f32_to_bf16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((bits >> 16) | 0x40);
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>(bits >> 16);
}

inline float f16_to_f32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  uint32_t bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal: normalise
      exp = 127 - 15 + 1;
      while ((mant & 0x400u) == 0) {
        mant <<= 1;
        --exp;
      }
      mant &= 0x3ffu;
      bits = sign | (exp << 23) | (mant << 13);
    }
  } else if (exp == 31) {
    bits = sign | 0x7f800000u | (mant << 13);
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

// Round to nearest even, with overflow to infinity and gradual underflow.
inline uint16_t f32_to_f16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  const uint16_t sign = static_cast<uint16_t>((bits >> 16) & 0x8000u);
  const uint32_t abs = bits & 0x7fffffffu;
  if (abs > 0x7f800000u) return static_cast<uint16_t>(sign | 0x7e00u);   // NaN
  if (abs >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // overflow -> inf
  if (abs < 0x38800000u) {  // below the smallest normal half: subnormal or zero
    if (abs < 0x33000000u) return sign;
    const uint32_t exp = abs >> 23;
    const uint32_t mant = (abs & 0x7fffffu) | 0x800000u;
    const uint32_t shift = 126 - exp;  // 14 .. 24
    uint32_t half = mant >> shift;
    const uint32_t rem = mant & ((1u << shift) - 1);
    const uint32_t mid = 1u << (shift - 1);
    if (rem > mid || (rem == mid && (half & 1u))) ++half;
    return static_cast<uint16_t>(sign | half);
  }
  uint32_t half = ((abs >> 13) - ((127 - 15) << 10));
  const uint32_t rem = abs & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (half & 1u))) ++half;
  return static_cast<uint16_t>(sign | half);
}

}  // namespace tessera
