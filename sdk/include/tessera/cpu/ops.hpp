// Element-wise CPU kernels shared by plugins: RoPE, softmax, SiLU / SwiGLU gating,
// RMSNorm. Header-only; see simd.hpp for the instruction-set assumptions.
#pragma once

#include <tessera/cpu/simd.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <vector>

namespace tessera::cpu {

// ------------------------------------------------------------------- RoPE

// inv_freq[i] = theta^(-2i/head_dim) for i < head_dim/2, in double so that large
// positions keep their precision when the angle is formed.
inline std::vector<double> rope_inv_freq(int64_t head_dim, double theta) {
  std::vector<double> f(static_cast<size_t>(head_dim / 2));
  for (int64_t i = 0; i < head_dim / 2; ++i)
    f[static_cast<size_t>(i)] =
        std::pow(theta, -2.0 * static_cast<double>(i) / static_cast<double>(head_dim));
  return f;
}

// cos/sin of position * inv_freq[i] for the half = head_dim/2 pairs of one position.
inline void rope_angles(int64_t position, const double* inv_freq, int64_t half, float* cos_out,
                        float* sin_out) {
  for (int64_t i = 0; i < half; ++i) {
    const double a = static_cast<double>(position) * inv_freq[i];
    cos_out[i] = static_cast<float>(std::cos(a));
    sin_out[i] = static_cast<float>(std::sin(a));
  }
}

// Llama "rotate half" in place on n_heads consecutive heads of head_dim floats:
// element i pairs with i + head_dim/2. `inverse` rotates by minus each angle (the transpose,
// which training's backward applies to d loss / d (rotated v) to get d loss / d v).
inline void rope_apply(float* v, int64_t n_heads, int64_t head_dim, const float* cos_t,
                       const float* sin_t, bool inverse = false) {
  const int64_t half = head_dim / 2;
  const float sign = inverse ? -1.0f : 1.0f;
  for (int64_t h = 0; h < n_heads; ++h) {
    float* a = v + h * head_dim;
    float* b = a + half;
    int64_t i = 0;
#if TESSERA_CPU_AVX2
    const __m256 sign_v = _mm256_set1_ps(sign);
    for (; i + 8 <= half; i += 8) {
      const __m256 c = _mm256_loadu_ps(cos_t + i);
      const __m256 s = _mm256_mul_ps(sign_v, _mm256_loadu_ps(sin_t + i));
      const __m256 av = _mm256_loadu_ps(a + i), bv = _mm256_loadu_ps(b + i);
      _mm256_storeu_ps(a + i, _mm256_fmsub_ps(av, c, _mm256_mul_ps(bv, s)));
      _mm256_storeu_ps(b + i, _mm256_fmadd_ps(av, s, _mm256_mul_ps(bv, c)));
    }
#endif
    for (; i < half; ++i) {
      const float x0 = a[i], x1 = b[i], s = sign * sin_t[i];
      a[i] = x0 * cos_t[i] - x1 * s;
      b[i] = x1 * cos_t[i] + x0 * s;
    }
  }
}

// ---------------------------------------------------------------- softmax

// In place over n scores; -infinity entries get probability 0. Returns the sum
// of exponentials before normalisation (0 when every entry is -infinity, in
// which case all outputs are 0).
inline float softmax_inplace(float* s, int64_t n) {
  float max_v = -std::numeric_limits<float>::infinity();
  for (int64_t i = 0; i < n; ++i) max_v = s[i] > max_v ? s[i] : max_v;
  if (max_v == -std::numeric_limits<float>::infinity()) {
    for (int64_t i = 0; i < n; ++i) s[i] = 0.0f;
    return 0.0f;
  }
  int64_t i = 0;
  float sum = 0.0f;
#if TESSERA_CPU_AVX2
  const __m256 mv = _mm256_set1_ps(max_v);
  __m256 acc = _mm256_setzero_ps();
  for (; i + 8 <= n; i += 8) {
    const __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(s + i), mv));
    _mm256_storeu_ps(s + i, e);
    acc = _mm256_add_ps(acc, e);
  }
  sum = hsum(acc);
#endif
  for (; i < n; ++i) {
    s[i] = std::exp(s[i] - max_v);
    sum += s[i];
  }
  scale(1.0f / sum, s, n);
  return sum;
}

// -------------------------------------------------------------- attention

// out[r] = dot(q, k + r * row_stride) * scale for r < rows: the scores of one
// query against `rows` cached keys of head_dim elements, four keys at a time.
// L is the keys' storage (F32Elems, or Bf16Elems / F16Elems for a 16-bit cache).
template <class L = F32Elems>
inline void attention_scores(const float* q, const typename L::Elem* k, int64_t row_stride,
                             int64_t rows, int64_t head_dim, float scale, float* out) {
  using Elem = typename L::Elem;
  int64_t r = 0;
#if TESSERA_CPU_AVX2
  if (head_dim % 8 == 0) {
    const __m128 sv = _mm_set1_ps(scale);
    for (; r + 4 <= rows; r += 4) {
      const Elem* k0 = k + r * row_stride;
      const Elem* k1 = k0 + row_stride;
      const Elem* k2 = k1 + row_stride;
      const Elem* k3 = k2 + row_stride;
      __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(),
             a3 = _mm256_setzero_ps();
      for (int64_t d = 0; d < head_dim; d += 8) {
        const __m256 qv = _mm256_loadu_ps(q + d);
        a0 = _mm256_fmadd_ps(qv, L::load8(k0 + d), a0);
        a1 = _mm256_fmadd_ps(qv, L::load8(k1 + d), a1);
        a2 = _mm256_fmadd_ps(qv, L::load8(k2 + d), a2);
        a3 = _mm256_fmadd_ps(qv, L::load8(k3 + d), a3);
      }
      // Lanes of h: the four sums split over the two 128-bit halves.
      const __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(a0, a1), _mm256_hadd_ps(a2, a3));
      const __m128 sum = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
      _mm_storeu_ps(out + r, _mm_mul_ps(sum, sv));
    }
  }
