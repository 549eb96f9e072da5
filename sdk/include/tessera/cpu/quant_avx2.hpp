// The quantised GEMV (quant_matmul.hpp) with AVX2, the project's baseline: activations to
// 8-bit blocks, weight rows dotted with them, rows dequantised to f32. quant_matmul.hpp picks
// these where active_isa() is avx2; the AVX-512 kernels (quant_avx512.hpp) reuse the helpers
// and the dequantisation.
//
// The dot products are exact integer sums, one float FMA per 32 values: vpmaddubsw multiplies
// the unsigned weight bytes by the signed activation bytes and adds pairs into int16, vpmaddwd
// adds pairs of those into int32. No int16 sum saturates: a pair is at most 2 * 63 * 127
// (6-bit weights), or 2 * 128 * 127 for Q8_0, whose signed weights go in as |w| with the sign
// moved onto the activation. A weight offset (Q4_0's 8, Q6_K's 32) is taken off as offset * a
// per pair; the minimum of Q4_1 and the K types as minimum * d * ActBlock::sum.
//
// Memory-bound decode: what the activations give every row (each format's Shared: the offset
// sums, the scales laid out as the dot products' lanes) is computed once per product, rows go
// four at a time, and a software prefetch fetches rows about 4 KiB on (prefetch_ahead).
#pragma once

#include <tessera/cpu/simd.hpp>
#include <tessera/quant/blocks.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <new>

#if TESSERA_CPU_AVX2

namespace tessera::cpu::quant_detail {

inline uint32_t load_u32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

inline float f16_at(const uint8_t* p) {
  return _cvtsh_ss(quant::load_u16(p));
}

// The 6-bit scales and mins of the eight sub-blocks of a Q4_K/Q5_K super-block, one per byte
// (quant::k_scale_min for all sixteen at once), from the super-block's first 16 bytes (d, dmin,
// then the 12 bytes of scales: dwords 1-3, u0 u1 u2). Sub-blocks 0-3 are the low six bits of
// u0 (scales) and u1 (mins); 4-7 take their low four bits from the nibbles of u2 and their top
// two from the top two bits of u0 and u1. Returns [scales 0-7, mins 0-7].
inline __m128i k_scales_mins(__m128i head) {
  const __m128i a = _mm_shuffle_epi32(head, _MM_SHUFFLE(3, 2, 3, 1));  // u0 u2 u1 u2
  const __m128i b = _mm_shuffle_epi32(head, _MM_SHUFFLE(2, 2, 1, 1));  // u0 u0 u1 u1
  const __m128i low = _mm_and_si128(_mm_srlv_epi32(a, _mm_setr_epi32(0, 0, 0, 4)),
                                    _mm_setr_epi32(0x3f3f3f3f, 0x0f0f0f0f, 0x3f3f3f3f, 0x0f0f0f0f));
  const __m128i top =
      _mm_and_si128(_mm_srli_epi32(b, 2), _mm_setr_epi32(0, 0x30303030, 0, 0x30303030));
  return _mm_or_si128(low, top);
}

// This thread's 64-byte aligned scratch of at least `bytes` (it grows, never shrinks): what
// the activations give every row of a product (the formats' Shared), computed once per product.
inline void* shared_scratch(size_t bytes) {
  struct Buffer {
    void* data = nullptr;
    size_t size = 0;
    ~Buffer() { ::operator delete[](data, std::align_val_t{64}); }
  };
  thread_local Buffer buffer;
  if (buffer.size < bytes) {
    ::operator delete[](buffer.data, std::align_val_t{64});
    buffer.data = nullptr;  // should the next line throw
    buffer.size = 0;
    buffer.data = ::operator new[](bytes, std::align_val_t{64});
    buffer.size = bytes;
  }
  return buffer.data;
}

namespace avx2 {

// v unchanged but opaque to the optimiser: a product passed through it is rounded to f32
// before the sum that follows, as the decoders of quant/blocks.hpp define, even where the
// includer lets the compiler contract a * b + c into an FMA (GCC's default, intrinsics
// included). With these formats the products happen to be exact (an f16 scale's 11 bits times
// at most 6 + 5), so an FMA would round the same: this keeps it so for whatever comes next.
inline __m256 rounded(__m256 v) {
  asm("" : "+x"(v));
  return v;
}

inline __m256i ones16() {
  return _mm256_set1_epi16(1);
}

// Σ w * a over each four bytes, as int32 (w unsigned, a signed, pairs within int16).
inline __m256i dot_u8s8(__m256i w, __m256i a) {
  return _mm256_madd_epi16(_mm256_maddubs_epi16(w, a), ones16());
}

inline __m256i load256(const void* p) {
  return _mm256_loadu_si256(static_cast<const __m256i*>(p));
}

// 16 bytes of nibbles as 32 values 0..15: the low nibbles, then the high ones (the bytes in
// both halves, the upper half shifted down a nibble).
inline __m256i nibbles(const uint8_t* qs) {
  const __m256i both =
      _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(qs)));
  return _mm256_and_si256(_mm256_srlv_epi32(both, _mm256_setr_epi32(0, 0, 0, 0, 4, 4, 4, 4)),
                          _mm256_set1_epi8(0x0F));
}

