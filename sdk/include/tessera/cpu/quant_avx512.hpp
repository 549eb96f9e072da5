// The quantised GEMV (quant_matmul.hpp) with AVX-512: the AVX2 kernels' scheme
// (quant_avx2.hpp) on 64-byte vectors, two activation blocks per vector, so each weight byte
// costs about half the instructions. Runs only where isa.hpp reports AVX-512.
//
// The 8-bit dot products take one of two paths, chosen at run time (the Vnni template
// argument): vpmaddubsw + vpmaddwd on any AVX-512 CPU, or the single vpdpbusd of AVX-512 VNNI
// where active_vnni(). vpdpbusd is written as inline assembly, so that everything here is
// compiled for plain AVX-512: the compiler cannot put a VNNI instruction of its own into the
// path that must run without it. vpdpbusd accumulates into int32, so a weight offset is
// folded into its starting value (-offset * Σa, in the Shared computed once per product);
// Q8_0's signed weights go in as w + 128, with -128 * Σa as the start. Q6_K multiplies each
// 16 values by their int8 scale in vpmaddwd, which VNNI would not shorten: one path.
#pragma once

#include <tessera/cpu/isa.hpp>
#include <tessera/cpu/quant_avx2.hpp>
#include <tessera/quant/blocks.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#if TESSERA_CPU_AVX512

namespace tessera::cpu::quant_detail {

namespace avx512 {

constexpr __mmask16 kAll = 0xffff;  // see gemv_avx512.hpp: the zero-masked forms are quiet

// acc + Σ w * a over each four bytes (w unsigned, a signed): AVX-512 VNNI's vpdpbusd.
TESSERA_TARGET_AVX512 inline __m512i dpbusd(__m512i acc, __m512i w, __m512i a) {
  asm("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(w), "v"(a));
  return acc;
}

// Σ w * a over each four bytes as int32 (w unsigned, a signed).
template <bool Vnni>
TESSERA_TARGET_AVX512 inline __m512i dot(__m512i w, __m512i a) {
  if constexpr (Vnni) return dpbusd(_mm512_setzero_si512(), w, a);
  return _mm512_madd_epi16(_mm512_maddubs_epi16(w, a), _mm512_set1_epi16(1));
}

// For weights stored as w + offset: what dot(w + offset, a, start) needs to give Σ w * a.
// With VNNI -offset * Σa over each four bytes (int32), without offset * Σa over each pair
// (int16, within range for offset <= 32).
template <bool Vnni>
TESSERA_TARGET_AVX512 inline __m512i offset_start(__m512i a, int offset) {
  const __m512i o = _mm512_set1_epi8(static_cast<char>(offset));
  if constexpr (Vnni)
    return _mm512_sub_epi32(_mm512_setzero_si512(), dpbusd(_mm512_setzero_si512(), o, a));
  return _mm512_maddubs_epi16(o, a);
}

template <bool Vnni>
TESSERA_TARGET_AVX512 inline __m512i dot(__m512i w, __m512i a, __m512i start) {
  if constexpr (Vnni) return dpbusd(start, w, a);
  return _mm512_madd_epi16(_mm512_sub_epi16(_mm512_maddubs_epi16(w, a), start),
                           _mm512_set1_epi16(1));
}

TESSERA_TARGET_AVX512 inline __m512i load512(const void* p) {
  return _mm512_loadu_si512(p);
}

TESSERA_TARGET_AVX512 inline __m512i pair(__m256i lo, __m256i hi) {
  return _mm512_maskz_inserti64x4(0xff, _mm512_castsi256_si512(lo), hi, 1);
}

// 32 bytes at p in both halves.
TESSERA_TARGET_AVX512 inline __m512i twice(const uint8_t* p) {
  return _mm512_maskz_broadcast_i64x4(0xff, avx2::load256(p));
}

TESSERA_TARGET_AVX512 inline __m512 to_float(__m512i v) {
  return _mm512_maskz_cvtepi32_ps(kAll, v);
}

// Lanes of v picked by idx (indices below 8 for a __m256, below 4 for a __m128).
TESSERA_TARGET_AVX512 inline __m512 spread(__m512 v, __m512i idx) {
  return _mm512_maskz_permutexvar_ps(kAll, idx, v);
}
TESSERA_TARGET_AVX512 inline __m512 spread(__m256 v, __m512i idx) {
  return spread(_mm512_castps256_ps512(v), idx);
}
TESSERA_TARGET_AVX512 inline __m512 spread(__m128 v, __m512i idx) {
  return spread(_mm512_castps128_ps512(v), idx);
}

TESSERA_TARGET_AVX512 inline float reduce(__m512 v) {
  const __m256 h = _mm256_add_ps(_mm512_maskz_extractf32x8_ps(0xff, v, 0),
                                 _mm512_maskz_extractf32x8_ps(0xff, v, 1));
  return hsum(h);
}

// Two Q4 blocks' nibbles (16 bytes at qs, 16 at qs + stride) as 64 values 0..15, in the
// order [block 0 values 0-15, block 1 values 0-15, block 0 16-31, block 1 16-31]: both blocks'
// bytes in each half, the upper half shifted down a nibble.
TESSERA_TARGET_AVX512 inline __m512i nibble_pair(const uint8_t* qs, size_t stride) {
  const __m512i twice = _mm512_mask_broadcast_i32x4(
      _mm512_maskz_broadcast_i32x4(kAll, _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs))),
      0xF0F0, _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs + stride)));
  const __m512i shift = _mm512_setr_epi64(0, 0, 0, 0, 4, 4, 4, 4);
  return _mm512_and_si512(_mm512_maskz_srlv_epi64(0xff, twice, shift), _mm512_set1_epi8(0x0F));
}

