// Backward kernels of the CPU blocks: RoPE's inverse rotation, the SwiGLU gating's
// derivative and the attention core of one query head (scores, softmax, the sum over V)
// differentiated. Header-only, like ops.hpp; the products are in matmul_grad.hpp.
//
// Attention backward, for one query i of one head with visible rows j (S = scale q K^T,
// P = softmax(S), o = P V, and do = d loss / d o):
//   dV_j += P_ij do_i
//   dP_ij = do_i . V_j,  D_i = do_i . o_i,  dS_ij = P_ij (dP_ij - D_i)
//   dq_i = scale sum_j dS_ij K_j,  dK_j += scale dS_ij q_i
// P is rebuilt from the scores and the row's max and sum kept by the forward
// (AttentionPartial, from attention_chunk), with the forward's own exponential: it is the
// forward's P bit for bit.
#pragma once

#include <tessera/cpu/attention.hpp>
#include <tessera/cpu/attention_split.hpp>
#include <tessera/cpu/matmul.hpp>
#include <tessera/cpu/ops.hpp>
#include <tessera/cpu/simd.hpp>

#include <cmath>
#include <cstdint>
#include <limits>

namespace tessera::cpu {

// ------------------------------------------------------------------- RoPE

// The transpose (inverse) of rope_apply: rotates each pair by minus its angle. Applied to
// d loss / d (rotated v) it gives d loss / d v.
inline void rope_apply_inverse(float* v, int64_t n_heads, int64_t head_dim, const float* cos_t,
                               const float* sin_t) {
  const int64_t half = head_dim / 2;
  for (int64_t h = 0; h < n_heads; ++h) {
    float* a = v + h * head_dim;
    float* b = a + half;
    int64_t i = 0;
#if TESSERA_CPU_AVX2
    for (; i + 8 <= half; i += 8) {
      const __m256 c = _mm256_loadu_ps(cos_t + i), s = _mm256_loadu_ps(sin_t + i);
      const __m256 av = _mm256_loadu_ps(a + i), bv = _mm256_loadu_ps(b + i);
      _mm256_storeu_ps(a + i, _mm256_fmadd_ps(av, c, _mm256_mul_ps(bv, s)));
      _mm256_storeu_ps(b + i, _mm256_fmsub_ps(bv, c, _mm256_mul_ps(av, s)));
    }
#endif
    for (; i < half; ++i) {
      const float x0 = a[i], x1 = b[i];
      a[i] = x0 * cos_t[i] + x1 * sin_t[i];
      b[i] = x1 * cos_t[i] - x0 * sin_t[i];
    }
  }
}

// ----------------------------------------------------------------- SwiGLU

// With h = silu(g) * u and dh = d loss / d h: dg = dh * u * silu'(g) and du = dh * silu(g),
// silu'(g) = sigmoid(g) (1 + g (1 - sigmoid(g))).
inline void swiglu_gate_backward(const float* dh, const float* g, const float* u, float* dg,
                                 float* du, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float sig = 1.0f / (1.0f + std::exp(-g[i]));
    du[i] = dh[i] * g[i] * sig;
    dg[i] = dh[i] * u[i] * sig * (1.0f + g[i] * (1.0f - sig));
  }
}

// -------------------------------------------------------------- attention

// softmax_inplace's second half on n scores whose max and sum of exponentials are known:
// s[j] = exp(s[j] - max) / sum, evaluated exactly as softmax_inplace does (the same
// exponential on the same lanes), so that the result equals the forward's probabilities.
inline void softmax_from_stats(float* s, int64_t n, const AttentionPartial& stats) {
  if (stats.sum <= 0.0f) {
    for (int64_t i = 0; i < n; ++i) s[i] = 0.0f;
    return;
  }
  int64_t i = 0;
#if TESSERA_CPU_AVX2
  const __m256 mv = _mm256_set1_ps(stats.max_score);
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(s + i, exp8(_mm256_sub_ps(_mm256_loadu_ps(s + i), mv)));
#endif
  for (; i < n; ++i) s[i] = std::exp(s[i] - stats.max_score);
  scale(1.0f / stats.sum, s, n);
}

// The training forward of one query head over whole sequences (h.cached == 0, an f32 h):
// o and the row statistics of new tokens [first, first + count), query row i at
// q + (i - first) * ldq, output at o + (i - first) * ldo, stats[i - first].
inline void attention_forward_stats(const AttentionHead& h, const float* q, int64_t ldq,
                                    int64_t first, int64_t count, float* o, int64_t ldo,
                                    AttentionPartial* stats) {
  for (int64_t t = 0; t < count; ++t) {
    const int64_t i = first + t;
    stats[t] = attention_chunk(h, q + t * ldq, i, 0, h.rows_for(i), o + t * ldo);
  }
}

// The backward of attention_forward_stats for every new token of one query head: given q,
// o, do and the stats (row i at q + i * ldq ..., stats[i]), writes dq (row i at
// dq + i * ldq) and adds into dk, dv (row r at dk + r * ldk, as h's rows). h is f32 with
// h.cached == 0. Scratch: scratch_floats slots 2 and 3.
inline void attention_backward_head(const AttentionHead& h, const float* q, const float* o,
                                    const float* d_o, int64_t ldq, const AttentionPartial* stats,
                                    float* dq, float* dk, float* dv, int64_t ldk) {
  const int64_t hd = h.head_dim;
  const auto* k = static_cast<const float*>(h.k);
  const auto* v = static_cast<const float*>(h.v);
  const float neg_inf = -std::numeric_limits<float>::infinity();
  float* p = detail::scratch_floats(static_cast<size_t>(h.n_new), 2);
  float* dp = detail::scratch_floats(static_cast<size_t>(h.n_new), 3);
  for (int64_t i = 0; i < h.n_new; ++i) {
    const float* qi = q + i * ldq;
    const float* doi = d_o + i * ldq;
    float* dqi = dq + i * ldq;
    const int64_t rows = h.rows_for(i);
    if (stats[i].sum <= 0.0f) {  // sees no row: nothing flows back
      for (int64_t d = 0; d < hd; ++d) dqi[d] = 0.0f;
      continue;
    }
    attention_scores<F32Elems>(qi, k, h.row_stride, rows, hd, h.scale, p);
    if (h.mask != nullptr)
      for (int64_t r = 0; r < rows; ++r)
        if (!h.visible(i, r)) p[r] = neg_inf;
    softmax_from_stats(p, rows, stats[i]);
    attention_scores<F32Elems>(doi, v, h.row_stride, rows, hd, 1.0f, dp);
    const float di = dot(doi, o + i * ldq, hd);
    for (int64_t r = 0; r < rows; ++r) {
      dp[r] = p[r] == 0.0f ? 0.0f : p[r] * (dp[r] - di);  // dS
      if (p[r] != 0.0f) axpy(p[r], doi, dv + r * ldk, hd);
      if (dp[r] != 0.0f) axpy(h.scale * dp[r], qi, dk + r * ldk, hd);
    }
    attention_values<F32Elems>(dp, k, h.row_stride, rows, hd, dqi);
    scale(h.scale, dqi, hd);
  }
}

}  // namespace tessera::cpu
