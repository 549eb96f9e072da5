// Small vector helpers for the header-only CPU kernels: loads of f32/bf16/f16 as
// 8 floats, horizontal sums, dot products and a fast exp. AVX2 + FMA + F16C when
// the compiler targets them (the project's default flags), plain loops otherwise.
#pragma once

#include <tessera/abi.h>
#include <tessera/dtype.hpp>

#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include <immintrin.h>
#define TESSERA_CPU_AVX2 1
#else
#define TESSERA_CPU_AVX2 0
#endif

namespace tessera::cpu {

// Element loaders: one per weight storage type. `scalar` converts one element,
// `load8` (AVX2 only) converts 8 consecutive elements to floats.
struct F32Elems {
  using Elem = float;
  static float scalar(const float* p) { return *p; }
#if TESSERA_CPU_AVX2
  static __m256 load8(const float* p) {
    return _mm256_loadu_ps(p);
  }
#endif
};

struct Bf16Elems {
  using Elem = uint16_t;
  static float scalar(const uint16_t* p) { return bf16_to_f32(*p); }
#if TESSERA_CPU_AVX2
  // bf16 is the top half of an f32: widen to 32 bits and shift into place.
  static __m256 load8(const uint16_t* p) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  }
#endif
};

struct F16Elems {
  using Elem = uint16_t;
  static float scalar(const uint16_t* p) { return f16_to_f32(*p); }
#if TESSERA_CPU_AVX2
  static __m256 load8(const uint16_t* p) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  }
#endif
};

inline bool has_elems(int32_t dtype) {
  return dtype == TS_F32 || dtype == TS_BF16 || dtype == TS_F16;
}

// "<what> dtype X is not supported (expected f32, bf16 or f16)".
inline std::string unsupported_elems_message(int32_t dtype, const char* what) {
  return std::string(what) + " dtype " + dtype_name(dtype) +
         " is not supported (expected f32, bf16 or f16)";
}

// Calls f(L{}) with the element loader of `dtype` (F32Elems, Bf16Elems or F16Elems) and
// returns its result; another dtype throws std::invalid_argument (unsupported_elems_message).
template <class F>
decltype(auto) with_elems(int32_t dtype, const char* what, F&& f) {
  switch (dtype) {
    case TS_F32:
      return f(F32Elems{});
    case TS_BF16:
      return f(Bf16Elems{});
    case TS_F16:
      return f(F16Elems{});
    default:
      throw std::invalid_argument(unsupported_elems_message(dtype, what));
  }
}

#if TESSERA_CPU_AVX2
inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// Transposes an 8x8 block in place: element j of v[i] becomes element i of v[j].
inline void transpose8(__m256 v[8]) {
  const __m256 t0 = _mm256_unpacklo_ps(v[0], v[1]), t1 = _mm256_unpackhi_ps(v[0], v[1]);
  const __m256 t2 = _mm256_unpacklo_ps(v[2], v[3]), t3 = _mm256_unpackhi_ps(v[2], v[3]);
  const __m256 t4 = _mm256_unpacklo_ps(v[4], v[5]), t5 = _mm256_unpackhi_ps(v[4], v[5]);
  const __m256 t6 = _mm256_unpacklo_ps(v[6], v[7]), t7 = _mm256_unpackhi_ps(v[6], v[7]);
  // s0 = [col 0 of rows 0-3 | col 4 of rows 0-3], s1 = cols 1 and 5, ...
  const __m256 s0 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(1, 0, 1, 0));
  const __m256 s1 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(3, 2, 3, 2));
  const __m256 s2 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(1, 0, 1, 0));
  const __m256 s3 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(3, 2, 3, 2));
  const __m256 s4 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(1, 0, 1, 0));
  const __m256 s5 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(3, 2, 3, 2));
  const __m256 s6 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(1, 0, 1, 0));
  const __m256 s7 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(3, 2, 3, 2));
  v[0] = _mm256_permute2f128_ps(s0, s4, 0x20);
  v[1] = _mm256_permute2f128_ps(s1, s5, 0x20);
  v[2] = _mm256_permute2f128_ps(s2, s6, 0x20);
  v[3] = _mm256_permute2f128_ps(s3, s7, 0x20);
  v[4] = _mm256_permute2f128_ps(s0, s4, 0x31);
  v[5] = _mm256_permute2f128_ps(s1, s5, 0x31);
  v[6] = _mm256_permute2f128_ps(s2, s6, 0x31);
  v[7] = _mm256_permute2f128_ps(s3, s7, 0x31);
}

// exp for 8 floats: 2^n * p(r) with x = n ln2 + r, |r| <= ln2/2; relative error
// about 2e-7 over the range where the result is a normal float. Inputs below
// -87 give 0 (softmax's masked scores), above 88 saturate.
inline __m256 exp8(__m256 x) {
  const __m256 hi = _mm256_set1_ps(88.3762626647949f);
  const __m256 lo = _mm256_set1_ps(-87.3365447504f);
  const __m256 too_small = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
  x = _mm256_min_ps(_mm256_max_ps(x, lo), hi);
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  // r = x - n ln2 in two steps (Cody-Waite) to keep precision.
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
  p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  const __m256i e =
      _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  const __m256 result = _mm256_mul_ps(p, _mm256_castsi256_ps(e));
  return _mm256_andnot_ps(too_small, result);
}
#endif

// sum_i a[i] * b[i]
inline float dot(const float* a, const float* b, int64_t n) {
  int64_t i = 0;
  float s = 0.0f;
#if TESSERA_CPU_AVX2
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  for (; i + 16 <= n; i += 16) {
    acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
    acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), acc1);
  }
  for (; i + 8 <= n; i += 8)
    acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
  s = hsum(_mm256_add_ps(acc0, acc1));
#endif
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
}

// y[i] += a * x[i]
inline void axpy(float a, const float* x, float* y, int64_t n) {
  int64_t i = 0;
#if TESSERA_CPU_AVX2
  const __m256 av = _mm256_set1_ps(a);
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(y + i, _mm256_fmadd_ps(av, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
#endif
  for (; i < n; ++i) y[i] += a * x[i];
}

// y[i] *= a
inline void scale(float a, float* y, int64_t n) {
  int64_t i = 0;
#if TESSERA_CPU_AVX2
  const __m256 av = _mm256_set1_ps(a);
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_mul_ps(av, _mm256_loadu_ps(y + i)));
#endif
  for (; i < n; ++i) y[i] *= a;
}

}  // namespace tessera::cpu