// Activation blocks a[0], a[1] in nibble_pair's order.
TESSERA_TARGET_AVX512 inline __m512i act_nibble_order(const quant::ActBlock* a) {
  const __m256i lo = _mm256_loadu2_m128i(reinterpret_cast<const __m128i*>(a[1].q),
                                         reinterpret_cast<const __m128i*>(a[0].q));
  const __m256i hi = _mm256_loadu2_m128i(reinterpret_cast<const __m128i*>(a[1].q + 16),
                                         reinterpret_cast<const __m128i*>(a[0].q + 16));
  return pair(lo, hi);
}

// ---- formats: as in quant_avx2.hpp, a step of kBlocks weight blocks (kBytes, kValues) -----
// The blocks' f16 scales are converted together: every halfword of the bytes that hold them,
// the lanes that are scales then picked (the others are weights read as f16: never used).

template <bool Vnni>
struct Q8_0 {
  static constexpr int64_t kBlocks = 2, kBlockBytes = 34, kValues = 64;
  struct Shared {
    __m512i a, start;
    __m512 d;  // lanes 0-7 block 0's d, 8-15 block 1's (as the int32 lanes of the dot)
  };
  TESSERA_TARGET_AVX512 static Shared share(const quant::ActBlock* a) {
    const __m512i q = pair(avx2::load256(a[0].q), avx2::load256(a[1].q));
    __m512i start = _mm512_setzero_si512();
    if constexpr (Vnni) start = offset_start<true>(q, 128);
    return {q, start,
            _mm512_castsi512_ps(pair(_mm256_castps_si256(_mm256_set1_ps(a[0].d)),
                                     _mm256_castps_si256(_mm256_set1_ps(a[1].d))))};
  }
  struct W {
    __m512i w;  // VNNI: w + 128; else |w|
    __mmask64 negative;
    __m512 d;  // the weight scales, as Shared::d
  };
  TESSERA_TARGET_AVX512 static W decode(const uint8_t* b) {
    const __m512i w = pair(avx2::load256(b + 2), avx2::load256(b + 36));
    // the 4 bytes at b and at b + 34: the scales are halfwords 0 and 2
    const __m128 wd = _mm_cvtph_ps(_mm_insert_epi32(
        _mm_cvtsi32_si128(static_cast<int>(load_u32(b))), static_cast<int>(load_u32(b + 34)), 1));
    const __m512i idx = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2, 2);
    if constexpr (Vnni) return {_mm512_xor_si512(w, _mm512_set1_epi8(-128)), 0, spread(wd, idx)};
    return {_mm512_abs_epi8(w), _mm512_movepi8_mask(w), spread(wd, idx)};
  }
  TESSERA_TARGET_AVX512 static void apply(const W& w, const Shared& s, __m512& acc) {
    __m512i prods;
    if constexpr (Vnni) {
      prods = dpbusd(s.start, w.w, s.a);
    } else {  // |w| times a with w's sign
      const __m512i a = _mm512_mask_sub_epi8(s.a, w.negative, _mm512_setzero_si512(), s.a);
      prods = dot<false>(w.w, a);
    }
    acc = _mm512_fmadd_ps(to_float(prods), _mm512_mul_ps(w.d, s.d), acc);
  }
  TESSERA_TARGET_AVX512 static void add(const uint8_t* b, const Shared& s, __m512& acc) {
    apply(decode(b), s, acc);
  }
};

