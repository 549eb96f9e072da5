// Products with block-quantised weights (ABI 2.3: TS_Q8_0 .. TS_Q6_K), y = x W^T with W
// [rows, k] quantised row by row.
//  - quant_gemv_rows, for one row of x (decode): the activations are quantised to 8 bits in
//    blocks of 32 (quant::ActBlock) once per product, and each weight block is dotted with
//    them in integers; one scale multiply per block.
//  - quant_gemm_rows, for several rows of x (prefill: matmul.hpp passes them over a range of W
//    rows held in cache): the same, each weight block decoded once for a tile of x rows, every
//    output bit for bit quant_gemv_rows's for its row alone.
//  - dequantize_rows: W to f32, for the host's conversions (a block that takes no quantised
//    dtype, --weight-dtype f32).
// The scalar loops here are the portable path (active_isa() == Isa::scalar); dot_block_scalar
// is the unit every faster variant is held to (tests compare each instruction set with
// quant::dot_reference). The fast paths, chosen at run time: quant_avx2.hpp (AVX2) and
// quant_avx512.hpp (AVX-512, with or without VNNI: active_vnni()). quantize_activations and
// dequantize_rows give the reference's bits on every path; quant_gemv_rows sums in another
// order (integer dots per block, one FMA per block), within float rounding of the reference.
#pragma once

#include <tessera/cpu/isa.hpp>
#include <tessera/cpu/quant_avx2.hpp>
#include <tessera/cpu/quant_avx512.hpp>
#include <tessera/quant/blocks.hpp>

#include <cstdint>

