// Backward kernels of the CPU blocks: the SwiGLU gating's derivative and the attention core
// of one query head (scores, softmax, the sum over V) differentiated (RoPE's inverse is
// rope_apply's `inverse`). Header-only, like ops.hpp; the products are in matmul_grad.hpp.
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

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

namespace tessera::cpu {

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
// q + (i - first) * ldq, output at o + (i - first) * ldo, stats[i - first]. Tiles of 16
// queries (prefill's attention_tile) where they apply, else one query at a time.
inline void attention_forward_stats(const AttentionHead& h, const float* q, int64_t ldq,
                                    int64_t first, int64_t count, float* o, int64_t ldo,
                                    AttentionPartial* stats) {
  int64_t t = 0;
#if TESSERA_CPU_AVX2
  if (h.kv_dtype == TS_F32)
    for (; t + kMinTiledQueries <= count; t += kAttentionTile) {
      const int64_t n = std::min(kAttentionTile, count - t);
      detail::attention_tile(h, q + t * ldq, ldq, first + t, n, o + t * ldo, ldo, stats + t);
    }
#endif
  for (; t < count; ++t) {
    const int64_t i = first + t;
    stats[t] = attention_chunk(h, q + t * ldq, i, 0, h.rows_for(i), o + t * ldo);
  }
}

// The backward of attention_forward_stats for every new token of one query head, one query
// row at a time (any mask; the blocked kernel below is checked against it): given q,
// o, do and the stats (row i at q + i * ldq ..., stats[i]), writes dq (row i at
// dq + i * ldq) and adds into dk, dv (row r at dk + r * ldk, as h's rows). h is f32 with
// h.cached == 0. Scratch: scratch_floats slots 2 and 3.
inline void attention_backward_head_rows(const AttentionHead& h, const float* q, const float* o,
                                         const float* d_o, int64_t ldq,
                                         const AttentionPartial* stats, float* dq, float* dk,
                                         float* dv, int64_t ldk) {
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

#if TESSERA_CPU_AVX2
namespace detail {

constexpr int64_t kBackwardKeys = 16;  // keys per block: two 8-float vectors of scores

// The key block's K or V rows [j0, j0 + cols) transposed: dst[d * 16 + c], zero past cols.
inline void transpose_key_block(const float* src, int64_t row_stride, int64_t cols, int64_t hd,
                                float* dst) {
  for (int64_t d = 0; d < hd; ++d)
    for (int64_t c = 0; c < kBackwardKeys; ++c)
      dst[d * kBackwardKeys + c] = c < cols ? src[c * row_stride + d] : 0.0f;
}

// acc[0..1] += sum_d x[d] * t[d][0..15], with two sets of sums (even and odd d) for the
// latency of the adds.
inline void scores16(const float* x, const float* t, int64_t hd, __m256& lo, __m256& hi) {
  __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), b0 = _mm256_setzero_ps(),
         b1 = _mm256_setzero_ps();
  for (int64_t d = 0; d < hd; d += 2) {
    const __m256 x0 = _mm256_set1_ps(x[d]), x1 = _mm256_set1_ps(x[d + 1]);
    const float* t0 = t + d * kBackwardKeys;
    a0 = _mm256_fmadd_ps(x0, _mm256_loadu_ps(t0), a0);
    a1 = _mm256_fmadd_ps(x0, _mm256_loadu_ps(t0 + 8), a1);
    b0 = _mm256_fmadd_ps(x1, _mm256_loadu_ps(t0 + kBackwardKeys), b0);
    b1 = _mm256_fmadd_ps(x1, _mm256_loadu_ps(t0 + kBackwardKeys + 8), b1);
  }
  lo = _mm256_add_ps(a0, b0);
  hi = _mm256_add_ps(a1, b1);
}

}  // namespace detail

// attention_backward_head_rows for a causal f32 head without a cache (training's case) and
// head_dim a multiple of 8, blocked over keys: for each block of 16 keys, every query that
// sees one of them adds into the block's dK and dV (kept hot in L1) and into its own dq.
// The same sums in another order (and P from vector scores), so equal to the row kernel
// within rounding; the order is fixed by the shapes alone. Scratch slots 1 to 5.
inline void attention_backward_head_blocked(const AttentionHead& h, const float* q, const float* o,
                                            const float* d_o, int64_t ldq,
                                            const AttentionPartial* stats, float* dq, float* dk,
                                            float* dv, int64_t ldk) {
  using detail::kBackwardKeys;
  const int64_t hd = h.head_dim, n = h.n_new;
  const auto* k = static_cast<const float*>(h.k);
  const auto* v = static_cast<const float*>(h.v);
  float* kt = detail::scratch_floats(static_cast<size_t>(hd * kBackwardKeys), 4);
  float* vt = detail::scratch_floats(static_cast<size_t>(hd * kBackwardKeys), 5);
  float* dk_block = detail::scratch_floats(static_cast<size_t>(hd * kBackwardKeys), 2);
  float* dv_block = detail::scratch_floats(static_cast<size_t>(hd * kBackwardKeys), 3);
  float* d_row = detail::scratch_floats(static_cast<size_t>(n), 1);  // D_i = do_i . o_i
  for (int64_t i = 0; i < n; ++i) {
    d_row[i] = dot(d_o + i * ldq, o + i * ldq, hd);
    for (int64_t d = 0; d < hd; ++d) dq[i * ldq + d] = 0.0f;
  }
  const __m256 lane_lo = _mm256_setr_ps(0, 1, 2, 3, 4, 5, 6, 7);
  const __m256 lane_hi = _mm256_setr_ps(8, 9, 10, 11, 12, 13, 14, 15);
  const __m256 scale_v = _mm256_set1_ps(h.scale);
  alignas(32) float p[kBackwardKeys], ds[kBackwardKeys];
  for (int64_t j0 = 0; j0 < n; j0 += kBackwardKeys) {
    const int64_t cols = std::min(kBackwardKeys, n - j0);
    const float* k_block = k + j0 * h.row_stride;
    detail::transpose_key_block(k_block, h.row_stride, cols, hd, kt);
    detail::transpose_key_block(v + j0 * h.row_stride, h.row_stride, cols, hd, vt);
    std::fill(dk_block, dk_block + hd * kBackwardKeys, 0.0f);
    std::fill(dv_block, dv_block + hd * kBackwardKeys, 0.0f);
    for (int64_t i = j0; i < n; ++i) {  // causal: query i sees keys <= i
      if (stats[i].sum <= 0.0f) continue;
      const int64_t seen = std::min(cols, i - j0 + 1);
      const float* qi = q + i * ldq;
      const float* doi = d_o + i * ldq;
      __m256 s_lo, s_hi, dp_lo, dp_hi;
      detail::scores16(qi, kt, hd, s_lo, s_hi);
      detail::scores16(doi, vt, hd, dp_lo, dp_hi);
      const __m256 mx = _mm256_set1_ps(stats[i].max_score);
      const __m256 inv_sum = _mm256_set1_ps(1.0f / stats[i].sum);
      const __m256 limit = _mm256_set1_ps(static_cast<float>(seen));
      const __m256 p_lo = _mm256_and_ps(
          _mm256_cmp_ps(lane_lo, limit, _CMP_LT_OQ),
          _mm256_mul_ps(exp8(_mm256_sub_ps(_mm256_mul_ps(s_lo, scale_v), mx)), inv_sum));
      const __m256 p_hi = _mm256_and_ps(
          _mm256_cmp_ps(lane_hi, limit, _CMP_LT_OQ),
          _mm256_mul_ps(exp8(_mm256_sub_ps(_mm256_mul_ps(s_hi, scale_v), mx)), inv_sum));
      const __m256 di = _mm256_set1_ps(d_row[i]);
      // scale dS: the factor dK and dq take.
      _mm256_store_ps(ds, _mm256_mul_ps(scale_v, _mm256_mul_ps(p_lo, _mm256_sub_ps(dp_lo, di))));
      _mm256_store_ps(ds + 8,
                      _mm256_mul_ps(scale_v, _mm256_mul_ps(p_hi, _mm256_sub_ps(dp_hi, di))));
      _mm256_store_ps(p, p_lo);
      _mm256_store_ps(p + 8, p_hi);
      float* dqi = dq + i * ldq;
      for (int64_t d0 = 0; d0 < hd; d0 += 8) {
        const __m256 qv = _mm256_loadu_ps(qi + d0), dov = _mm256_loadu_ps(doi + d0);
        __m256 acc = _mm256_loadu_ps(dqi + d0);
        for (int64_t c = 0; c < seen; ++c) {
          float* dvc = dv_block + c * hd + d0;
          float* dkc = dk_block + c * hd + d0;
          _mm256_storeu_ps(dvc, _mm256_fmadd_ps(_mm256_set1_ps(p[c]), dov, _mm256_loadu_ps(dvc)));
          const __m256 dsc = _mm256_set1_ps(ds[c]);
          _mm256_storeu_ps(dkc, _mm256_fmadd_ps(dsc, qv, _mm256_loadu_ps(dkc)));
          acc = _mm256_fmadd_ps(dsc, _mm256_loadu_ps(k_block + c * h.row_stride + d0), acc);
        }
        _mm256_storeu_ps(dqi + d0, acc);
      }
    }
    for (int64_t c = 0; c < cols; ++c) {
      axpy(1.0f, dk_block + c * hd, dk + (j0 + c) * ldk, hd);
      axpy(1.0f, dv_block + c * hd, dv + (j0 + c) * ldk, hd);
    }
  }
}
#endif

// The backward of one query head: the blocked kernel where it applies, else the row kernel.
inline void attention_backward_head(const AttentionHead& h, const float* q, const float* o,
                                    const float* d_o, int64_t ldq, const AttentionPartial* stats,
                                    float* dq, float* dk, float* dv, int64_t ldk) {
#if TESSERA_CPU_AVX2
  if (h.mask == nullptr && h.cached == 0 && h.kv_dtype == TS_F32 && h.head_dim % 8 == 0) {
    attention_backward_head_blocked(h, q, o, d_o, ldq, stats, dq, dk, dv, ldk);
    return;
  }
#endif
  attention_backward_head_rows(h, q, o, d_o, ldq, stats, dq, dk, dv, ldk);
}

}  // namespace tessera::cpu
