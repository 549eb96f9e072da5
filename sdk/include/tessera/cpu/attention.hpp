// Attention of one query head over its KV head's rows, for a range of the new
// tokens of one sequence: scores, softmax, weighted sum of values.
//
// Two paths, same results up to summation order:
//  - one query at a time (decode, short batches): scores by dot products,
//    softmax over the row, values accumulated in registers (ops.hpp);
//  - tiles of kAttentionTile queries (prefill): the scores of 16 queries are
//    one small matrix product S^T = K Q^T on the GEMM register tile, with the
//    16 queries in the vector lanes, so the masked softmax runs on whole
//    vectors, and O^T = V^T P^T is a second product. Each K/V row is read once
//    per tile instead of once per query.
// The cache may be f32, bf16 or f16 (AttentionHead::kv_dtype): the one-by-one
// path reads 16-bit rows directly; the tiled path widens the rows it needs to
// f32 once per call.
// reference_attention is the plain loop (in double) both are tested against.
#pragma once

#include <tessera/cpu/matmul.hpp>
#include <tessera/cpu/ops.hpp>
#include <tessera/cpu/simd.hpp>
#include <tessera/dtype.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

namespace tessera::cpu {

// The keys and values one query head attends to, and which of them each new
// token sees: every cached row, and among the new rows (which follow the
// cached ones) the causal prefix or what the tree mask allows.
struct AttentionHead {
  const void* k = nullptr;  // row r at element r * row_stride, head_dim elements of kv_dtype
  const void* v = nullptr;
  int32_t kv_dtype = TS_F32;  // the cache's storage: f32, bf16 or f16
  int64_t row_stride = 0;     // in elements
  int64_t head_dim = 0;
  int64_t cached = 0;             // rows before the new tokens
  int64_t n_new = 0;              // new tokens of the sequence
  const uint8_t* mask = nullptr;  // NULL: causal; else [n_new][n_new], nonzero = visible
  float scale = 1.0f;             // applied to q.k