namespace tessera::cpu {

namespace quant_detail {

// Σ q_w * q_a over 32 values, q_w from a byte array of nibbles (low then high) minus `offset`.
inline int32_t dot_nibbles(const uint8_t* qs, const int8_t* qa, int offset) {
  int32_t s = 0;
  for (int l = 0; l < 16; ++l) {
    s += ((qs[l] & 0xF) - offset) * qa[l];
    s += ((qs[l] >> 4) - offset) * qa[l + 16];
  }
  return s;
}

// One weight block (32 or 256 values) dotted with its activation blocks, the scalar way.
inline float dot_block_scalar(int32_t dtype, const uint8_t* b, const quant::ActBlock* a) {
  switch (dtype) {
    case TS_Q8_0: {
      int32_t s = 0;
      for (int l = 0; l < 32; ++l) s += static_cast<int8_t>(b[2 + l]) * a->q[l];
      return quant::load_f16(b) * a->d * static_cast<float>(s);
    }
    case TS_Q4_0:
      return quant::load_f16(b) * a->d * static_cast<float>(dot_nibbles(b + 2, a->q, 8));
    case TS_Q4_1:
      return quant::load_f16(b) * a->d * static_cast<float>(dot_nibbles(b + 4, a->q, 0)) +
             quant::load_f16(b + 2) * a->d * static_cast<float>(a->sum);
    case TS_Q4_K:
    case TS_Q5_K: {
      const float d = quant::load_f16(b), dmin = quant::load_f16(b + 2);
      const uint8_t* scales = b + 4;
      const uint8_t* qh = b + 16;  // Q5_K only
      const uint8_t* qs = dtype == TS_Q5_K ? b + 48 : b + 16;
      float total = 0.0f;
      for (int sub = 0; sub < 8; ++sub) {
        uint8_t sc, mn;
        quant::k_scale_min(scales, sub, sc, mn);
        const int8_t* qa = a[sub].q;
        int32_t s = 0;
        for (int l = 0; l < 32; ++l) {
          int q = (qs[32 * (sub / 2) + l] >> (4 * (sub % 2))) & 0xF;
          if (dtype == TS_Q5_K) q |= ((qh[l] >> sub) & 1) << 4;
          s += q * qa[l];
        }
        total += a[sub].d * (d * static_cast<float>(sc) * static_cast<float>(s) -
                             dmin * static_cast<float>(mn) * static_cast<float>(a[sub].sum));
      }
      return total;
    }
    case TS_Q6_K: {
      const uint8_t* ql = b;
      const uint8_t* qh = b + 128;
      const auto* scales = reinterpret_cast<const int8_t*>(b + 192);
      const float d = quant::load_f16(b + 208);
      float total = 0.0f;
      for (int chunk = 0; chunk < 8; ++chunk) {  // 32 values: one activation block
        const int half = chunk / 4, c = chunk % 4;
        int32_t s[2] = {0, 0};  // the two 16-value scale groups
        for (int l = 0; l < 32; ++l) {
          const int low = (ql[64 * half + 32 * (c % 2) + l] >> (4 * (c / 2))) & 0xF;
          const int high = (qh[32 * half + l] >> (2 * c)) & 3;
          s[l / 16] += ((low | (high << 4)) - 32) * a[chunk].q[l];
        }
        total += a[chunk].d * d *
                 (static_cast<float>(scales[2 * chunk]) * static_cast<float>(s[0]) +
                  static_cast<float>(scales[2 * chunk + 1]) * static_cast<float>(s[1]));
      }
      return total;
    }
    default:
      return 0.0f;
  }
}

}  // namespace quant_detail

// x (n values, a multiple of 32) to n / 32 activation blocks.
inline void quantize_activations(const float* x, int64_t n, quant::ActBlock* out) {
#if TESSERA_CPU_AVX512
  if (active_isa() == Isa::avx512) return quant_detail::quantize_activations_avx512(x, n, out);
#endif
#if TESSERA_CPU_AVX2
  if (active_isa() == Isa::avx2) return quant_detail::quantize_activations_avx2(x, n, out);
#endif
  quant::quantize_activations_reference(x, n, out);
}

// y[r] = dot(row r of w, xq) for r in [r0, r1) (y indexed by r, as gemv_rows). Row r starts at
// w + r * row_bytes; each row holds k values (a whole number of the dtype's blocks).
inline void quant_gemv_rows(int32_t dtype, const void* w, size_t row_bytes, int64_t k, int64_t r0,
                            int64_t r1, const quant::ActBlock* xq, float* y) {
#if TESSERA_CPU_AVX512
  if (active_isa() == Isa::avx512 &&
      quant_detail::quant_gemv_rows_avx512(dtype, w, row_bytes, k, r0, r1, xq, y, active_vnni()))
    return;
#endif
#if TESSERA_CPU_AVX2
  if (active_isa() == Isa::avx2 &&
      quant_detail::quant_gemv_rows_avx2(dtype, w, row_bytes, k, r0, r1, xq, y))
    return;
#endif
  const int64_t block = dtype_block_elems(dtype);
  const size_t block_bytes = dtype_block_bytes(dtype);
  for (int64_t r = r0; r < r1; ++r) {
    const auto* row = static_cast<const uint8_t*>(w) + static_cast<size_t>(r) * row_bytes;
    float s = 0.0f;
    for (int64_t i = 0; i < k / block; ++i)
      s += quant_detail::dot_block_scalar(dtype, row + static_cast<size_t>(i) * block_bytes,
                                          xq + i * block / quant::kBlock);
    y[r] = s;
  }
}

// y[i * ldy + r] = dot(row r of w, row i of x) for i in [0, m), r in [r0, r1): quant_gemv_rows
// for m rows of x at once (xq: m rows of k / 32 blocks, back to back), each weight block
// decoded once for a tile of x rows. Every output has the bits quant_gemv_rows gives for its
// x row alone, on every path: the same integer dot per block, the same float operations in
// the same order, the same final reduction.
inline void quant_gemm_rows(int32_t dtype, const void* w, size_t row_bytes, int64_t k, int64_t r0,
                            int64_t r1, const quant::ActBlock* xq, int64_t m, float* y,
                            int64_t ldy) {
  if (m == 1) return quant_gemv_rows(dtype, w, row_bytes, k, r0, r1, xq, y);
#if TESSERA_CPU_AVX512
  if (active_isa() == Isa::avx512 &&
      quant_detail::quant_gemm_rows_avx512(dtype, w, row_bytes, k, r0, r1, xq, m, y, ldy,
                                           active_vnni()))
    return;
#endif
#if TESSERA_CPU_AVX2
  if (active_isa() == Isa::avx2 &&
      quant_detail::quant_gemm_rows_avx2(dtype, w, row_bytes, k, r0, r1, xq, m, y, ldy))
    return;
#endif
  for (int64_t i = 0; i < m; ++i)
    quant_gemv_rows(dtype, w, row_bytes, k, r0, r1, xq + i * (k / quant::kBlock), y + i * ldy);
}

// Rows [r0, r1) of w dequantised to f32, row-major with k values per row.
inline void dequantize_rows(int32_t dtype, const void* w, size_t row_bytes, int64_t k, int64_t r0,
                            int64_t r1, float* out) {
#if TESSERA_CPU_AVX2
  if (active_isa() != Isa::scalar &&  // the AVX2 decoders with AVX-512 too
      quant_detail::dequantize_rows_avx2(dtype, w, row_bytes, k, r0, r1, out))
    return;
#endif
  for (int64_t r = r0; r < r1; ++r)
    quant::dequantize_row_reference(
        dtype, static_cast<const uint8_t*>(w) + static_cast<size_t>(r) * row_bytes,
        out + (r - r0) * k, k);
}

}  // namespace tessera::cpu