// Q4_0 (offset 8) and Q4_1 (a minimum m per block, added as m * d_act * sum). The 32 bytes at
// b hold block 0's scale (and minimum) in halfwords 0 (1) and block 1's in kHalf (kHalf + 1).
template <bool Vnni, bool Q41>
struct Q4 {
  static constexpr int64_t kBlocks = 2, kBlockBytes = Q41 ? 20 : 18, kValues = 64;
  static constexpr int kHalf = kBlockBytes / 2;
  struct Shared {
    __m512i a, start;
    __m512 d;     // by the int32 lanes of the dot: 0-3 and 8-11 block 0, 4-7 and 12-15 block 1
    __m512 dsum;  // Q4_1: d * sum in lane 1 (block 0) and kHalf + 1 (block 1), else 0
  };
  TESSERA_TARGET_AVX512 static Shared share(const quant::ActBlock* a) {
    const __m512i q = act_nibble_order(a);
    __m512i start = _mm512_setzero_si512();
    if constexpr (!Q41) start = offset_start<Vnni>(q, 8);
    const __m128 d0 = _mm_set1_ps(a[0].d), d1 = _mm_set1_ps(a[1].d);
    const __m512 d = _mm512_castsi512_ps(_mm512_mask_broadcast_i32x4(
        _mm512_maskz_broadcast_i32x4(kAll, _mm_castps_si128(d0)), 0xF0F0, _mm_castps_si128(d1)));
    __m512 dsum = _mm512_setzero_ps();
    if constexpr (Q41) {
      alignas(64) float lanes[16] = {};
      lanes[1] = a[0].d * static_cast<float>(a[0].sum);
      lanes[kHalf + 1] = a[1].d * static_cast<float>(a[1].sum);
      dsum = _mm512_load_ps(lanes);
    }
    return {q, start, d, dsum};
  }
  struct W {
    __m512i q;
    __m512 wd;  // every halfword of the first 32 bytes as f16: the scales (and minima) in it
    __m512 d;   // the scales, as Shared::d
  };
  TESSERA_TARGET_AVX512 static W decode(const uint8_t* b) {
    const __m512 wd = _mm512_maskz_cvtph_ps(kAll, avx2::load256(b));
    const __m512i idx = _mm512_setr_epi32(0, 0, 0, 0, kHalf, kHalf, kHalf, kHalf, 0, 0, 0, 0, kHalf,
                                          kHalf, kHalf, kHalf);
    return {nibble_pair(b + (Q41 ? 4 : 2), kBlockBytes), wd, spread(wd, idx)};
  }
  TESSERA_TARGET_AVX512 static void apply(const W& w, const Shared& s, __m512& acc) {
    const __m512i prods = Q41 ? dot<Vnni>(w.q, s.a) : dot<Vnni>(w.q, s.a, s.start);
    acc = _mm512_fmadd_ps(to_float(prods), _mm512_mul_ps(w.d, s.d), acc);
    if constexpr (Q41)  // the minima times d * sum, in lanes 1 and kHalf + 1 of acc
      acc = _mm512_mask3_fmadd_ps(w.wd, s.dsum, acc, (1u << 1) | (1u << (kHalf + 1)));
  }
  TESSERA_TARGET_AVX512 static void add(const uint8_t* b, const Shared& s, __m512& acc) {
    apply(decode(b), s, acc);
  }
};

// The 8 activation blocks of a super-block: d (lanes 0-7) and d * sum (8-15), and their q as
// four pairs.
struct SuperActs {
  __m512 d_dsum;
  __m512i a[4];
};

