// Split-KV attention for decode: the rows a query sees are cut into chunks, each
// chunk gives a partial result (its softmax-normalised output, the max score and
// the sum of exponentials over the chunk), and combine_partials merges them
// exactly as one softmax over all rows would:
//   M = max_c m_c,  w_c = l_c * exp(m_c - M),  out = sum_c w_c o_c / sum_c w_c.
// With one query per head, a head's attention is a short dependent chain; chunks
// spread a long context over the threads, and a work item that takes every
// query head of one KV head reads each K/V row once from memory; with AVX-512,
// attention_chunk_group also loads and converts each row once for the group.
#pragma once

#include <tessera/cpu/attention.hpp>
#include <tessera/cpu/gemv_avx512.hpp>
#include <tessera/cpu/isa.hpp>
#include <tessera/cpu/ops.hpp>

#include <tessera/dtype.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

namespace tessera::cpu {

namespace detail {

template <class L>
AttentionPartial attention_chunk(const AttentionHead& h, const float* q, int64_t i, int64_t r0,
                                 int64_t r1, float* out) {
  using Elem = typename L::Elem;
  AttentionPartial part;
  r1 = std::min(r1, h.rows_for(i));
  const int64_t rows = r1 - r0;
  if (rows <= 0) {
    std::fill(out, out + h.head_dim, 0.0f);
    return part;
  }
  const float neg_inf = -std::numeric_limits<float>::infinity();
  float* scores = scratch_floats(static_cast<size_t>(rows), 1);
  const auto* k = static_cast<const Elem*>(h.k) + r0 * h.row_stride;
  const auto* v = static_cast<const Elem*>(h.v) + r0 * h.row_stride;
  attention_scores<L>(q, k, h.row_stride, rows, h.head_dim, h.scale, scores);
  if (h.mask != nullptr)
    for (int64_t r = std::max(r0, h.cached); r < r1; ++r)
      if (!h.visible(i, r)) scores[r - r0] = neg_inf;
  for (int64_t r = 0; r < rows; ++r) part.max_score = std::max(part.max_score, scores[r]);
  part.sum = softmax_inplace(scores, rows);
  attention_values<L>(scores, v, h.row_stride, rows, h.head_dim, out);
  return part;
}

}  // namespace detail

// The partial of new token i (query q, head_dim floats) over rows [r0, r1) of h
// (clipped to the rows it sees): out gets the chunk's normalised output (zeros
// when the chunk has no visible row).
inline AttentionPartial attention_chunk(const AttentionHead& h, const float* q, int64_t i,
                                        int64_t r0, int64_t r1, float* out) {
  return with_elems(h.kv_dtype, "attention: KV cache", [&](auto elems) {
    return detail::attention_chunk<decltype(elems)>(h, q, i, r0, r1, out);
  });
}

#if TESSERA_CPU_AVX512
namespace detail {

constexpr int kMaxGroupQueries = 4;    // queries of one KV head in one pass
constexpr int64_t kMaxGroupDim = 128;  // head_dim up to eight 16-float vectors

// The partials of g <= kMaxGroupQueries queries that see the same rows (the query heads of
// one KV head for the same new token i) over rows [r0, r1): each K and V row is loaded and
// converted once for all of them. head_dim % 16 == 0, head_dim <= kMaxGroupDim.
template <class L, int V>
TESSERA_TARGET_AVX512 void chunk_group_kernel(const AttentionHead& h, const float* const* q, int g,
                                              int64_t i, int64_t r0, int64_t r1, float* const* out,
                                              AttentionPartial* parts) {
  using Elem = typename L::Elem;
  r1 = std::min(r1, h.rows_for(i));
  const int64_t rows = r1 - r0;
  for (int j = 0; j < g; ++j) {
    parts[j] = AttentionPartial{};
    std::fill(out[j], out[j] + h.head_dim, 0.0f);
  }
  if (rows <= 0) return;
  const float neg_inf = -std::numeric_limits<float>::infinity();
  float* scores = scratch_floats(static_cast<size_t>(rows * kMaxGroupQueries), 1);  // [j][r]
  __m512 qv[kMaxGroupQueries][V];
  for (int j = 0; j < g; ++j)
    for (int v = 0; v < V; ++v) qv[j][v] = _mm512_loadu_ps(q[j] + 16 * v);
  const auto* k = static_cast<const Elem*>(h.k);
  const auto* vals = static_cast<const Elem*>(h.v);
  for (int64_t r = r0; r < r1; ++r) {
    __m512 kr[V];
    for (int v = 0; v < V; ++v) kr[v] = Load512<L>::full(k + r * h.row_stride + 16 * v);
    const bool hidden = h.mask != nullptr && r >= h.cached && !h.visible(i, r);
    for (int j = 0; j < g; ++j) {
      __m512 acc = _mm512_mul_ps(qv[j][0], kr[0]);
      for (int v = 1; v < V; ++v) acc = _mm512_fmadd_ps(qv[j][v], kr[v], acc);
      scores[j * rows + (r - r0)] = hidden ? neg_inf : reduce_add(acc) * h.scale;
    }
  }
  for (int j = 0; j < g; ++j) {
    float* s = scores + j * rows;
    for (int64_t r = 0; r < rows; ++r) parts[j].max_score = std::max(parts[j].max_score, s[r]);
    parts[j].sum = softmax_inplace(s, rows);
  }
  __m512 acc[kMaxGroupQueries][V];
  for (int j = 0; j < g; ++j)
    for (int v = 0; v < V; ++v) acc[j][v] = _mm512_setzero_ps();
  for (int64_t r = r0; r < r1; ++r) {
    __m512 vr[V];
    for (int v = 0; v < V; ++v) vr[v] = Load512<L>::full(vals + r * h.row_stride + 16 * v);
    for (int j = 0; j < g; ++j) {
      const __m512 p = _mm512_set1_ps(scores[j * rows + (r - r0)]);
      for (int v = 0; v < V; ++v) acc[j][v] = _mm512_fmadd_ps(p, vr[v], acc[j][v]);
    }
  }
  for (int j = 0; j < g; ++j)
    for (int v = 0; v < V; ++v) _mm512_storeu_ps(out[j] + 16 * v, acc[j][v]);
}

// chunk_group_kernel with V = head_dim / 16 vectors per row (1 .. kMaxGroupDim / 16).
template <class L, int V = 1>
void attention_chunk_group(const AttentionHead& h, const float* const* q, int g, int64_t i,
                           int64_t r0, int64_t r1, float* const* out, AttentionPartial* parts) {
  if constexpr (V < kMaxGroupDim / 16) {
    if (h.head_dim / 16 != V)
      return attention_chunk_group<L, V + 1>(h, q, g, i, r0, r1, out, parts);
  }
  chunk_group_kernel<L, V>(h, q, g, i, r0, r1, out, parts);
}

}  // namespace detail
#endif

// attention_chunk for g queries that see the same rows of the same KV head (the query heads
// of one group, for new token i): q[j] and out[j] per query, parts[j] its partial. With
// AVX-512 and head_dim a multiple of 16 up to 128, up to four at a time share each K/V row
// load; otherwise one by one.
inline void attention_chunk_group(const AttentionHead& h, const float* const* q, int g, int64_t i,
                                  int64_t r0, int64_t r1, float* const* out,
                                  AttentionPartial* parts) {
#if TESSERA_CPU_AVX512
  if (active_isa() == Isa::avx512 && h.head_dim % 16 == 0 && h.head_dim <= detail::kMaxGroupDim) {
    with_elems(h.kv_dtype, "attention: KV cache", [&](auto elems) {
      for (int j0 = 0; j0 < g; j0 += detail::kMaxGroupQueries)
        detail::attention_chunk_group<decltype(elems)>(
            h, q + j0, std::min(detail::kMaxGroupQueries, g - j0), i, r0, r1, out + j0, parts + j0);
    });
    return;
  }
#endif
  for (int j = 0; j < g; ++j) parts[j] = attention_chunk(h, q[j], i, r0, r1, out[j]);
}

// Merges n partials (outputs at outs + c * ld_outs) into out[0 .. head_dim). A
// query with no visible row at all gets zeros, like reference_attention.
inline void combine_partials(const AttentionPartial* parts, const float* outs, int64_t ld_outs,
                             int64_t n, int64_t head_dim, float* out) {
  float m = -std::numeric_limits<float>::infinity();
  for (int64_t c = 0; c < n; ++c) m = std::max(m, parts[c].max_score);
  std::fill(out, out + head_dim, 0.0f);
  if (m == -std::numeric_limits<float>::infinity()) return;
  double total = 0.0;
  for (int64_t c = 0; c < n; ++c) {
    if (parts[c].sum <= 0.0f) continue;
    const float w = parts[c].sum * std::exp(parts[c].max_score - m);
    total += w;
    axpy(w, outs + c * ld_outs, out, head_dim);
  }
  if (total > 0.0) scale(static_cast<float>(1.0 / total), out, head_dim);
}

// ------------------------------------------------------- row-invariant attention

// Logical rows per chunk of attention_row_invariant.
constexpr int64_t kInvariantChunkRows = 64;

// New token i of h over the rows it sees, in logical order (the cached rows, then the new
// rows it sees, ascending), cut into chunks of kInvariantChunkRows logical rows, each a
// partial (attention_chunk), merged in order (combine_partials). A chunk of cached rows is
// read in place; one that reaches the new rows is first gathered into a contiguous copy.
// Nothing depends on the other tokens of the pass or on the threads, so a token gets the
// same bits alone (one new token, causal) as in a verified tree whose mask shows it the
// same rows (TS_BATCH_ROW_INVARIANT).
inline void attention_row_invariant(const AttentionHead& h, const float* q, int64_t i, float* out) {
  const int64_t hd = h.head_dim, elem = static_cast<int64_t>(dtype_size(h.kv_dtype));
  // The new rows token i sees (itself included), ascending.
  thread_local std::vector<int64_t> seen;
  seen.clear();
  for (int64_t r = h.cached; r < h.cached + h.n_new; ++r)
    if (h.visible(i, r)) seen.push_back(r);
  const int64_t total = h.cached + static_cast<int64_t>(seen.size());
  const int64_t chunks =
      std::max<int64_t>(1, (total + kInvariantChunkRows - 1) / kInvariantChunkRows);
  thread_local std::vector<AttentionPartial> parts;
  thread_local std::vector<float> outs;
  thread_local std::vector<char> gathered;  // K rows then V rows, head_dim elements each
  parts.resize(static_cast<size_t>(chunks));
  outs.resize(static_cast<size_t>(chunks * hd));
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t l0 = c * kInvariantChunkRows, l1 = std::min(total, l0 + kInvariantChunkRows);
    // The chunk as l1 - l0 - 1 cached rows and one new row, all visible (no row at all when
    // the token sees nothing: attention_chunk then gives zeros).
    AttentionHead chunk = h;
    chunk.cached = l1 - l0 - 1;
    chunk.n_new = 1;
    chunk.mask = nullptr;
    if (l1 <= h.cached) {
      chunk.k = static_cast<const char*>(h.k) + l0 * h.row_stride * elem;
      chunk.v = static_cast<const char*>(h.v) + l0 * h.row_stride * elem;
    } else {
      const auto row_bytes = static_cast<size_t>(hd * elem);
      gathered.resize(2 * static_cast<size_t>(kInvariantChunkRows) * row_bytes);
      char* k = gathered.data();
      char* v = k + static_cast<size_t>(kInvariantChunkRows) * row_bytes;
      for (int64_t l = l0; l < l1; ++l) {
        const int64_t r = l < h.cached ? l : seen[static_cast<size_t>(l - h.cached)];
        const auto src = static_cast<size_t>(r * h.row_stride * elem);
        const auto dst = static_cast<size_t>(l - l0) * row_bytes;
        std::memcpy(k + dst, static_cast<const char*>(h.k) + src, row_bytes);
        std::memcpy(v + dst, static_cast<const char*>(h.v) + src, row_bytes);
      }
      chunk.k = k;
      chunk.v = v;
      chunk.row_stride = hd;
    }
    parts[static_cast<size_t>(c)] = attention_chunk(chunk, q, 0, 0, l1 - l0, outs.data() + c * hd);
  }
  combine_partials(parts.data(), outs.data(), hd, chunks, hd, out);
}

}  // namespace tessera::cpu