#endif
  for (; r < rows; ++r) {
    const Elem* kr = k + r * row_stride;
    if constexpr (std::is_same_v<Elem, float>) {
      out[r] = dot(q, kr, head_dim) * scale;
    } else {
      float s = 0.0f;
      for (int64_t d = 0; d < head_dim; ++d) s += q[d] * L::scalar(kr + d);
      out[r] = s * scale;
    }
  }
}

namespace detail {
#if TESSERA_CPU_AVX2
// out[0 .. 8N) = sum_r p[r] * v[r][0 .. 8N), accumulated in N registers.
template <int N, class L>
void weighted_rows(const float* p, const typename L::Elem* v, int64_t row_stride, int64_t rows,
                   float* out) {
  __m256 acc[N];
#pragma GCC unroll 8
  for (int j = 0; j < N; ++j) acc[j] = _mm256_setzero_ps();
  for (int64_t r = 0; r < rows; ++r) {
    if (p[r] == 0.0f) continue;
    const __m256 pv = _mm256_set1_ps(p[r]);
    const typename L::Elem* vr = v + r * row_stride;
#pragma GCC unroll 8
    for (int j = 0; j < N; ++j) acc[j] = _mm256_fmadd_ps(pv, L::load8(vr + 8 * j), acc[j]);
  }
#pragma GCC unroll 8
  for (int j = 0; j < N; ++j) _mm256_storeu_ps(out + 8 * j, acc[j]);
}
#endif
}  // namespace detail

// out[d] = sum_r p[r] * v[r * row_stride + d] for d < head_dim (rows with p = 0
// skipped); L is the values' storage, as in attention_scores.
template <class L = F32Elems>
inline void attention_values(const float* p, const typename L::Elem* v, int64_t row_stride,
                             int64_t rows, int64_t head_dim, float* out) {
#if TESSERA_CPU_AVX2
  if (head_dim % 8 == 0) {
    for (int64_t d0 = 0; d0 < head_dim; d0 += 64) {
      const int64_t blocks = std::min<int64_t>(8, (head_dim - d0) / 8);
      const typename L::Elem* vd = v + d0;
      switch (blocks) {
        case 1:
          detail::weighted_rows<1, L>(p, vd, row_stride, rows, out + d0);
          break;
        case 2:
          detail::weighted_rows<2, L>(p, vd, row_stride, rows, out + d0);
          break;
        case 3:
          detail::weighted_rows<3, L>(p, vd, row_stride, rows, out + d0);
          break;
        case 4:
          detail::weighted_rows<4, L>(p, vd, row_stride, rows, out + d0);
          break;
        case 5:
          detail::weighted_rows<5, L>(p, vd, row_stride, rows, out + d0);
          break;
        case 6:
          detail::weighted_rows<6, L>(p, vd, row_stride, rows, out + d0);
          break;
        case 7:
          detail::weighted_rows<7, L>(p, vd, row_stride, rows, out + d0);
          break;
        default:
          detail::weighted_rows<8, L>(p, vd, row_stride, rows, out + d0);
          break;
      }
    }
    return;
  }
#endif
  for (int64_t d = 0; d < head_dim; ++d) out[d] = 0.0f;
  for (int64_t r = 0; r < rows; ++r) {
    if (p[r] == 0.0f) continue;
    const typename L::Elem* vr = v + r * row_stride;
    if constexpr (std::is_same_v<typename L::Elem, float>) {
      axpy(p[r], vr, out, head_dim);
    } else {
      for (int64_t d = 0; d < head_dim; ++d) out[d] += p[r] * L::scalar(vr + d);
    }
  }
}

// ------------------------------------------------------------------- SiLU

inline float silu(float x) {
  return x / (1.0f + std::exp(-x));
}

// gate[i] = silu(gate[i]) * up[i]  (SwiGLU's gating, in place on gate)
inline void swiglu_gate(float* gate, const float* up, int64_t n) {
  int64_t i = 0;
#if TESSERA_CPU_AVX2
  const __m256 one = _mm256_set1_ps(1.0f);
  const __m256 sign = _mm256_set1_ps(-0.0f);
  for (; i + 8 <= n; i += 8) {
    const __m256 g = _mm256_loadu_ps(gate + i);
    const __m256 den = _mm256_add_ps(one, exp8(_mm256_xor_ps(g, sign)));
    _mm256_storeu_ps(gate + i, _mm256_mul_ps(_mm256_div_ps(g, den), _mm256_loadu_ps(up + i)));
  }
#endif
  for (; i < n; ++i) gate[i] = silu(gate[i]) * up[i];
}

// ---------------------------------------------------------------- RMSNorm

// y[r] = x[r] / sqrt(mean(x[r]^2) + eps) * w for n_rows rows of dim floats.
inline void rmsnorm(const float* x, const float* w, double eps, int64_t n_rows, int64_t dim,
                    float* y) {
  for (int64_t r = 0; r < n_rows; ++r) {
    const float* xr = x + r * dim;
    float* yr = y + r * dim;
    const double ms = static_cast<double>(dot(xr, xr, dim)) / static_cast<double>(dim);
    const float inv = static_cast<float>(1.0 / std::sqrt(ms + eps));
    for (int64_t i = 0; i < dim; ++i) yr[i] = xr[i] * inv * w[i];
  }
}

}  // namespace tessera::cpu
