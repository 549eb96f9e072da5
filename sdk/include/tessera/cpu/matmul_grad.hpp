// The two products of the backward pass of y = x W^T (W stored [out, in], as matmul.hpp):
//   the input gradient    dx = dy W          matmul_nn
//   the weight gradient   dW += dy^T x       matmul_tn_add
// Both pack their right-hand operand, converted to f32, into panels of 16 columns (the
// register tile's width, zero-padded), then run matmul.hpp's register tiles (gemm_tiles) over
// work items of (a block of output rows, one panel). Each output element is one tile's sum
// over the whole inner dimension, in order, added to the output once: results do not depend
// on the number of threads or on how the host cuts the work, and accumulating the same
// gradient twice gives exactly twice it.
#pragma once

#include <tessera/abi.h>
#include <tessera/cpu/matmul.hpp>
#include <tessera/cpu/simd.hpp>
#include <tessera/plugin.hpp>

#include <algorithm>
#include <cstdint>
#include <vector>

namespace tessera::cpu {

namespace detail {

constexpr int64_t kGradRowBlock = 48;  // output rows per work item (4 AVX-512 or 8 AVX2 tiles)

// Columns [c0, c0 + 16) of rows [0, rows) of a row-major matrix of elements L (row stride
// ld, `cols` columns in all) as a panel dst[r * 16 + j]; columns past `cols` are zero.
template <class L>
void pack_column_panel(const typename L::Elem* src, int64_t ld, int64_t rows, int64_t cols,
                       int64_t c0, float* dst) {
  const int64_t width = std::min(kTileCols, cols - c0);
  for (int64_t r = 0; r < rows; ++r) {
    const typename L::Elem* s = src + r * ld + c0;
    float* d = dst + r * kTileCols;
    int64_t j = 0;
#if TESSERA_CPU_AVX2
    for (; j + 8 <= width; j += 8) _mm256_storeu_ps(d + j, L::load8(s + j));
#endif
    for (; j < width; ++j) d[j] = L::scalar(s + j);
    for (; j < kTileCols; ++j) d[j] = 0.0f;
  }
}

constexpr int kPackSlot = 6;   // the calling thread's scratch slot for the packed panels
constexpr int kStripSlot = 7;  // each thread's slot for column_panel_products' strips

// The whole of a [rows, cols] matrix as ceil(cols / 16) panels of rows * 16 floats, in the
// calling thread's scratch (kept between calls: no fresh pages to fault in each step).
template <class L>
const float* pack_column_panels(const ts_host* host, const typename L::Elem* src, int64_t ld,
                                int64_t rows, int64_t cols) {
  const int64_t panels = (cols + kTileCols - 1) / kTileCols;
  float* packed = scratch_floats(static_cast<size_t>(panels * rows * kTileCols), kPackSlot);
  const int64_t grain = std::max<int64_t>(1, kMinChunkMacs / std::max<int64_t>(1, rows * 16));
  sdk::parallel_for(host, panels, grain, [&](int64_t q0, int64_t q1) {
    for (int64_t q = q0; q < q1; ++q)
      pack_column_panel<L>(src, ld, rows, cols, q * kTileCols, packed + q * rows * kTileCols);
  });
  return packed;
}

// c[i, j] (+)= sum_p a[i * lda + p * a_step] * panels[p, j] for i < m, j < n, with the
// panels of a [depth, n] matrix; work items (row block, panel), panel-major.
inline void panel_products(const ts_host* host, const float* a, int64_t lda, int64_t a_step,
                           int64_t m, const float* packed, int64_t depth, int64_t n, float* c,
                           int64_t ldc, bool accumulate) {
  const int64_t panels = (n + kTileCols - 1) / kTileCols;
  const int64_t blocks = (m + kGradRowBlock - 1) / kGradRowBlock;
  const int64_t unit_macs = std::max<int64_t>(1, kGradRowBlock * kTileCols * depth);
  const int64_t grain = std::max<int64_t>(1, kMinChunkMacs / unit_macs);
  sdk::parallel_for(host, panels * blocks, grain, [&](int64_t u0, int64_t u1) {
    for (int64_t u = u0; u < u1; ++u) {
      const int64_t q = u / blocks, i0 = u % blocks * kGradRowBlock;
      const int64_t rows = std::min(kGradRowBlock, m - i0);
      const int64_t j0 = q * kTileCols;
      gemm_tiles(rows, a + i0 * lda, lda, a_step, packed + q * depth * kTileCols, kTileCols, depth,
                 c + i0 * ldc + j0, ldc, std::min(kTileCols, n - j0), accumulate);
    }
  });
}

// panel_products for an `a` read down its columns: row i of the product is column i of a
// ([depth, m], row stride lda). Each work item, a block of rows with every panel, first
// copies its columns into a contiguous [depth][48] strip, so that the tiles read them from
// cache rather than one line of a per step (for the lm head's [tokens, vocab] gradient that
// is a page per step). The same values in the same order: the same results.
inline void column_panel_products(const ts_host* host, const float* a, int64_t lda, int64_t m,
                                  const float* packed, int64_t depth, int64_t n, float* c,
                                  int64_t ldc, bool accumulate) {
  const int64_t panels = (n + kTileCols - 1) / kTileCols;
  const int64_t blocks = (m + kGradRowBlock - 1) / kGradRowBlock;
  const int64_t unit_macs = std::max<int64_t>(1, kGradRowBlock * panels * kTileCols * depth);
  const int64_t grain = std::max<int64_t>(1, kMinChunkMacs / unit_macs);
  sdk::parallel_for(host, blocks, grain, [&](int64_t b0, int64_t b1) {
    float* strip = scratch_floats(static_cast<size_t>(depth * kGradRowBlock), kStripSlot);
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t i0 = b * kGradRowBlock, rows = std::min(kGradRowBlock, m - i0);
      for (int64_t p = 0; p < depth; ++p)
        std::copy(a + p * lda + i0, a + p * lda + i0 + rows, strip + p * kGradRowBlock);
      for (int64_t q = 0; q < panels; ++q) {
        const int64_t j0 = q * kTileCols;
        gemm_tiles(rows, strip, 1, kGradRowBlock, packed + q * depth * kTileCols, kTileCols, depth,
                   c + i0 * ldc + j0, ldc, std::min(kTileCols, n - j0), accumulate);
      }
    }
  });
}

}  // namespace detail