// Lane j of v in every lane.
inline __m256 lane(__m256 v, int j) {
  return _mm256_permutevar8x32_ps(v, _mm256_set1_epi32(j));
}

inline float hmax(__m256 v) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  return _mm_cvtss_f32(_mm_max_ss(m, _mm_movehdup_ps(m)));
}

inline int32_t hsum_epi32(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
  return _mm_cvtsi128_si32(s);
}

// std::lround of 8 floats of magnitude below 2^22, exactly: truncate |v|, add 1 where the
// dropped fraction is at least 0.5 (t + 0.5 is exact), put the sign back.
inline __m256i round_half_away(__m256 v) {
  const __m256 sign = _mm256_set1_ps(-0.0f);
  const __m256 a = _mm256_andnot_ps(sign, v);
  const __m256 t = _mm256_round_ps(a, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
  const __m256 up = _mm256_cmp_ps(a, _mm256_add_ps(t, _mm256_set1_ps(0.5f)), _CMP_GE_OQ);
  const __m256 r = _mm256_add_ps(t, _mm256_and_ps(up, _mm256_set1_ps(1.0f)));
  return _mm256_cvttps_epi32(_mm256_or_ps(r, _mm256_and_ps(sign, v)));
}

// The 8 activation blocks of a super-block: each d, and d * sum.
struct SuperActs {
  __m256 d, dsum;
};

inline SuperActs super_acts(const quant::ActBlock* a) {
  static_assert(sizeof(quant::ActBlock) == 10 * sizeof(float));
  const __m256i stride = _mm256_setr_epi32(0, 10, 20, 30, 40, 50, 60, 70);  // in floats
  const __m256 d = _mm256_i32gather_ps(&a->d, stride, 4);
  const __m256i sum = _mm256_i32gather_epi32(&a->sum, stride, 4);
  return {d, _mm256_mul_ps(d, _mm256_cvtepi32_ps(sum))};
}

// ---- one weight block dotted with its activations into a row's sums ----------------------
// Each format: kValues and kBytes per block; Shared, what its activation blocks give every row
// (share()); add(), one row's block into its Acc.

// A row's sums: 8 lanes of scaled dot products, and lane 1 of `minima` Q4_1's minimum terms.
struct Acc {
  __m256 dots = _mm256_setzero_ps();
  __m128 minima = _mm_setzero_ps();
  float total() const { return hsum(dots) + _mm_cvtss_f32(_mm_movehdup_ps(minima)); }
};

struct Q8_0 {
  static constexpr int64_t kValues = 32, kBytes = 34;
  struct Shared {
    __m256i a;
    float d;
  };
  struct W {
    __m256i w, abs;
    float d;
  };
  static Shared share(const quant::ActBlock* a) { return {load256(a->q), a->d}; }
  static W decode(const uint8_t* b) {
    const __m256i w = load256(b + 2);
    return {w, _mm256_abs_epi8(w), f16_at(b)};
  }
  static void apply(const W& w, const quant::ActBlock*, const Shared& s, Acc& acc) {
    const __m256i prods = dot_u8s8(w.abs, _mm256_sign_epi8(s.a, w.w));
    acc.dots = _mm256_fmadd_ps(_mm256_cvtepi32_ps(prods), _mm256_set1_ps(w.d * s.d), acc.dots);
  }
  static void add(const uint8_t* b, const quant::ActBlock* a, const Shared& s, Acc& acc) {
    apply(decode(b), a, s, acc);
  }
};

struct Q4_0 {
  static constexpr int64_t kValues = 32, kBytes = 18;
  struct Shared {
    __m256i a, offset;  // offset: 8 * (a[2i] + a[2i+1]) as int16
    float d;
  };
  static Shared share(const quant::ActBlock* a) {
    const __m256i q = load256(a->q);
    return {q, _mm256_maddubs_epi16(_mm256_set1_epi8(8), q), a->d};
  }
  struct W {
    __m256i q;
    float d;
  };
  static W decode(const uint8_t* b) { return {nibbles(b + 2), f16_at(b)}; }
  static void apply(const W& w, const quant::ActBlock*, const Shared& s, Acc& acc) {
    const __m256i pairs = _mm256_sub_epi16(_mm256_maddubs_epi16(w.q, s.a), s.offset);
    const __m256i prods = _mm256_madd_epi16(pairs, ones16());
    acc.dots = _mm256_fmadd_ps(_mm256_cvtepi32_ps(prods), _mm256_set1_ps(w.d * s.d), acc.dots);
  }
  static void add(const uint8_t* b, const quant::ActBlock* a, const Shared& s, Acc& acc) {
    apply(decode(b), a, s, acc);
  }
};

struct Q4_1 {
  static constexpr int64_t kValues = 32, kBytes = 20;
  struct Shared {
    __m256i a;
    __m128 dm;  // {d, d * sum, 0, 0}
  };
  static Shared share(const quant::ActBlock* a) {
    return {load256(a->q), _mm_setr_ps(a->d, a->d * static_cast<float>(a->sum), 0.0f, 0.0f)};
  }
  struct W {
    __m256i q;
    __m128 dm;  // {d_w, m_w, junk, junk}
  };
  static W decode(const uint8_t* b) {
    return {nibbles(b + 4), _mm_cvtph_ps(_mm_cvtsi32_si128(static_cast<int>(load_u32(b))))};
  }
  static void apply(const W& w, const quant::ActBlock*, const Shared& s, Acc& acc) {
    // {d_w * d, m_w * d * sum, 0, 0}: the scale of the dot, and the minimum's whole share
    const __m128 f = _mm_mul_ps(w.dm, s.dm);
    const __m256i prods = dot_u8s8(w.q, s.a);
    acc.dots = _mm256_fmadd_ps(_mm256_cvtepi32_ps(prods), _mm256_broadcastss_ps(f), acc.dots);
    acc.minima = _mm_add_ps(acc.minima, f);
  }
  static void add(const uint8_t* b, const quant::ActBlock* a, const Shared& s, Acc& acc) {
    apply(decode(b), a, s, acc);
  }
};

// Q4_K and Q5_K: eight sub-blocks of 32, each value (d * sc_j) * q - dmin * mn_j. The scale
// of sub-block j, d * sc_j * d_act_j, is lane j of one vector; the minimum's share,
// dmin * Σ_j mn_j * d_act_j * sum_j, is taken off lane by lane.
template <bool Q5>
struct QK45 {
  static constexpr int64_t kValues = 256, kBytes = Q5 ? 176 : 144;
  using Shared = SuperActs;
  static Shared share(const quant::ActBlock* a) { return super_acts(a); }
  struct W {
    __m256 dm;      // lanes 0, 1: d, dmin
    __m256 scales;  // sc_j as floats
    __m256 mins;    // mn_j as floats
    __m256i q[8];   // sub-block j's values
  };
  static W decode(const uint8_t* b) {
    W w;
    const __m128i head = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b));
    w.dm = _mm256_cvtph_ps(head);
    const __m128i sc_mn = k_scales_mins(head);
    w.scales = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(sc_mn));
    w.mins = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_unpackhi_epi64(sc_mn, sc_mn)));
    const uint8_t* qs = b + (Q5 ? 48 : 16);
    const __m256i qh = load256(b + 16);  // Q5_K: bit j of byte l is the fifth bit of sub-block j
    const __m256i low4 = _mm256_set1_epi8(0x0F);
