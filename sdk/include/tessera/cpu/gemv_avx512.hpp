// The decode-shaped product y[r] = dot(x, w[r]) with AVX-512, for f32, bf16 and
// f16 weights: the same schedule as the AVX2 gemv_rows in matmul.hpp (four rows
// at a time, 32 columns per row per step, a software prefetch of the next four
// rows) with 16-float vectors, so converting 16-bit weights costs half the
// instructions; with 2 cores the AVX2 version is bound by those conversions
// rather than by memory. The last k % 16 columns are a masked load instead of a
// scalar loop. Runs only where isa.hpp reports AVX-512 (detail::gemv_dispatch).
#pragma once

#include <tessera/cpu/isa.hpp>
#include <tessera/cpu/simd.hpp>

#include <algorithm>
#include <cstdint>
#include <utility>

#if TESSERA_CPU_AVX512

namespace tessera::cpu::detail {

// GCC 12 warns that the "undefined" pass-through of the unmasked forms of some
// intrinsics may be used uninitialised; their zero-masked forms with every
// lane set compute the same and say nothing.
constexpr __mmask16 kAll = 0xffff;

TESSERA_TARGET_AVX512 inline float reduce_add(__m512 v) {
  const __m256 h = _mm256_add_ps(_mm512_maskz_extractf32x8_ps(0xff, v, 0),
                                 _mm512_maskz_extractf32x8_ps(0xff, v, 1));
  return hsum(h);
}

// 16 consecutive weights as floats; `masked` reads only the lanes in m.
template <class L>
struct Load512;

template <>
struct Load512<F32Elems> {
  TESSERA_TARGET_AVX512 static __m512 full(const float* p) { return _mm512_loadu_ps(p); }
  TESSERA_TARGET_AVX512 static __m512 masked(__mmask16 m, const float* p) {
    return _mm512_maskz_loadu_ps(m, p);
  }
};

template <>
struct Load512<Bf16Elems> {
  // bf16 is the top half of an f32: widen to 32 bits and shift into place.
  TESSERA_TARGET_AVX512 static __m512 widen(__m256i h) {
    return _mm512_castsi512_ps(
        _mm512_maskz_slli_epi32(kAll, _mm512_maskz_cvtepu16_epi32(kAll, h), 16));
  }
  TESSERA_TARGET_AVX512 static __m512 full(const uint16_t* p) {
    return widen(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  }
  TESSERA_TARGET_AVX512 static __m512 masked(__mmask16 m, const uint16_t* p) {
    return widen(_mm256_maskz_loadu_epi16(m, p));
  }
};

template <>
struct Load512<F16Elems> {
  TESSERA_TARGET_AVX512 static __m512 full(const uint16_t* p) {
    return _mm512_maskz_cvtph_ps(kAll, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  }
  TESSERA_TARGET_AVX512 static __m512 masked(__mmask16 m, const uint16_t* p) {
    return _mm512_maskz_cvtph_ps(kAll, _mm256_maskz_loadu_epi16(m, p));
  }
};

// Rows [r0, r1) of y = x w^T for one row of x (k columns, w row stride ldw).
template <class L>
TESSERA_TARGET_AVX512 void gemv_rows_avx512(const float* x, const typename L::Elem* w, int64_t ldw,
                                            int64_t k, int64_t r0, int64_t r1, float* y) {
  using Elem = typename L::Elem;
  using V = Load512<L>;
  constexpr int64_t kStep = 32;  // columns per row per step
  constexpr int64_t kLineElems = 64 / static_cast<int64_t>(sizeof(Elem));  // per cache line
  const int64_t k_steps = k - k % kStep;
  const int64_t k16 = k & ~int64_t{15};
  const auto tail = static_cast<__mmask16>((1u << (k - k16)) - 1u);
  const __m512 x_tail = _mm512_maskz_loadu_ps(tail, x + k16);
  int64_t r = r0;
  for (; r + 4 <= r1; r += 4) {
    const Elem* wr[4] = {w + r * ldw, w + (r + 1) * ldw, w + (r + 2) * ldw, w + (r + 3) * ldw};
    // The next group's rows, or this group's again at the end of the range.
    const int64_t ahead = r + 8 <= r1 ? 4 * ldw : 0;
    __m512 acc[4][2];
#pragma GCC unroll 4
    for (int i = 0; i < 4; ++i) acc[i][0] = acc[i][1] = _mm512_setzero_ps();
    int64_t c = 0;
    for (; c < k_steps; c += kStep) {
      const __m512 x0 = _mm512_loadu_ps(x + c), x1 = _mm512_loadu_ps(x + c + 16);
#pragma GCC unroll 4
      for (int i = 0; i < 4; ++i) {
#pragma GCC unroll 2
        for (int64_t line = 0; line < kStep; line += kLineElems)
          _mm_prefetch(reinterpret_cast<const char*>(wr[i] + c + line + ahead), _MM_HINT_T0);
        acc[i][0] = _mm512_fmadd_ps(V::full(wr[i] + c), x0, acc[i][0]);
        acc[i][1] = _mm512_fmadd_ps(V::full(wr[i] + c + 16), x1, acc[i][1]);
      }
    }
    if (c < k16) {  // one full vector left
      const __m512 x0 = _mm512_loadu_ps(x + c);
#pragma GCC unroll 4
      for (int i = 0; i < 4; ++i) acc[i][0] = _mm512_fmadd_ps(V::full(wr[i] + c), x0, acc[i][0]);
      c += 16;
    }
    if (c < k) {
#pragma GCC unroll 4
      for (int i = 0; i < 4; ++i)
        acc[i][1] = _mm512_fmadd_ps(V::masked(tail, wr[i] + c), x_tail, acc[i][1]);
    }
#pragma GCC unroll 4
    for (int i = 0; i < 4; ++i) y[r + i] = reduce_add(_mm512_add_ps(acc[i][0], acc[i][1]));
  }
  for (; r < r1; ++r) {
    const Elem* wr = w + r * ldw;
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
    int64_t c = 0;
    for (; c < k16; c += 16) {
      a0 = _mm512_fmadd_ps(V::full(wr + c), _mm512_loadu_ps(x + c), a0);
      std::swap(a0, a1);
    }
    if (c < k) a0 = _mm512_fmadd_ps(V::masked(tail, wr + c), x_tail, a0);
    y[r] = reduce_add(_mm512_add_ps(a0, a1));
  }
}

// Output j of x rows [0, MR) for weight rows r and r + 1, both inside the four-row groups of
// gemv_rows_avx512: the very accumulators and order that kernel gives each row alone.
template <class L, int MR>
TESSERA_TARGET_AVX512 void gemv_pair_rows_avx512(const float* x, int64_t ldx,
                                                 const typename L::Elem* w, int64_t ldw, int64_t k,
                                                 int64_t r, int64_t ahead, float* y, int64_t ldy) {
  using Elem = typename L::Elem;
  using V = Load512<L>;
  constexpr int64_t kStep = 32;
  constexpr int64_t kLineElems = 64 / static_cast<int64_t>(sizeof(Elem));
  const int64_t k_steps = k - k % kStep;
  const int64_t k16 = k & ~int64_t{15};
  const auto tail = static_cast<__mmask16>((1u << (k - k16)) - 1u);
  const Elem* w0 = w + r * ldw;
  const Elem* w1 = w0 + ldw;
  __m512 acc[MR][2][2];
#pragma GCC unroll 4
  for (int i = 0; i < MR; ++i)
    acc[i][0][0] = acc[i][0][1] = acc[i][1][0] = acc[i][1][1] = _mm512_setzero_ps();
  int64_t c = 0;
  for (; c < k_steps; c += kStep) {
#pragma GCC unroll 2
    for (int64_t line = 0; line < kStep; line += kLineElems) {
      _mm_prefetch(reinterpret_cast<const char*>(w0 + c + line + ahead), _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(w1 + c + line + ahead), _MM_HINT_T0);
    }
    const __m512 a0 = V::full(w0 + c), a1 = V::full(w0 + c + 16);
    const __m512 b0 = V::full(w1 + c), b1 = V::full(w1 + c + 16);
#pragma GCC unroll 4
    for (int i = 0; i < MR; ++i) {
      const __m512 x0 = _mm512_loadu_ps(x + i * ldx + c),
                   x1 = _mm512_loadu_ps(x + i * ldx + c + 16);
      acc[i][0][0] = _mm512_fmadd_ps(a0, x0, acc[i][0][0]);
      acc[i][0][1] = _mm512_fmadd_ps(a1, x1, acc[i][0][1]);
      acc[i][1][0] = _mm512_fmadd_ps(b0, x0, acc[i][1][0]);
      acc[i][1][1] = _mm512_fmadd_ps(b1, x1, acc[i][1][1]);
    }
  }
  if (c < k16) {  // one full vector left
    const __m512 a0 = V::full(w0 + c), b0 = V::full(w1 + c);
#pragma GCC unroll 4
    for (int i = 0; i < MR; ++i) {
      const __m512 x0 = _mm512_loadu_ps(x + i * ldx + c);
      acc[i][0][0] = _mm512_fmadd_ps(a0, x0, acc[i][0][0]);
      acc[i][1][0] = _mm512_fmadd_ps(b0, x0, acc[i][1][0]);
    }
    c += 16;
  }
  if (c < k) {
    const __m512 a = V::masked(tail, w0 + c), b = V::masked(tail, w1 + c);
#pragma GCC unroll 4
    for (int i = 0; i < MR; ++i) {
      const __m512 xt = _mm512_maskz_loadu_ps(tail, x + i * ldx + k16);
      acc[i][0][1] = _mm512_fmadd_ps(a, xt, acc[i][0][1]);
      acc[i][1][1] = _mm512_fmadd_ps(b, xt, acc[i][1][1]);
    }
  }
#pragma GCC unroll 4
  for (int i = 0; i < MR; ++i) {
    y[i * ldy + r] = reduce_add(_mm512_add_ps(acc[i][0][0], acc[i][0][1]));
    y[i * ldy + r + 1] = reduce_add(_mm512_add_ps(acc[i][1][0], acc[i][1][1]));
  }
}

// Rows [r0, r1) of y = x w^T for m rows of x (row i at x + i * ldx, its output at
// y + i * ldy), each output the bits gemv_rows_avx512 gives its row of x alone. Each weight
// vector is loaded and converted once for up to four rows of x, so a few rows (a verified
// tree, a batch of decodes) cost little more than one; the range's weights stay in cache for
// the next four.
template <class L>
TESSERA_TARGET_AVX512 void gemv_multi_rows_avx512(const float* x, int64_t ldx, int64_t m,
                                                  const typename L::Elem* w, int64_t ldw, int64_t k,
                                                  int64_t r0, int64_t r1, float* y, int64_t ldy) {
  const int64_t grouped = r0 + (r1 - r0) / 4 * 4;  // gemv_rows_avx512's four-row groups
  for (int64_t i0 = 0; i0 < m; i0 += 4) {
    const float* xi = x + i0 * ldx;
    float* yi = y + i0 * ldy;
    const int64_t mr = std::min<int64_t>(4, m - i0);
    for (int64_t r = r0; r < grouped; r += 2) {
      const int64_t ahead = r + 4 <= grouped ? 2 * ldw : 0;
      switch (mr) {
        case 1:
          gemv_pair_rows_avx512<L, 1>(xi, ldx, w, ldw, k, r, ahead, yi, ldy);
          break;
        case 2:
          gemv_pair_rows_avx512<L, 2>(xi, ldx, w, ldw, k, r, ahead, yi, ldy);
          break;
        case 3:
          gemv_pair_rows_avx512<L, 3>(xi, ldx, w, ldw, k, r, ahead, yi, ldy);
          break;
        default:
          gemv_pair_rows_avx512<L, 4>(xi, ldx, w, ldw, k, r, ahead, yi, ldy);
          break;
      }
    }
    for (int64_t i = 0; i < mr; ++i)  // the rows past the groups, one by one as alone
      gemv_rows_avx512<L>(xi + i * ldx, w, ldw, k, grouped, r1, yi + i * ldy);
  }
}

}  // namespace tessera::cpu::detail

#endif  // TESSERA_CPU_AVX512