  // Rows the scores of new token i span (masked ones inside get -infinity).
  int64_t rows_for(int64_t i) const { return mask != nullptr ? cached + n_new : cached + i + 1; }
  // Element d of key / value row r as a float.
  float k_at(int64_t r, int64_t d) const { return element(k, r * row_stride + d); }
  float v_at(int64_t r, int64_t d) const { return element(v, r * row_stride + d); }
  float element(const void* base, int64_t i) const {
    if (kv_dtype == TS_F32) return static_cast<const float*>(base)[i];
    const uint16_t bits = static_cast<const uint16_t*>(base)[i];
    return kv_dtype == TS_BF16 ? bf16_to_f32(bits) : f16_to_f32(bits);
  }
  bool visible(int64_t i, int64_t row) const {
    if (row < cached) return true;
    if (mask == nullptr) return row <= cached + i;
    return row < cached + n_new && mask[i * n_new + (row - cached)] != 0;
  }
};

// One query's partial over a chunk of rows.
struct AttentionPartial {
  float max_score = -std::numeric_limits<float>::infinity();  // -inf: no visible row
  float sum = 0.0f;                                           // sum of exp(s - max_score)
};

constexpr int64_t kAttentionTile = 16;   // queries per tile (the GEMM tile's columns)
constexpr int64_t kMinTiledQueries = 4;  // fewer: one query at a time

// out[i] for new tokens i in [first, first + count): q row i at q + (i - first) * ldq,
// out row at out + (i - first) * ldo. A token that sees no row gets zeros.
inline void reference_attention(const AttentionHead& h, const float* q, int64_t ldq, int64_t first,
                                int64_t count, float* out, int64_t ldo) {
  std::vector<double> p;
  for (int64_t t = 0; t < count; ++t) {
    const int64_t i = first + t, rows = h.rows_for(i);
    const float* qi = q + t * ldq;
    p.assign(static_cast<size_t>(rows), 0.0);
    double max_s = -std::numeric_limits<double>::infinity();
    for (int64_t r = 0; r < rows; ++r) {
      if (!h.visible(i, r)) continue;
      double s = 0;
      for (int64_t d = 0; d < h.head_dim; ++d) s += static_cast<double>(qi[d]) * h.k_at(r, d);
      p[static_cast<size_t>(r)] = s * h.scale;
      max_s = std::max(max_s, p[static_cast<size_t>(r)]);
    }
    double sum = 0;
    for (int64_t r = 0; r < rows; ++r) {
      p[static_cast<size_t>(r)] =
          h.visible(i, r) ? std::exp(p[static_cast<size_t>(r)] - max_s) : 0.0;
      sum += p[static_cast<size_t>(r)];
    }
    for (int64_t d = 0; d < h.head_dim; ++d) {
      double o = 0;
      for (int64_t r = 0; r < rows; ++r) o += p[static_cast<size_t>(r)] * h.v_at(r, d);
      out[t * ldo + d] = sum > 0 ? static_cast<float>(o / sum) : 0.0f;
    }
  }
}

namespace detail {

// One query at a time: dot products, softmax over the row, weighted values,
// reading the cache in its own storage L.
template <class L>
void attention_one_by_one(const AttentionHead& h, const float* q, int64_t ldq, int64_t first,
                          int64_t count, float* out, int64_t ldo) {
  using Elem = typename L::Elem;
  const float neg_inf = -std::numeric_limits<float>::infinity();
  float* scores = scratch_floats(static_cast<size_t>(h.cached + h.n_new), 1);
  const auto* k = static_cast<const Elem*>(h.k);
  const auto* v = static_cast<const Elem*>(h.v);
  for (int64_t t = 0; t < count; ++t) {
    const int64_t i = first + t, rows = h.rows_for(i);
    attention_scores<L>(q + t * ldq, k, h.row_stride, rows, h.head_dim, h.scale, scores);
    if (h.mask != nullptr)
      for (int64_t j = 0; j < h.n_new; ++j)
        if (h.mask[i * h.n_new + j] == 0) scores[h.cached + j] = neg_inf;
    softmax_inplace(scores, rows);
    attention_values<L>(scores, v, h.row_stride, rows, h.head_dim, out + t * ldo);
  }
}

inline void attention_one_by_one(const AttentionHead& h, const float* q, int64_t ldq, int64_t first,
                                 int64_t count, float* out, int64_t ldo) {
  with_elems(h.kv_dtype, "attention: KV cache", [&](auto elems) {
    attention_one_by_one<decltype(elems)>(h, q, ldq, first, count, out, ldo);
  });
}

// dst[r * n + d] = src row r element d as f32, for r < rows, d < n.
template <class L>
void widen_rows(const typename L::Elem* src, int64_t row_stride, int64_t rows, int64_t n,
                float* dst) {
  for (int64_t r = 0; r < rows; ++r) {
    const typename L::Elem* s = src + r * row_stride;
    float* o = dst + r * n;
    int64_t d = 0;
#if TESSERA_CPU_AVX2
    for (; d + 8 <= n; d += 8) _mm256_storeu_ps(o + d, L::load8(s + d));
#endif
    for (; d < n; ++d) o[d] = L::scalar(s + d);
  }
}

// The rows [0, rows) of a 16-bit cache head as contiguous f32 (row stride
// head_dim) in scratch slots 4 and 5: the tiles read every row sixteen times,
// so converting once is cheaper than converting in the tile.
inline AttentionHead widened_head(const AttentionHead& h, int64_t rows) {
  const int64_t hd = h.head_dim;
  float* k = scratch_floats(static_cast<size_t>(rows * hd), 4);
  float* v = scratch_floats(static_cast<size_t>(rows * hd), 5);
  with_elems(h.kv_dtype, "attention: KV cache", [&](auto elems) {
    using L = decltype(elems);
    widen_rows<L>(static_cast<const typename L::Elem*>(h.k), h.row_stride, rows, hd, k);
    widen_rows<L>(static_cast<const typename L::Elem*>(h.v), h.row_stride, rows, hd, v);
  });
  AttentionHead w = h;
  w.k = k;
  w.v = v;
  w.kv_dtype = TS_F32;
  w.row_stride = hd;
  return w;
}

#if TESSERA_CPU_AVX2
// Up to 16 queries [first, first + count) in the lanes of two vectors.
// h is an f32 cache (widened_head for a 16-bit one). With `stats`, also each query's
// softmax max and sum of exponentials (training's forward keeps them for the backward).
inline void attention_tile(const AttentionHead& h, const float* q, int64_t ldq, int64_t first,
                           int64_t count, float* out, int64_t ldo,
                           AttentionPartial* stats = nullptr) {
  const int64_t hd = h.head_dim, rows = h.rows_for(first + count - 1);
  const auto* hk = static_cast<const float*>(h.k);
  const auto* hv = static_cast<const float*>(h.v);
  constexpr int64_t T = kAttentionTile;
  float* qt = scratch_floats(static_cast<size_t>(hd * T), 1);    // Q^T, scaled: [hd][16]
  float* st = scratch_floats(static_cast<size_t>(rows * T), 2);  // S^T, then P^T: [rows][16]
  float* ot = scratch_floats(static_cast<size_t>(hd * T), 3);    // O^T: [hd][16]
  for (int64_t d = 0; d < hd; ++d)
    for (int64_t t = 0; t < T; ++t) qt[d * T + t] = t < count ? q[t * ldq + d] * h.scale : 0.0f;

  // S^T[r][t] = k_r . q_t: key rows by 16 queries per register tile.
  gemm_tiles(rows, hk, h.row_stride, 1, qt, T, hd, st, T, T, false);

  // Masked softmax down each column (one query per lane).
  const __m256 neg_inf = _mm256_set1_ps(-std::numeric_limits<float>::infinity());
  // Causal: query first + t sees rows <= cached + first + t.
  alignas(32) float limit_f[T];
  for (int64_t t = 0; t < T; ++t)
    limit_f[t] = static_cast<float>(t < count ? h.cached + first + t : -1);
  const __m256 limit0 = _mm256_load_ps(limit_f), limit1 = _mm256_load_ps(limit_f + 8);
  alignas(32) float visible_f[T];
  __m256 max0 = neg_inf, max1 = neg_inf;
  for (int64_t r = 0; r < rows; ++r) {
    __m256 s0 = _mm256_loadu_ps(st + r * T), s1 = _mm256_loadu_ps(st + r * T + 8);
    if (r >= h.cached) {
      __m256 hide0, hide1;
      if (h.mask == nullptr) {
        const __m256 row = _mm256_set1_ps(static_cast<float>(r));
        hide0 = _mm256_cmp_ps(row, limit0, _CMP_GT_OQ);
        hide1 = _mm256_cmp_ps(row, limit1, _CMP_GT_OQ);
      } else {
        // Column r - cached of the mask rows of tokens first .. first + count - 1.
        const uint8_t* column = h.mask + first * h.n_new + (r - h.cached);
        int64_t t = 0;
        for (; t < count; ++t) visible_f[t] = column[t * h.n_new] != 0 ? 1.0f : 0.0f;
        for (; t < T; ++t) visible_f[t] = 0.0f;
        hide0 = _mm256_cmp_ps(_mm256_load_ps(visible_f), _mm256_setzero_ps(), _CMP_EQ_OQ);
        hide1 = _mm256_cmp_ps(_mm256_load_ps(visible_f + 8), _mm256_setzero_ps(), _CMP_EQ_OQ);
      }
      s0 = _mm256_blendv_ps(s0, neg_inf, hide0);
      s1 = _mm256_blendv_ps(s1, neg_inf, hide1);
      _mm256_storeu_ps(st + r * T, s0);
      _mm256_storeu_ps(st + r * T + 8, s1);
    }
    max0 = _mm256_max_ps(max0, s0);
    max1 = _mm256_max_ps(max1, s1);
  }
  // A query that sees nothing: subtract 0, so that exp(-inf) = 0 and its sum is 0.
  max0 = _mm256_blendv_ps(max0, _mm256_setzero_ps(), _mm256_cmp_ps(max0, neg_inf, _CMP_EQ_OQ));
  max1 = _mm256_blendv_ps(max1, _mm256_setzero_ps(), _mm256_cmp_ps(max1, neg_inf, _CMP_EQ_OQ));
  __m256 sum0 = _mm256_setzero_ps(), sum1 = _mm256_setzero_ps();
  for (int64_t r = 0; r < rows; ++r) {
    const __m256 p0 = exp8(_mm256_sub_ps(_mm256_loadu_ps(st + r * T), max0));
    const __m256 p1 = exp8(_mm256_sub_ps(_mm256_loadu_ps(st + r * T + 8), max1));
    _mm256_storeu_ps(st + r * T, p0);
    _mm256_storeu_ps(st + r * T + 8, p1);
    sum0 = _mm256_add_ps(sum0, p0);
    sum1 = _mm256_add_ps(sum1, p1);
  }

  // O^T[d][t] = sum_r v_r[d] p_r[t]: dimensions by 16 queries per tile.
  gemm_tiles(hd, hv, 1, h.row_stride, st, T, rows, ot, T, T, false);

  alignas(32) float sums[T], maxes[T];
  _mm256_store_ps(sums, sum0);
  _mm256_store_ps(sums + 8, sum1);
  _mm256_store_ps(maxes, max0);
  _mm256_store_ps(maxes + 8, max1);
  for (int64_t t = 0; t < count; ++t) {
    const float inv = sums[t] > 0.0f ? 1.0f / sums[t] : 0.0f;
    float* o = out + t * ldo;
    for (int64_t d = 0; d < hd; ++d) o[d] = ot[d * T + t] * inv;
    if (stats != nullptr)
      stats[t] = sums[t] > 0.0f ? AttentionPartial{maxes[t], sums[t]} : AttentionPartial{};
  }
}
#endif

}  // namespace detail

// The fast path: tiles of kAttentionTile queries when there are at least
// kMinTiledQueries of them, else one query at a time. Same arguments as
// reference_attention.
inline void attention_queries(const AttentionHead& h, const float* q, int64_t ldq, int64_t first,
                              int64_t count, float* out, int64_t ldo) {
#if TESSERA_CPU_AVX2
  // A 16-bit cache is widened once for all the tiles of this call.
  const bool widen = count >= kMinTiledQueries && h.kv_dtype != TS_F32;
  const AttentionHead wide = widen ? detail::widened_head(h, h.rows_for(first + count - 1)) : h;
  for (int64_t t0 = 0; t0 < count; t0 += kAttentionTile) {
    const int64_t n = std::min(kAttentionTile, count - t0);
    if (n >= kMinTiledQueries)
      detail::attention_tile(wide, q + t0 * ldq, ldq, first + t0, n, out + t0 * ldo, ldo);
    else
      detail::attention_one_by_one(h, q + t0 * ldq, ldq, first + t0, n, out + t0 * ldo, ldo);
  }
#else
  detail::attention_one_by_one(h, q, ldq, first, count, out, ldo);
#endif
}

}  // namespace tessera::cpu
