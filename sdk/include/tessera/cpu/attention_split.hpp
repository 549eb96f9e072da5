// Split-KV attention for decode: the rows a query sees are cut into chunks, each
// chunk gives a partial result (its softmax-normalised output, the max score and
// the sum of exponentials over the chunk), and combine_partials merges them
// exactly as one softmax over all rows would:
//   M = max_c m_c,  w_c = l_c * exp(m_c - M),  out = sum_c w_c o_c / sum_c w_c.
// With one query per head, a head's attention is a short dependent chain; chunks
// spread a long context over the threads, and a work item that takes every
// query head of one KV head reads each K/V row once from memory (the group's
// other queries find it in cache).
#pragma once

#include <tessera/cpu/attention.hpp>
#include <tessera/cpu/ops.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

namespace tessera::cpu {

// One query's partial over a chunk of rows.
struct AttentionPartial {
  float max_score = -std::numeric_limits<float>::infinity();  // -inf: no visible row
  float sum = 0.0f;                                           // sum of exp(s - max_score)
};

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
  switch (h.kv_dtype) {
    case TS_F32:
      return detail::attention_chunk<F32Elems>(h, q, i, r0, r1, out);
    case TS_BF16:
      return detail::attention_chunk<Bf16Elems>(h, q, i, r0, r1, out);
    case TS_F16:
      return detail::attention_chunk<F16Elems>(h, q, i, r0, r1, out);
    default:
      throw std::invalid_argument(std::string("attention: KV cache dtype ") +
                                  dtype_name(h.kv_dtype) +
                                  " is not supported (expected f32, bf16 or f16)");
  }
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

}  // namespace tessera::cpu