#pragma GCC unroll 8
    for (int j = 0; j < 8; ++j) {
      const __m256i bytes = load256(qs + 32 * (j / 2));
      __m256i q = _mm256_and_si256(j % 2 == 0 ? bytes : _mm256_srli_epi16(bytes, 4), low4);
      if constexpr (Q5)  // bit j to bit 4 (16-bit shifts: the bits crossing bytes are masked off)
        q = _mm256_or_si256(q, _mm256_and_si256(j <= 4 ? _mm256_slli_epi16(qh, 4 - j)
                                                       : _mm256_srli_epi16(qh, j - 4),
                                                _mm256_set1_epi8(0x10)));
      w.q[j] = q;
    }
    return w;
  }
  static void apply(const W& w, const quant::ActBlock* a, const Shared& s, Acc& acc) {
    const __m256 scale = _mm256_mul_ps(_mm256_mul_ps(w.scales, s.d),
                                       _mm256_broadcastss_ps(_mm256_castps256_ps128(w.dm)));
    acc.dots = _mm256_fnmadd_ps(_mm256_mul_ps(w.mins, s.dsum), lane(w.dm, 1), acc.dots);
#pragma GCC unroll 8
    for (int j = 0; j < 8; ++j) {
      const __m256i prods = dot_u8s8(w.q[j], load256(a[j].q));
      acc.dots = _mm256_fmadd_ps(_mm256_cvtepi32_ps(prods), lane(scale, j), acc.dots);
    }
  }
  static void add(const uint8_t* b, const quant::ActBlock* a, const Shared& s, Acc& acc) {
    apply(decode(b), a, s, acc);
  }
};