TESSERA_TARGET_AVX512 inline SuperActs super_acts(const quant::ActBlock* a) {
  const avx2::SuperActs s = avx2::super_acts(a);
  SuperActs out{_mm512_castsi512_ps(pair(_mm256_castps_si256(s.d), _mm256_castps_si256(s.dsum))),
                {}};
  for (int p = 0; p < 4; ++p)
    out.a[p] = pair(avx2::load256(a[2 * p].q), avx2::load256(a[2 * p + 1].q));
  return out;
}

// Index vector: lanes 0-7 pick lane j, lanes 8-15 lane j + 1.
TESSERA_TARGET_AVX512 inline __m512i lanes_of(int j) {
  return pair(_mm256_set1_epi32(j), _mm256_set1_epi32(j + 1));
}

// Q4_K, Q5_K: a vector is sub-blocks 2g (low nibbles of qs[32g ..]) and 2g + 1 (high ones).
// One vector of the super-block's factors: lanes 0-7 d * scale_j * d_act_j, lanes 8-15
// dmin * min_j * d_act_j * sum_j (taken off the accumulator where they are).
template <bool Vnni, bool Q5>
struct QK45 {
  static constexpr int64_t kBlocks = 1, kBlockBytes = Q5 ? 176 : 144, kValues = 256;
  using Shared = SuperActs;
  TESSERA_TARGET_AVX512 static Shared share(const quant::ActBlock* a) { return super_acts(a); }
  struct W {
    __m512 sc_mn;  // lanes 0-7 d * scale_j, 8-15 dmin * min_j
    __m512i q[4];  // sub-blocks 2g, 2g + 1
  };
  TESSERA_TARGET_AVX512 static W decode(const uint8_t* b) {
    W w;
    const __m128i head = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b));
    const __m512 d_dmin = spread(_mm_cvtph_ps(head), lanes_of(0));
    const __m512 sc_mn = to_float(_mm512_maskz_cvtepu8_epi32(kAll, k_scales_mins(head)));
    w.sc_mn = _mm512_mul_ps(sc_mn, d_dmin);
    const uint8_t* qs = b + (Q5 ? 48 : 16);
    const __m512i qh = twice(b + 16);
#pragma GCC unroll 4
    for (int g = 0; g < 4; ++g) {
      const __m256i bytes = avx2::load256(qs + 32 * g);
      __m512i q =
          _mm512_and_si512(pair(bytes, _mm256_srli_epi16(bytes, 4)), _mm512_set1_epi8(0x0F));
      if constexpr (Q5) {  // + 16 where bit 2g (first half) or 2g + 1 (second half) of qh is set
        const __m512i bit = pair(_mm256_set1_epi8(static_cast<char>(1 << (2 * g))),
                                 _mm256_set1_epi8(static_cast<char>(1 << (2 * g + 1))));
        q = _mm512_mask_add_epi8(q, _mm512_test_epi8_mask(qh, bit), q, _mm512_set1_epi8(16));
      }
      w.q[g] = q;
    }
    return w;
  }
  TESSERA_TARGET_AVX512 static void apply(const W& w, const Shared& s, __m512& acc) {
    const __m512 f = _mm512_mul_ps(w.sc_mn, s.d_dsum);
    acc = _mm512_mask_sub_ps(acc, 0xff00, acc, f);
#pragma GCC unroll 4
    for (int g = 0; g < 4; ++g) {
      const __m512i prods = dot<Vnni>(w.q[g], s.a[g]);
      acc = _mm512_fmadd_ps(to_float(prods), spread(f, lanes_of(2 * g)), acc);
    }
  }
  TESSERA_TARGET_AVX512 static void add(const uint8_t* b, const Shared& s, __m512& acc) {
    apply(decode(b), s, acc);
  }
};