// c[i, j] (+)= sum_p a[i, p] * w[p, j] for i < m, j < w.cols, p < w.rows: a is f32 [m, w.rows]
// (row stride lda), c f32 (row stride ldc); w in f32, bf16 or f16. With y = x W^T, the input
// gradient is dx = dy W: matmul_nn(host, dy, n, ld, W, dx, ld, false). accumulate adds to c.
inline void matmul_nn(const ts_host* host, const float* a, int64_t m, int64_t lda,
                      const MatrixView& w, float* c, int64_t ldc, bool accumulate) {
  if (m <= 0 || w.cols <= 0) return;
  with_elems(w.dtype, "matmul_nn: weight", [&](auto elems) {
    using L = decltype(elems);
    const float* packed = detail::pack_column_panels<L>(
        host, static_cast<const typename L::Elem*>(w.data), w.row_stride, w.rows, w.cols);
    detail::panel_products(host, a, lda, 1, m, packed, w.rows, w.cols, c, ldc, accumulate);
  });
}

// g[j, p] += sum_i a[i, j] * b[i, p] for j < n, p < k, i < m: a f32 [m, n] (row stride lda),
// b f32 [m, k] (ldb), g f32 [n, k] (ldg). With y = x W^T, the weight gradient is
// dW += dy^T x: matmul_tn_add(host, dy, ld_dy, x, ld_x, tokens, out, in, dW, in).
inline void matmul_tn_add(const ts_host* host, const float* a, int64_t lda, const float* b,
                          int64_t ldb, int64_t m, int64_t n, int64_t k, float* g, int64_t ldg) {
  if (m <= 0 || n <= 0 || k <= 0) return;
  const float* packed = detail::pack_column_panels<F32Elems>(host, b, ldb, m, k);
  // Row j of the result reads column j of a.
  detail::column_panel_products(host, a, lda, n, packed, m, k, g, ldg, true);
}

}  // namespace tessera::cpu