// Q6_K: chunk c (32 values, activation block c) of half h = c / 4 takes its low four bits from
// ql[64h + 32(c%2) ..] (low nibbles for c%4 < 2) and bits 2(c%4).. of qh[32h ..]; values are
// q - 32 with an int8 scale per 16. vpmaddwd by the scales gives Σ scale * (q - 32) * a exactly;
// one FMA by d * d_act per chunk.
struct Q6_K {
  static constexpr int64_t kValues = 256, kBytes = 210;
  struct Shared {
    SuperActs acts;
    __m256i offset[8];  // 32 * (a[2i] + a[2i+1]) per chunk, int16
  };
  static Shared share(const quant::ActBlock* a) {
    Shared s{super_acts(a), {}};
    for (int c = 0; c < 8; ++c)
      s.offset[c] = _mm256_maddubs_epi16(_mm256_set1_epi8(32), load256(a[c].q));
    return s;
  }
  struct W {
    __m256i q[8];     // chunk c's values 0..63 (the offset 32 not taken off)
    __m256i sc16[8];  // chunk c's two scales, by int16 lane
    float d;
  };
  static W decode(const uint8_t* b) {
    W w;
    const __m128i scales = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 192));
    w.d = f16_at(b + 208);
#pragma GCC unroll 8
    for (int c = 0; c < 8; ++c) {
      const int half = c / 4, part = c % 4;
      const __m256i ql = load256(b + 64 * half + 32 * (part % 2));
      const __m256i qh = load256(b + 128 + 32 * half);
      const __m256i low =
          _mm256_and_si256(part < 2 ? ql : _mm256_srli_epi16(ql, 4), _mm256_set1_epi8(0x0F));
      const __m256i high =  // bits 2 part, 2 part + 1 to bits 4, 5
          _mm256_and_si256(
              part < 3 ? _mm256_slli_epi16(qh, 4 - 2 * part) : _mm256_srli_epi16(qh, 2),
              _mm256_set1_epi8(0x30));
      w.q[c] = _mm256_or_si256(low, high);
      // int16 lanes 0-7 (values 0-15) by scale 2c, lanes 8-15 by scale 2c + 1
      const __m128i pick =
          _mm_set_epi64x(0x0101010101010101LL * (2 * c + 1), 0x0101010101010101LL * (2 * c));
      w.sc16[c] = _mm256_cvtepi8_epi16(_mm_shuffle_epi8(scales, pick));
    }
    return w;
  }
  static void apply(const W& w, const quant::ActBlock* a, const Shared& s, Acc& acc) {
    const __m256 scale = _mm256_mul_ps(s.acts.d, _mm256_set1_ps(w.d));
#pragma GCC unroll 8
    for (int c = 0; c < 8; ++c) {
      const __m256i pairs =
          _mm256_sub_epi16(_mm256_maddubs_epi16(w.q[c], load256(a[c].q)), s.offset[c]);
      const __m256i prods = _mm256_madd_epi16(pairs, w.sc16[c]);
      acc.dots = _mm256_fmadd_ps(_mm256_cvtepi32_ps(prods), lane(scale, c), acc.dots);
    }
  }
  static void add(const uint8_t* b, const quant::ActBlock* a, const Shared& s, Acc& acc) {
    apply(decode(b), a, s, acc);
  }
};