// Q6_K: a vector is chunks 2p and 2p + 1 (see avx2::Q6_K): for even p the low nibbles of
// ql[64h ..] and bits 0-1 | 2-3 of qh[32h ..] (h = p / 2), for odd p the high nibbles and bits
// 4-5 | 6-7.
struct Q6_K {
  static constexpr int64_t kBlocks = 1, kBlockBytes = 210, kValues = 256;
  struct Shared {
    SuperActs acts;
    __m512i offset[4];  // 32 * (a[2i] + a[2i+1]) per pair of chunks, int16
  };
  TESSERA_TARGET_AVX512 static Shared share(const quant::ActBlock* a) {
    Shared s{super_acts(a), {}};
    for (int p = 0; p < 4; ++p) s.offset[p] = offset_start<false>(s.acts.a[p], 32);
    return s;
  }
  struct W {
    __m512i q[4];   // chunks 2p, 2p + 1 (the offset 32 not taken off)
    __m512i sc[4];  // their scales, by int16 lane
    float d;
  };
  TESSERA_TARGET_AVX512 static W decode(const uint8_t* b) {
    W w;
    const __m512i sc16 = _mm512_castsi256_si512(
        _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 192))));
    w.d = f16_at(b + 208);
#pragma GCC unroll 4
    for (int p = 0; p < 4; ++p) {
      const int half = p / 2;
      const __m512i ql = load512(b + 64 * half);
      const __m512i qh = twice(b + 128 + 32 * half);
      const __m512i low =
          _mm512_and_si512(p % 2 == 0 ? ql : _mm512_srli_epi16(ql, 4), _mm512_set1_epi8(0x0F));
      // bits 2c, 2c + 1 of qh to bits 4, 5 (c = 0, 1 shift left by 4, 2; c = 2, 3 right by 0, 2)
      const __m512i high = _mm512_and_si512(
          p % 2 == 0 ? _mm512_sllv_epi16(qh, pair(_mm256_set1_epi16(4), _mm256_set1_epi16(2)))
                     : _mm512_srlv_epi16(qh, pair(_mm256_setzero_si256(), _mm256_set1_epi16(2))),
          _mm512_set1_epi8(0x30));
      w.q[p] = _mm512_or_si512(low, high);
      // int16 lanes by 8: scales 4p, 4p + 1 (chunk 2p), 4p + 2, 4p + 3 (chunk 2p + 1)
      const __m512i pick = pair(_mm256_setr_m128i(_mm_set1_epi16(static_cast<int16_t>(4 * p)),
                                                  _mm_set1_epi16(static_cast<int16_t>(4 * p + 1))),
                                _mm256_setr_m128i(_mm_set1_epi16(static_cast<int16_t>(4 * p + 2)),
                                                  _mm_set1_epi16(static_cast<int16_t>(4 * p + 3))));
      w.sc[p] = _mm512_maskz_permutexvar_epi16(~__mmask32{0}, pick, sc16);
    }
    return w;
  }
  TESSERA_TARGET_AVX512 static void apply(const W& w, const Shared& s, __m512& acc) {
    const __m512 scale = _mm512_mul_ps(s.acts.d_dsum, _mm512_set1_ps(w.d));
#pragma GCC unroll 4
    for (int p = 0; p < 4; ++p) {
      const __m512i pairs =
          _mm512_sub_epi16(_mm512_maddubs_epi16(w.q[p], s.acts.a[p]), s.offset[p]);
      const __m512i prods = _mm512_madd_epi16(pairs, w.sc[p]);
      acc = _mm512_fmadd_ps(to_float(prods), spread(scale, lanes_of(2 * p)), acc);
    }
  }
  TESSERA_TARGET_AVX512 static void add(const uint8_t* b, const Shared& s, __m512& acc) {
    apply(decode(b), s, acc);
  }
};

// Rows [r, r + R) of y, as avx2::gemv_group: `shared` holds each step's F::share.
template <class F, int R>
TESSERA_TARGET_AVX512 void gemv_group(const uint8_t* w, size_t row_bytes, int64_t blocks,
                                      size_t ahead, const typename F::Shared* shared, float* y) {
  constexpr int64_t kBytes = F::kBlocks * F::kBlockBytes;
  const int64_t steps = blocks / F::kBlocks;
  __m512 acc[R];
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r) acc[r] = _mm512_setzero_ps();
  for (int64_t i = 0; i < steps; ++i) {
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      const uint8_t* b = w + r * row_bytes + i * kBytes;
      avx2::prefetch_block<kBytes>(b + ahead);
      F::add(b, shared[i], acc[r]);
    }
  }
  if (steps * F::kBlocks < blocks) {  // the last block, paired with zeros (see gemv_rows)
    for (int r = 0; r < R; ++r) {
      uint8_t padded[2 * F::kBlockBytes] = {};
      std::memcpy(padded, w + r * row_bytes + (blocks - 1) * F::kBlockBytes, F::kBlockBytes);
      F::add(padded, shared[steps], acc[r]);
    }
  }
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r) y[r] = reduce(acc[r]);
}

