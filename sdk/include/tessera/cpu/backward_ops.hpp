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

constexpr int64_t kBackwardKeys = 16;  // keys per block: one register tile's width

// The key block's K or V rows [0, cols) transposed: dst[d * 16 + c], zero past cols.
inline void transpose_key_block(const float* src, int64_t row_stride, int64_t cols, int64_t hd,
                                float* dst) {
  for (int64_t d = 0; d < hd; ++d)
    for (int64_t c = 0; c < kBackwardKeys; ++c)
      dst[d * kBackwardKeys + c] = c < cols ? src[c * row_stride + d] : 0.0f;
}

}  // namespace detail

// attention_backward_head_rows for a causal f32 head without a cache (training's case) with
// head_dim a multiple of 16, as products on the register tiles (matmul.hpp's gemm_tiles). For
// each block of 16 keys J and the queries R that see one of them (R = [j0, n)):
//   S = Q_R K_J^T, dP = dO_R V_J^T               [|R|, 16]
//   P = exp(scale S - max_i) / sum_i, dS = scale P (dP - D_i)   (row i's stats; unseen 0)
//   dV_J += P^T dO_R,  dK_J += dS^T Q_R,  dq_R += dS K_J
// The same sums as the row kernel in another order, so equal to it within rounding; the
// order is fixed by the shapes alone. Scratch slots 1, 2, 4, 5 and 8.
inline void attention_backward_head_blocked(const AttentionHead& h, const float* q, const float* o,
                                            const float* d_o, int64_t ldq,
                                            const AttentionPartial* stats, float* dq, float* dk,
                                            float* dv, int64_t ldk) {
  using detail::kBackwardKeys;
  constexpr int64_t T = kBackwardKeys;
  const int64_t hd = h.head_dim, n = h.n_new;
  const auto* k = static_cast<const float*>(h.k);
  const auto* v = static_cast<const float*>(h.v);
  float* kt = detail::scratch_floats(static_cast<size_t>(hd * T), 4);
  float* vt = detail::scratch_floats(static_cast<size_t>(hd * T), 5);
  float* p = detail::scratch_floats(static_cast<size_t>(n * T), 1);   // S, then P: [r][16]
  float* ds = detail::scratch_floats(static_cast<size_t>(n * T), 2);  // dP, then scale dS
  float* d_row = detail::scratch_floats(static_cast<size_t>(n), 8);   // D_i = do_i . o_i
  for (int64_t i = 0; i < n; ++i) {
    d_row[i] = dot(d_o + i * ldq, o + i * ldq, hd);
    for (int64_t d = 0; d < hd; ++d) dq[i * ldq + d] = 0.0f;
  }
  const __m256 lane_lo = _mm256_setr_ps(0, 1, 2, 3, 4, 5, 6, 7);
  const __m256 lane_hi = _mm256_setr_ps(8, 9, 10, 11, 12, 13, 14, 15);
  const __m256 scale_v = _mm256_set1_ps(h.scale);
  for (int64_t j0 = 0; j0 < n; j0 += T) {
    const int64_t cols = std::min(T, n - j0), rows = n - j0;
    const float* k_block = k + j0 * h.row_stride;
    const float* q_rows = q + j0 * ldq;
    const float* do_rows = d_o + j0 * ldq;
    detail::transpose_key_block(k_block, h.row_stride, cols, hd, kt);
    detail::transpose_key_block(v + j0 * h.row_stride, h.row_stride, cols, hd, vt);
    detail::gemm_tiles(rows, q_rows, ldq, 1, kt, T, hd, p, T, T, false);
    detail::gemm_tiles(rows, do_rows, ldq, 1, vt, T, hd, ds, T, T, false);
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t i = j0 + r;
      float* pr = p + r * T;
      float* dsr = ds + r * T;
      if (stats[i].sum <= 0.0f) {  // sees no key: nothing flows back
        _mm256_storeu_ps(pr, _mm256_setzero_ps());
        _mm256_storeu_ps(pr + 8, _mm256_setzero_ps());
        _mm256_storeu_ps(dsr, _mm256_setzero_ps());
        _mm256_storeu_ps(dsr + 8, _mm256_setzero_ps());
        continue;
      }
      // Causal: query i sees keys j0 + c for c <= r (and c < cols).
      const __m256 limit = _mm256_set1_ps(static_cast<float>(std::min(cols, r + 1)));
      const __m256 mx = _mm256_set1_ps(stats[i].max_score);
      const __m256 inv_sum = _mm256_set1_ps(1.0f / stats[i].sum);
      const __m256 di = _mm256_set1_ps(d_row[i]);
      for (int half = 0; half < 2; ++half) {
        const __m256 lanes = half == 0 ? lane_lo : lane_hi;
        const __m256 s = _mm256_loadu_ps(pr + 8 * half);
        const __m256 e = exp8(_mm256_sub_ps(_mm256_mul_ps(s, scale_v), mx));
        const __m256 pv =
            _mm256_and_ps(_mm256_cmp_ps(lanes, limit, _CMP_LT_OQ), _mm256_mul_ps(e, inv_sum));
        const __m256 dp = _mm256_loadu_ps(dsr + 8 * half);
        _mm256_storeu_ps(pr + 8 * half, pv);
        _mm256_storeu_ps(dsr + 8 * half,
                         _mm256_mul_ps(scale_v, _mm256_mul_ps(pv, _mm256_sub_ps(dp, di))));
      }
    }
    for (int64_t d0 = 0; d0 < hd; d0 += T) {
      // P^T and dS^T are P and dS read down their columns (step 1 between keys).
      detail::gemm_tiles(cols, p, 1, T, do_rows + d0, ldq, rows, dv + j0 * ldk + d0, ldk, T, true);
      detail::gemm_tiles(cols, ds, 1, T, q_rows + d0, ldq, rows, dk + j0 * ldk + d0, ldk, T, true);
      detail::gemm_tiles(rows, ds, T, 1, k_block + d0, h.row_stride, cols, dq + j0 * ldq + d0, ldq,
                         T, true);
    }
  }
}
#endif

// The backward of one query head: the blocked kernel where it applies, else the row kernel.
inline void attention_backward_head(const AttentionHead& h, const float* q, const float* o,
                                    const float* d_o, int64_t ldq, const AttentionPartial* stats,
                                    float* dq, float* dk, float* dv, int64_t ldk) {
#if TESSERA_CPU_AVX2
  if (h.mask == nullptr && h.cached == 0 && h.kv_dtype == TS_F32 && h.head_dim % 16 == 0) {
    attention_backward_head_blocked(h, q, o, d_o, ldq, stats, dq, dk, dv, ldk);
    return;
  }
#endif
  attention_backward_head_rows(h, q, o, d_o, ldq, stats, dq, dk, dv, ldk);
}

}  // namespace tessera::cpu