// The lines of a block of `bytes` at p; only its first below 64 bytes (the next block's
// prefetch, under 64 bytes on, covers the rest). For weights a group of rows further on.
template <int64_t kBytes>
inline void prefetch_block(const uint8_t* p) {
#pragma GCC unroll 4
  for (int64_t line = 0; line < kBytes; line += 64)
    _mm_prefetch(reinterpret_cast<const char*>(p + line), _MM_HINT_T0);
}

// Bytes from a row of the group at r to the row its prefetch fetches: about 4 KiB on (with
// short rows the next group of four comes too soon to hide the memory's latency), at least the
// next group, never past r1 (0 for the last group).
inline size_t prefetch_ahead(size_t row_bytes, int64_t r, int64_t r1) {
  constexpr int64_t kDistance = 4096;
  const auto bytes = static_cast<int64_t>(row_bytes);
  const int64_t rows = bytes > 0 ? std::max<int64_t>(4, (kDistance / bytes + 3) / 4 * 4) : 4;
  return static_cast<size_t>(std::clamp<int64_t>(r1 - r - 4, 0, rows)) * row_bytes;
}

// Rows [r, r + R) of y, R at a time. `shared`: each block's F::share, computed once per
// product for all its rows. `ahead`: bytes from a row to the one to prefetch.
template <class F, int R>
inline void gemv_group(const uint8_t* w, size_t row_bytes, int64_t blocks, size_t ahead,
                       const quant::ActBlock* xq, const typename F::Shared* shared, float* y) {
  Acc acc[R];
  for (int64_t i = 0; i < blocks; ++i) {
    const quant::ActBlock* a = xq + i * (F::kValues / quant::kBlock);
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      const uint8_t* b = w + r * row_bytes + i * F::kBytes;
      prefetch_block<F::kBytes>(b + ahead);
      F::add(b, a, shared[i], acc[r]);
    }
  }
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r) y[r] = acc[r].total();
}

template <class F>
inline void gemv_rows(const void* w, size_t row_bytes, int64_t k, int64_t r0, int64_t r1,
                      const quant::ActBlock* xq, float* y) {
  const auto* base = static_cast<const uint8_t*>(w);
  const int64_t blocks = k / F::kValues;
  auto* shared = static_cast<typename F::Shared*>(
      shared_scratch(static_cast<size_t>(blocks) * sizeof(typename F::Shared)));
  for (int64_t i = 0; i < blocks; ++i) shared[i] = F::share(xq + i * (F::kValues / quant::kBlock));
  int64_t r = r0;
  for (; r + 4 <= r1; r += 4)
    gemv_group<F, 4>(base + r * row_bytes, row_bytes, blocks, prefetch_ahead(row_bytes, r, r1), xq,
                     shared, y + r);
  for (; r < r1; ++r)
    gemv_group<F, 1>(base + r * row_bytes, row_bytes, blocks, r + 1 < r1 ? row_bytes : 0, xq,
                     shared, y + r);
}

// The register tile of gemm_rows: W rows [r, r + R) by x rows [i, i + M). Each weight block is
// decoded once (F::decode) and applied to the M rows' activations (F::apply): every sum gets
// the operations gemv_group gives it (F::add is apply(decode)), in the same order.
// xq, shared, y: at x row i (xq_stride blocks of 32, shared_stride Shared, ldy floats per row);
// y indexed by W row from w's first.
template <class F, int R, int M>
inline void gemm_tile(const uint8_t* w, size_t row_bytes, int64_t blocks, const quant::ActBlock* xq,
                      int64_t xq_stride, const typename F::Shared* shared, int64_t shared_stride,
                      float* y, int64_t ldy) {
  Acc acc[R][M];
  for (int64_t i = 0; i < blocks; ++i) {
    const quant::ActBlock* a = xq + i * (F::kValues / quant::kBlock);
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      const typename F::W wd = F::decode(w + r * row_bytes + i * F::kBytes);
#pragma GCC unroll 8
      for (int j = 0; j < M; ++j)
        F::apply(wd, a + j * xq_stride, shared[j * shared_stride + i], acc[r][j]);
    }
  }
#pragma GCC unroll 8
  for (int j = 0; j < M; ++j)
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) y[j * ldy + r] = acc[r][j].total();
}