// A last 32-value block without a partner (an odd number of blocks) is paired with a zero
// block and a zero activation block: it adds 0.
template <class F>
TESSERA_TARGET_AVX512 void gemv_rows(const void* w, size_t row_bytes, int64_t k, int64_t r0,
                                     int64_t r1, const quant::ActBlock* xq, float* y) {
  using Shared = typename F::Shared;
  const auto* base = static_cast<const uint8_t*>(w);
  const int64_t blocks = k / (F::kValues / F::kBlocks);
  const int64_t steps = blocks / F::kBlocks, odd = blocks % F::kBlocks;
  auto* shared = static_cast<Shared*>(shared_scratch((steps + odd) * sizeof(Shared)));
  for (int64_t i = 0; i < steps; ++i) shared[i] = F::share(xq + i * (F::kValues / quant::kBlock));
  if (odd != 0) {
    const quant::ActBlock last[2] = {xq[blocks - 1], {}};
    shared[steps] = F::share(last);
  }
  int64_t r = r0;
  for (; r + 4 <= r1; r += 4)
    gemv_group<F, 4>(base + r * row_bytes, row_bytes, blocks,
                     avx2::prefetch_ahead(row_bytes, r, r1), shared, y + r);
  for (; r < r1; ++r)
    gemv_group<F, 1>(base + r * row_bytes, row_bytes, blocks, r + 1 < r1 ? row_bytes : 0, shared,
                     y + r);
}

// The register tile of gemm_rows: W rows [r, r + R) by x rows [i, i + M), as
// avx2::gemm_tile: each step's weights decoded once, every sum the operations of gemv_group
// (the odd last block padded the same way). shared: at x row i, shared_stride per row.
template <class F, int R, int M>
TESSERA_TARGET_AVX512 void gemm_tile(const uint8_t* w, size_t row_bytes, int64_t blocks,
                                     const typename F::Shared* shared, int64_t shared_stride,
                                     float* y, int64_t ldy) {
  constexpr int64_t kBytes = F::kBlocks * F::kBlockBytes;
  const int64_t steps = blocks / F::kBlocks;
  __m512 acc[R][M];
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
    for (int j = 0; j < M; ++j) acc[r][j] = _mm512_setzero_ps();
  for (int64_t i = 0; i < steps; ++i) {
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      const typename F::W wd = F::decode(w + r * row_bytes + i * kBytes);
#pragma GCC unroll 8
      for (int j = 0; j < M; ++j) F::apply(wd, shared[j * shared_stride + i], acc[r][j]);
    }
  }
  if (steps * F::kBlocks < blocks) {
    for (int r = 0; r < R; ++r) {
      uint8_t padded[2 * F::kBlockBytes] = {};
      std::memcpy(padded, w + r * row_bytes + (blocks - 1) * F::kBlockBytes, F::kBlockBytes);
      const typename F::W wd = F::decode(padded);
      for (int j = 0; j < M; ++j) F::apply(wd, shared[j * shared_stride + steps], acc[r][j]);
    }
  }
#pragma GCC unroll 8
  for (int j = 0; j < M; ++j)
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) y[j * ldy + r] = reduce(acc[r][j]);
}

