// The block-quantised weight dtypes of ABI 2.3 (TS_Q8_0 .. TS_Q6_K), in the public GGUF block
// layouts, and the 8-bit activation blocks their dot products use. Everything here is the
// plain scalar form: the decoders the fast kernels (tessera/cpu/quant_matmul.hpp) and the
// host's dequantisation are held to, one block at a time.
//
// Exactness: each decoder does a product and then a sum, in f32, in separate statements, so
// that a translation unit built without FMA contraction (the host's GGUF reader) gets the
// same floats as the format's own reference implementation.
#pragma once

#include <tessera/abi.h>
#include <tessera/dtype.hpp>

#include <cmath>
#include <cstdint>
#include <cstring>

namespace tessera::quant {

inline constexpr int64_t kBlock = 32;        // values per block of Q8_0, Q4_0, Q4_1
inline constexpr int64_t kSuperBlock = 256;  // values per super-block of the K types

inline uint16_t load_u16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}

inline float load_f16(const uint8_t* p) {
  return f16_to_f32(load_u16(p));
}

// The 6-bit scale and min of sub-block j (0..7) of a Q4_K/Q5_K super-block: j < 4 in the low
// six bits of bytes j and j+4; j >= 4 in the nibbles of byte j+4 plus the top two bits of
// bytes j-4 and j.
inline void k_scale_min(const uint8_t* scales, int j, uint8_t& scale, uint8_t& min) {
  if (j < 4) {
    scale = scales[j] & 63;
    min = scales[j + 4] & 63;
  } else {
    scale = static_cast<uint8_t>((scales[j + 4] & 0xF) | ((scales[j - 4] >> 6) << 4));
    min = static_cast<uint8_t>((scales[j + 4] >> 4) | ((scales[j] >> 6) << 4));
  }
}

// ---- one block of weights to f32 --------------------------------------------------------

// Q4_0: f16 d, then 16 bytes; value l is (low nibble of byte l) - 8, value l+16 the high one.
inline void dequantize_block_q4_0(const uint8_t* b, float* y) {
  const float d = load_f16(b);
  const uint8_t* qs = b + 2;
  for (int l = 0; l < kBlock / 2; ++l) {
    y[l] = static_cast<float>((qs[l] & 0xF) - 8) * d;
    y[l + kBlock / 2] = static_cast<float>((qs[l] >> 4) - 8) * d;
  }
}

// Q4_1: f16 d, f16 m, then nibbles as Q4_0: value = n * d + m.
inline void dequantize_block_q4_1(const uint8_t* b, float* y) {
  const float d = load_f16(b);
  const float m = load_f16(b + 2);
  const uint8_t* qs = b + 4;
  for (int l = 0; l < kBlock / 2; ++l) {
    const float lo = static_cast<float>(qs[l] & 0xF) * d;
    const float hi = static_cast<float>(qs[l] >> 4) * d;
    y[l] = lo + m;
    y[l + kBlock / 2] = hi + m;
  }
}

// Q8_0: f16 d, then 32 int8: value = q * d.
inline void dequantize_block_q8_0(const uint8_t* b, float* y) {
  const float d = load_f16(b);
  for (int l = 0; l < kBlock; ++l) y[l] = static_cast<float>(static_cast<int8_t>(b[2 + l])) * d;
}

// The super-block Q4_K and Q5_K share: f16 d, f16 dmin, 12 bytes of 6-bit scales and mins,
// then (Q5_K only: `qh`, 32 bytes of fifth bits, bit j of qh[l] for value l of sub-block j)
// 128 bytes of nibbles in four groups of 32 bytes: low nibbles are sub-block 2g, high nibbles
// sub-block 2g+1. A value of sub-block j is (d * scale_j) * q - dmin * min_j.
inline void dequantize_k_super_block(const uint8_t* b, const uint8_t* qh, const uint8_t* qs,
                                     float* y) {
  const float d = load_f16(b);
  const float dmin = load_f16(b + 2);
  const uint8_t* scales = b + 4;
  for (int sub = 0; sub < 8; ++sub) {
    uint8_t sc, mn;
    k_scale_min(scales, sub, sc, mn);
    const float d_sub = d * static_cast<float>(sc);
    const float m_sub = dmin * static_cast<float>(mn);
    for (int l = 0; l < 32; ++l) {
      int q = (qs[32 * (sub / 2) + l] >> (4 * (sub % 2))) & 0xF;
      if (qh != nullptr) q |= ((qh[l] >> sub) & 1) << 4;
      const float scaled = d_sub * static_cast<float>(q);
      y[32 * sub + l] = scaled - m_sub;
    }
  }
}

// Q4_K: the super-block with 4-bit values (144 bytes).
inline void dequantize_block_q4_k(const uint8_t* b, float* y) {
  dequantize_k_super_block(b, nullptr, b + 16, y);
}

// Q5_K: the super-block with a fifth bit per value (176 bytes).
inline void dequantize_block_q5_k(const uint8_t* b, float* y) {
  dequantize_k_super_block(b, b + 16, b + 48, y);
}