// Rows [r0, r1) of W by the m rows of x (xq: m rows of k / 32 blocks), y[i * ldy + r]: kM x
// rows at a time (their Shared in the scratch), the range's W rows kR at a time under them.
template <class F, int kR, int kM>
inline void gemm_rows(const void* w, size_t row_bytes, int64_t k, int64_t r0, int64_t r1,
                      const quant::ActBlock* xq, int64_t m, float* y, int64_t ldy) {
  using Shared = typename F::Shared;
  const auto* base = static_cast<const uint8_t*>(w);
  const int64_t blocks = k / F::kValues, stride = k / quant::kBlock;
  auto* shared =
      static_cast<Shared*>(shared_scratch(static_cast<size_t>(kM * blocks) * sizeof(Shared)));
  for (int64_t i0 = 0; i0 < m; i0 += kM) {
    const int64_t rows = std::min<int64_t>(kM, m - i0);
    const quant::ActBlock* x0 = xq + i0 * stride;
    for (int64_t j = 0; j < rows; ++j)
      for (int64_t i = 0; i < blocks; ++i)
        shared[j * blocks + i] = F::share(x0 + j * stride + i * (F::kValues / quant::kBlock));
    float* y0 = y + i0 * ldy;
    if (rows == kM) {
      int64_t r = r0;
      for (; r + kR <= r1; r += kR)
        gemm_tile<F, kR, kM>(base + r * row_bytes, row_bytes, blocks, x0, stride, shared, blocks,
                             y0 + r, ldy);
      for (; r < r1; ++r)
        gemm_tile<F, 1, kM>(base + r * row_bytes, row_bytes, blocks, x0, stride, shared, blocks,
                            y0 + r, ldy);
      continue;
    }
    for (int64_t j = 0; j < rows; ++j) {
      int64_t r = r0;
      for (; r + kR <= r1; r += kR)
        gemm_tile<F, kR, 1>(base + r * row_bytes, row_bytes, blocks, x0 + j * stride, stride,
                            shared + j * blocks, blocks, y0 + j * ldy + r, ldy);
      for (; r < r1; ++r)
        gemm_tile<F, 1, 1>(base + r * row_bytes, row_bytes, blocks, x0 + j * stride, stride,
                           shared + j * blocks, blocks, y0 + j * ldy + r, ldy);
    }
  }
}

// ---- one weight block to f32, bit for bit the decoders of quant/blocks.hpp ----------------

// 8 bytes at p as int32 lanes.
inline __m256i bytes8(const uint8_t* p) {
  return _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
}

inline void dequantize_q8_0(const uint8_t* b, float* y) {
  const __m256 d = _mm256_set1_ps(f16_at(b));
  for (int i = 0; i < 4; ++i) {
    const __m256i q =
        _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(b + 2 + 8 * i)));
    _mm256_storeu_ps(y + 8 * i, _mm256_mul_ps(_mm256_cvtepi32_ps(q), d));
  }
}

// Q4_0 (offset 8, no minimum) and Q4_1 (offset 0, minimum m after the scale).
template <bool Q41>
inline void dequantize_q4(const uint8_t* b, float* y) {
  const __m256 d = _mm256_set1_ps(f16_at(b));
  const __m256 m = _mm256_set1_ps(Q41 ? f16_at(b + 2) : 0.0f);
  const uint8_t* qs = b + (Q41 ? 4 : 2);
  const __m256i low4 = _mm256_set1_epi32(0x0F);
  for (int i = 0; i < 4; ++i) {  // values 8i..8i+7: low nibbles of bytes 8i.. for i < 2, else high
    const __m256i bytes = bytes8(qs + 8 * (i % 2));
    __m256i q = _mm256_and_si256(i < 2 ? bytes : _mm256_srli_epi32(bytes, 4), low4);
    if (!Q41) q = _mm256_sub_epi32(q, _mm256_set1_epi32(8));
    const __m256 v = _mm256_mul_ps(_mm256_cvtepi32_ps(q), d);
    _mm256_storeu_ps(y + 8 * i, Q41 ? _mm256_add_ps(rounded(v), m) : v);
  }
}