// As avx2::gemm_rows: kM x rows at a time (their Shared, as gemv_rows makes them, in the
// scratch), the W rows kR at a time under them.
template <class F, int kR, int kM>
TESSERA_TARGET_AVX512 void gemm_rows(const void* w, size_t row_bytes, int64_t k, int64_t r0,
                                     int64_t r1, const quant::ActBlock* xq, int64_t m, float* y,
                                     int64_t ldy) {
  using Shared = typename F::Shared;
  const auto* base = static_cast<const uint8_t*>(w);
  const int64_t blocks = k / (F::kValues / F::kBlocks), stride = k / quant::kBlock;
  const int64_t steps = blocks / F::kBlocks, odd = blocks % F::kBlocks, per_row = steps + odd;
  auto* shared =
      static_cast<Shared*>(shared_scratch(static_cast<size_t>(kM * per_row) * sizeof(Shared)));
  for (int64_t i0 = 0; i0 < m; i0 += kM) {
    const int64_t rows = std::min<int64_t>(kM, m - i0);
    for (int64_t j = 0; j < rows; ++j) {
      const quant::ActBlock* x = xq + (i0 + j) * stride;
      Shared* sj = shared + j * per_row;
      for (int64_t i = 0; i < steps; ++i) sj[i] = F::share(x + i * (F::kValues / quant::kBlock));
      if (odd != 0) {
        const quant::ActBlock last[2] = {x[blocks - 1], {}};
        sj[steps] = F::share(last);
      }
    }
    float* y0 = y + i0 * ldy;
    if (rows == kM) {
      int64_t r = r0;
      for (; r + kR <= r1; r += kR)
        gemm_tile<F, kR, kM>(base + r * row_bytes, row_bytes, blocks, shared, per_row, y0 + r, ldy);
      for (; r < r1; ++r)
        gemm_tile<F, 1, kM>(base + r * row_bytes, row_bytes, blocks, shared, per_row, y0 + r, ldy);
      continue;
    }
    for (int64_t j = 0; j < rows; ++j) {
      int64_t r = r0;
      for (; r + kR <= r1; r += kR)
        gemm_tile<F, kR, 1>(base + r * row_bytes, row_bytes, blocks, shared + j * per_row, per_row,
                            y0 + j * ldy + r, ldy);
      for (; r < r1; ++r)
        gemm_tile<F, 1, 1>(base + r * row_bytes, row_bytes, blocks, shared + j * per_row, per_row,
                           y0 + j * ldy + r, ldy);
    }
  }
}

template <bool Vnni>
TESSERA_TARGET_AVX512 bool gemm_rows_for(int32_t dtype, const void* w, size_t row_bytes, int64_t k,
                                         int64_t r0, int64_t r1, const quant::ActBlock* xq,
                                         int64_t m, float* y, int64_t ldy) {
  constexpr int R = 4, M = 4;
  switch (dtype) {
    case TS_Q8_0:
      gemm_rows<Q8_0<Vnni>, R, M>(w, row_bytes, k, r0, r1, xq, m, y, ldy);
      return true;
    case TS_Q4_0:
      gemm_rows<Q4<Vnni, false>, R, M>(w, row_bytes, k, r0, r1, xq, m, y, ldy);
      return true;
    case TS_Q4_1:
      gemm_rows<Q4<Vnni, true>, R, M>(w, row_bytes, k, r0, r1, xq, m, y, ldy);
      return true;
    case TS_Q4_K:
      gemm_rows<QK45<Vnni, false>, R, M>(w, row_bytes, k, r0, r1, xq, m, y, ldy);
      return true;
    case TS_Q5_K:
      gemm_rows<QK45<Vnni, true>, R, M>(w, row_bytes, k, r0, r1, xq, m, y, ldy);
      return true;
    case TS_Q6_K:
      gemm_rows<Q6_K, R, M>(w, row_bytes, k, r0, r1, xq, m, y, ldy);
      return true;
    default:
      return false;
  }
}

template <bool Vnni>
TESSERA_TARGET_AVX512 bool gemv_rows_for(int32_t dtype, const void* w, size_t row_bytes, int64_t k,
                                         int64_t r0, int64_t r1, const quant::ActBlock* xq,
                                         float* y) {
  switch (dtype) {
    case TS_Q8_0:
      gemv_rows<Q8_0<Vnni>>(w, row_bytes, k, r0, r1, xq, y);
      return true;
    case TS_Q4_0:
      gemv_rows<Q4<Vnni, false>>(w, row_bytes, k, r0, r1, xq, y);
      return true;
    case TS_Q4_1:
      gemv_rows<Q4<Vnni, true>>(w, row_bytes, k, r0, r1, xq, y);
      return true;
    case TS_Q4_K:
      gemv_rows<QK45<Vnni, false>>(w, row_bytes, k, r0, r1, xq, y);
      return true;
    case TS_Q5_K:
      gemv_rows<QK45<Vnni, true>>(w, row_bytes, k, r0, r1, xq, y);
      return true;
    case TS_Q6_K:
      gemv_rows<Q6_K>(w, row_bytes, k, r0, r1, xq, y);
      return true;
    default:
      return false;
  }
}

}  // namespace avx512