// Q6_K: 128 bytes of low nibbles, 64 of high bit pairs, 16 int8 scales (one per 16 values),
// f16 d. Two halves of 128 values; in each, chunk c (0..3) of 32 values takes the low (c < 2)
// or high nibble of ql[64*half + 32*(c%2) + l] and bits 2c..2c+1 of qh[32*half + l]; a value
// is (d * scale) * (q - 32).
inline void dequantize_block_q6_k(const uint8_t* b, float* y) {
  const uint8_t* ql = b;
  const uint8_t* qh = b + 128;
  const auto* scales = reinterpret_cast<const int8_t*>(b + 192);
  const float d = load_f16(b + 208);
  for (int half = 0; half < 2; ++half) {
    for (int c = 0; c < 4; ++c) {
      for (int l = 0; l < 32; ++l) {
        const int low = (ql[64 * half + 32 * (c % 2) + l] >> (4 * (c / 2))) & 0xF;
        const int high = (qh[32 * half + l] >> (2 * c)) & 3;
        const int out = 128 * half + 32 * c + l;
        const float scale = d * static_cast<float>(scales[out / 16]);
        y[out] = scale * static_cast<float>((low | (high << 4)) - 32);
      }
    }
  }
}

using BlockDecoder = void (*)(const uint8_t*, float*);

// The decoder of a quantised dtype, or nullptr for any other dtype.
inline BlockDecoder block_decoder(int32_t dtype) {
  switch (dtype) {
    case TS_Q8_0:
      return dequantize_block_q8_0;
    case TS_Q4_0:
      return dequantize_block_q4_0;
    case TS_Q4_1:
      return dequantize_block_q4_1;
    case TS_Q4_K:
      return dequantize_block_q4_k;
    case TS_Q5_K:
      return dequantize_block_q5_k;
    case TS_Q6_K:
      return dequantize_block_q6_k;
    default:
      return nullptr;
  }
}

// n values (a whole number of blocks) of a quantised dtype to f32, block by block. Returns
// false for a dtype that is not quantised or a count that is not whole blocks.
inline bool dequantize_row_reference(int32_t dtype, const void* src, float* dst, int64_t n) {
  const BlockDecoder decode = block_decoder(dtype);
  const int64_t block = dtype_block_elems(dtype);
  if (decode == nullptr || n < 0 || n % block != 0) return false;
  const auto* s = static_cast<const uint8_t*>(src);
  const size_t bytes = dtype_block_bytes(dtype);
  for (int64_t i = 0; i < n / block; ++i)
    decode(s + static_cast<size_t>(i) * bytes, dst + i * block);
  return true;
}

// ---- activations ------------------------------------------------------------------------

// 32 activations as int8 for the integer dot products: x[l] ~ d * q[l], d = max|x| / 127,
// q = round-half-away(x / d); sum = the sum of q (Q4_1 and the K types subtract a minimum
// times it).
struct ActBlock {
  float d;
  int32_t sum;
  int8_t q[kBlock];
};
static_assert(sizeof(ActBlock) == 40);

// n finite activations (a multiple of 32) to n / 32 blocks. An all-zero block gets d = 0,
// q = 0; so does a block so small that 1 / d overflows (max |x| below about 3.7e-37).
inline void quantize_activations_reference(const float* x, int64_t n, ActBlock* out) {
  for (int64_t b = 0; b < n / kBlock; ++b) {
    const float* xb = x + b * kBlock;
    float amax = 0.0f;
    for (int l = 0; l < kBlock; ++l) amax = std::fmax(amax, std::fabs(xb[l]));
    float d = amax / 127.0f;
    float inv = d != 0.0f ? 1.0f / d : 0.0f;
    if (std::isinf(inv)) d = inv = 0.0f;
    ActBlock& a = out[b];
    a.d = d;
    a.sum = 0;
    for (int l = 0; l < kBlock; ++l) {
      const auto q = static_cast<int32_t>(std::lround(xb[l] * inv));
      a.q[l] = static_cast<int8_t>(q);
      a.sum += q;
    }
  }
}

// The plain dot product every fast kernel is tested against: each weight of one row
// dequantised (the decoders above), each activation d * q, the products summed in double.
// n is a whole number of the dtype's blocks (so also of activation blocks).
inline double dot_reference(int32_t dtype, const void* row, const ActBlock* x, int64_t n) {
  const BlockDecoder decode = block_decoder(dtype);
  const int64_t block = dtype_block_elems(dtype);
  if (decode == nullptr || n % block != 0) return std::nan("");
  const auto* s = static_cast<const uint8_t*>(row);
  const size_t bytes = dtype_block_bytes(dtype);
  float w[kSuperBlock];
  double total = 0;
  for (int64_t i = 0; i < n / block; ++i) {
    decode(s + static_cast<size_t>(i) * bytes, w);
    for (int64_t l = 0; l < block; ++l) {
      const ActBlock& a = x[(i * block + l) / kBlock];
      total += static_cast<double>(w[l]) * static_cast<double>(a.d) * a.q[(i * block + l) % kBlock];
    }
  }
  return total;
}

}  // namespace tessera::quant