template <bool Q5>
inline void dequantize_qk45(const uint8_t* b, float* y) {
  const float d = f16_at(b), dmin = f16_at(b + 2);
  const uint8_t* qh = b + 16;
  const uint8_t* qs = b + (Q5 ? 48 : 16);
  for (int j = 0; j < 8; ++j) {
    uint8_t sc, mn;
    quant::k_scale_min(b + 4, j, sc, mn);
    const __m256 d_sub = _mm256_set1_ps(d * static_cast<float>(sc));
    const __m256 m_sub = _mm256_set1_ps(dmin * static_cast<float>(mn));
    for (int i = 0; i < 4; ++i) {
      __m256i q =
          _mm256_and_si256(_mm256_srli_epi32(bytes8(qs + 32 * (j / 2) + 8 * i), 4 * (j % 2)),
                           _mm256_set1_epi32(0x0F));
      if (Q5)
        q = _mm256_or_si256(
            q, _mm256_slli_epi32(
                   _mm256_and_si256(_mm256_srli_epi32(bytes8(qh + 8 * i), j), _mm256_set1_epi32(1)),
                   4));
      const __m256 v = _mm256_mul_ps(d_sub, _mm256_cvtepi32_ps(q));
      _mm256_storeu_ps(y + 32 * j + 8 * i, _mm256_sub_ps(rounded(v), m_sub));
    }
  }
}

inline void dequantize_q6_k(const uint8_t* b, float* y) {
  const auto* scales = reinterpret_cast<const int8_t*>(b + 192);
  const float d = f16_at(b + 208);
  for (int c = 0; c < 8; ++c) {
    const int half = c / 4, part = c % 4;
    for (int i = 0; i < 4; ++i) {
      const int out = 32 * c + 8 * i;
      const __m256i low = _mm256_and_si256(
          _mm256_srli_epi32(bytes8(b + 64 * half + 32 * (part % 2) + 8 * i), 4 * (part / 2)),
          _mm256_set1_epi32(0x0F));
      const __m256i high = _mm256_and_si256(
          _mm256_srli_epi32(bytes8(b + 128 + 32 * half + 8 * i), 2 * part), _mm256_set1_epi32(3));
      const __m256i q =
          _mm256_sub_epi32(_mm256_or_si256(low, _mm256_slli_epi32(high, 4)), _mm256_set1_epi32(32));
      const __m256 scale = _mm256_set1_ps(d * static_cast<float>(scales[out / 16]));
      _mm256_storeu_ps(y + out, _mm256_mul_ps(scale, _mm256_cvtepi32_ps(q)));
    }
  }
}

template <void (*Decode)(const uint8_t*, float*)>
inline void dequantize_rows(const void* w, size_t row_bytes, int64_t k, int64_t block,
                            size_t block_bytes, int64_t r0, int64_t r1, float* out) {
  for (int64_t r = r0; r < r1; ++r) {
    const auto* row = static_cast<const uint8_t*>(w) + static_cast<size_t>(r) * row_bytes;
    for (int64_t i = 0; i < k / block; ++i)
      Decode(row + static_cast<size_t>(i) * block_bytes, out + (r - r0) * k + i * block);
  }
}

}  // namespace avx2

// ---- the entry points (quant_matmul.hpp) ------------------------------------------------

inline void quantize_activations_avx2(const float* x, int64_t n, quant::ActBlock* out) {
  const __m256 sign = _mm256_set1_ps(-0.0f);
  for (int64_t b = 0; b < n / quant::kBlock; ++b) {
    const float* xb = x + b * quant::kBlock;
    __m256 v[4];
    __m256 amax = _mm256_setzero_ps();
    for (int i = 0; i < 4; ++i) {
      v[i] = _mm256_loadu_ps(xb + 8 * i);
      amax = _mm256_max_ps(amax, _mm256_andnot_ps(sign, v[i]));
    }
    float d = avx2::hmax(amax) / 127.0f, inv = d != 0.0f ? 1.0f / d : 0.0f;
    if (std::isinf(inv)) d = inv = 0.0f;  // as the reference: a block too small for 1 / d
    __m256i q[4];
    for (int i = 0; i < 4; ++i)
      q[i] = avx2::round_half_away(_mm256_mul_ps(v[i], _mm256_set1_ps(inv)));
    // The packs work within 128-bit halves: dword j of the result is q[j % 4][4 (j / 4) ..].
    const __m256i packed =
        _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
    const __m256i q8 =
        _mm256_permutevar8x32_epi32(packed, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out[b].q), q8);
    out[b].d = d;
    out[b].sum = avx2::hsum_epi32(
        _mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3])));
  }
}