// ---- the entry points (quant_matmul.hpp) ------------------------------------------------

// As quantize_activations_avx2, 16 floats to a vector: the same bits.
TESSERA_TARGET_AVX512 inline void quantize_activations_avx512(const float* x, int64_t n,
                                                              quant::ActBlock* out) {
  using avx512::kAll;
  const __m512 sign = _mm512_set1_ps(-0.0f);
  for (int64_t b = 0; b < n / quant::kBlock; ++b) {
    const __m512 v[2] = {_mm512_loadu_ps(x + b * quant::kBlock),
                         _mm512_loadu_ps(x + b * quant::kBlock + 16)};
    const __m512 amax = _mm512_maskz_max_ps(kAll, _mm512_abs_ps(v[0]), _mm512_abs_ps(v[1]));
    float d = avx2::hmax(_mm256_max_ps(_mm512_maskz_extractf32x8_ps(0xff, amax, 0),
                                       _mm512_maskz_extractf32x8_ps(0xff, amax, 1))) /
              127.0f;
    float inv = d != 0.0f ? 1.0f / d : 0.0f;
    if (std::isinf(inv)) d = inv = 0.0f;
    __m512i q[2];
    for (int i = 0; i < 2; ++i) {  // std::lround, exactly (avx2::round_half_away)
      const __m512 s = _mm512_mul_ps(v[i], _mm512_set1_ps(inv));
      const __m512 a = _mm512_abs_ps(s);
      const __m512 t = _mm512_maskz_roundscale_ps(kAll, a, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
      const __mmask16 up =
          _mm512_cmp_ps_mask(a, _mm512_add_ps(t, _mm512_set1_ps(0.5f)), _CMP_GE_OQ);
      const __m512 r = _mm512_mask_add_ps(t, up, t, _mm512_set1_ps(1.0f));
      q[i] = _mm512_maskz_cvttps_epi32(kAll, _mm512_or_ps(r, _mm512_and_ps(sign, s)));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(out[b].q + 16 * i),
                       _mm512_maskz_cvtsepi32_epi8(kAll, q[i]));
    }
    out[b].d = d;
    const __m512i sum = _mm512_add_epi32(q[0], q[1]);
    out[b].sum = avx2::hsum_epi32(_mm256_add_epi32(_mm512_maskz_extracti32x8_epi32(0xff, sum, 0),
                                                   _mm512_maskz_extracti32x8_epi32(0xff, sum, 1)));
  }
}

// False for a dtype that is not quantised (the caller's scalar path handles it).
TESSERA_TARGET_AVX512 inline bool quant_gemv_rows_avx512(int32_t dtype, const void* w,
                                                         size_t row_bytes, int64_t k, int64_t r0,
                                                         int64_t r1, const quant::ActBlock* xq,
                                                         float* y, bool vnni) {
  return vnni ? avx512::gemv_rows_for<true>(dtype, w, row_bytes, k, r0, r1, xq, y)
              : avx512::gemv_rows_for<false>(dtype, w, row_bytes, k, r0, r1, xq, y);
}

// quant_gemv_rows_avx512 for m rows of x (quant_gemm_rows).
TESSERA_TARGET_AVX512 inline bool quant_gemm_rows_avx512(int32_t dtype, const void* w,
                                                         size_t row_bytes, int64_t k, int64_t r0,
                                                         int64_t r1, const quant::ActBlock* xq,
                                                         int64_t m, float* y, int64_t ldy,
                                                         bool vnni) {
  return vnni ? avx512::gemm_rows_for<true>(dtype, w, row_bytes, k, r0, r1, xq, m, y, ldy)
              : avx512::gemm_rows_for<false>(dtype, w, row_bytes, k, r0, r1, xq, m, y, ldy);
}

}  // namespace tessera::cpu::quant_detail

#endif  // TESSERA_CPU_AVX512