// False for a dtype that is not quantised (the caller's scalar path handles it).
inline bool quant_gemv_rows_avx2(int32_t dtype, const void* w, size_t row_bytes, int64_t k,
                                 int64_t r0, int64_t r1, const quant::ActBlock* xq, float* y) {
  switch (dtype) {
    case TS_Q8_0:
      avx2::gemv_rows<avx2::Q8_0>(w, row_bytes, k, r0, r1, xq, y);
      return true;
    case TS_Q4_0:
      avx2::gemv_rows<avx2::Q4_0>(w, row_bytes, k, r0, r1, xq, y);
      return true;
    case TS_Q4_1:
      avx2::gemv_rows<avx2::Q4_1>(w, row_bytes, k, r0, r1, xq, y);
      return true;
    case TS_Q4_K:
      avx2::gemv_rows<avx2::QK45<false>>(w, row_bytes, k, r0, r1, xq, y);
      return true;
    case TS_Q5_K:
      avx2::gemv_rows<avx2::QK45<true>>(w, row_bytes, k, r0, r1, xq, y);
      return true;
    case TS_Q6_K:
      avx2::gemv_rows<avx2::Q6_K>(w, row_bytes, k, r0, r1, xq, y);
      return true;
    default:
      return false;
  }
}

// quant_gemv_rows_avx2 for m rows of x (quant_gemm_rows): false for a dtype that is not
// quantised.
inline bool quant_gemm_rows_avx2(int32_t dtype, const void* w, size_t row_bytes, int64_t k,
                                 int64_t r0, int64_t r1, const quant::ActBlock* xq, int64_t m,
                                 float* y, int64_t ldy) {
  constexpr int R = 2, M = 4;
  switch (dtype) {
    case TS_Q8_0:
      avx2::gemm_rows<avx2::Q8_0, R, M>(w, row_bytes, k, r0, r1, xq, m, y, ldy);
      return true;
    case TS_Q4_0:
      avx2::gemm_rows<avx2::Q4_0, R, M>(w, row_bytes, k, r0, r1, xq, m, y, ldy);
      return true;
    case TS_Q4_1:
      avx2::gemm_rows<avx2::Q4_1, R, M>(w, row_bytes, k, r0, r1, xq, m, y, ldy);
      return true;
    case TS_Q4_K:
      avx2::gemm_rows<avx2::QK45<false>, R, M>(w, row_bytes, k, r0, r1, xq, m, y, ldy);
      return true;
    case TS_Q5_K:
      avx2::gemm_rows<avx2::QK45<true>, R, M>(w, row_bytes, k, r0, r1, xq, m, y, ldy);
      return true;
    case TS_Q6_K:
      avx2::gemm_rows<avx2::Q6_K, R, M>(w, row_bytes, k, r0, r1, xq, m, y, ldy);
      return true;
    default:
      return false;
  }
}

// False for a dtype that is not quantised.
inline bool dequantize_rows_avx2(int32_t dtype, const void* w, size_t row_bytes, int64_t k,
                                 int64_t r0, int64_t r1, float* out) {
  const int64_t block = dtype_block_elems(dtype);
  const size_t bytes = dtype_block_bytes(dtype);
  switch (dtype) {
    case TS_Q8_0:
      avx2::dequantize_rows<avx2::dequantize_q8_0>(w, row_bytes, k, block, bytes, r0, r1, out);
      return true;
    case TS_Q4_0:
      avx2::dequantize_rows<avx2::dequantize_q4<false>>(w, row_bytes, k, block, bytes, r0, r1, out);
      return true;
    case TS_Q4_1:
      avx2::dequantize_rows<avx2::dequantize_q4<true>>(w, row_bytes, k, block, bytes, r0, r1, out);
      return true;
    case TS_Q4_K:
      avx2::dequantize_rows<avx2::dequantize_qk45<false>>(w, row_bytes, k, block, bytes, r0, r1,
                                                          out);
      return true;
    case TS_Q5_K:
      avx2::dequantize_rows<avx2::dequantize_qk45<true>>(w, row_bytes, k, block, bytes, r0, r1,
                                                         out);
      return true;
    case TS_Q6_K:
      avx2::dequantize_rows<avx2::dequantize_q6_k>(w, row_bytes, k, block, bytes, r0, r1, out);
      return true;
    default:
      return false;
  }
}

}  // namespace tessera::cpu::quant_detail

#endif  // TESSERA_CPU_AVX2
