// y = x W^T on the CPU, W stored [out, in] like nn.Linear, in f32, bf16 or f16
// (converted on the fly). Two regimes:
//  - GEMV (one row of x): memory-bound, so W is streamed once, four rows at a
//    time, and the output rows are split over the host's threads.
//  - GEMM (several rows): W is read in panels of kPanelRows rows (converted to
//    f32 once per panel), and each panel is applied to a block of up to kRowBlock
//    rows of x with a 2x4 register tile, so W crosses memory once per block.
#pragma once

#include <tessera/abi.h>
#include <tessera/cpu/simd.hpp>
#include <tessera/dtype.hpp>
#include <tessera/plugin.hpp>

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

namespace tessera::cpu {

// A read-only [rows, cols] matrix, row i at data + i * row_stride elements.
struct MatrixView {
  const void* data = nullptr;
  int32_t dtype = TS_F32;
  int64_t rows = 0;
  int64_t cols = 0;
  int64_t row_stride = 0;

  const char* elem_ptr(int64_t row, int64_t col) const {
    return static_cast<const char*>(data) +
           static_cast<int64_t>(dtype_size(dtype)) * (row * row_stride + col);
  }
  // Rows [begin, end): e.g. the query heads of one rank.
  MatrixView row_slice(int64_t begin, int64_t end) const {
    return {elem_ptr(begin, 0), dtype, end - begin, cols, row_stride};
  }
  // Columns [begin, end): e.g. the o_proj inputs of one rank's heads.
  MatrixView col_slice(int64_t begin, int64_t end) const {
    return {elem_ptr(0, begin), dtype, rows, end - begin, row_stride};
  }
};

inline MatrixView matrix_view(const float* data, int64_t rows, int64_t cols) {
  return {data, TS_F32, rows, cols, cols};
}

namespace detail {

constexpr int64_t kPanelRows = 16;          // W rows converted / kept hot together
constexpr int64_t kRowBlock = 128;          // x rows that share one pass over a panel
constexpr int64_t kSplitRows = 16;          // unit of work handed to a thread
constexpr int64_t kMinChunkMacs = 1 << 15;  // below this, threading costs more than it saves

// y[r] = dot(x, w[r]) for rows [r0, r1): streams W once, four rows at a time.
template <class L>
void gemv_rows(const float* x, const typename L::Elem* w, int64_t ldw, int64_t k, int64_t r0,
               int64_t r1, float* y) {
  int64_t r = r0;
#if TESSERA_CPU_AVX2
  const int64_t k16 = k & ~int64_t{15};
  const int64_t k8 = k & ~int64_t{7};
  for (; r + 4 <= r1; r += 4) {
    const typename L::Elem* w0 = w + r * ldw;
    const typename L::Elem* w1 = w0 + ldw;
    const typename L::Elem* w2 = w1 + ldw;
    const typename L::Elem* w3 = w2 + ldw;
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(),
           a3 = _mm256_setzero_ps();
    __m256 b0 = _mm256_setzero_ps(), b1 = _mm256_setzero_ps(), b2 = _mm256_setzero_ps(),
           b3 = _mm256_setzero_ps();
    int64_t c = 0;
    for (; c < k16; c += 16) {
      const __m256 xa = _mm256_loadu_ps(x + c), xb = _mm256_loadu_ps(x + c + 8);
      a0 = _mm256_fmadd_ps(L::load8(w0 + c), xa, a0);
      a1 = _mm256_fmadd_ps(L::load8(w1 + c), xa, a1);
      a2 = _mm256_fmadd_ps(L::load8(w2 + c), xa, a2);
      a3 = _mm256_fmadd_ps(L::load8(w3 + c), xa, a3);
      b0 = _mm256_fmadd_ps(L::load8(w0 + c + 8), xb, b0);
      b1 = _mm256_fmadd_ps(L::load8(w1 + c + 8), xb, b1);
      b2 = _mm256_fmadd_ps(L::load8(w2 + c + 8), xb, b2);
      b3 = _mm256_fmadd_ps(L::load8(w3 + c + 8), xb, b3);
    }
    for (; c < k8; c += 8) {
      const __m256 xa = _mm256_loadu_ps(x + c);
      a0 = _mm256_fmadd_ps(L::load8(w0 + c), xa, a0);
      a1 = _mm256_fmadd_ps(L::load8(w1 + c), xa, a1);
      a2 = _mm256_fmadd_ps(L::load8(w2 + c), xa, a2);
      a3 = _mm256_fmadd_ps(L::load8(w3 + c), xa, a3);
    }
    float s0 = hsum(_mm256_add_ps(a0, b0)), s1 = hsum(_mm256_add_ps(a1, b1));
    float s2 = hsum(_mm256_add_ps(a2, b2)), s3 = hsum(_mm256_add_ps(a3, b3));
    for (; c < k; ++c) {
      s0 += L::scalar(w0 + c) * x[c];
      s1 += L::scalar(w1 + c) * x[c];
      s2 += L::scalar(w2 + c) * x[c];
      s3 += L::scalar(w3 + c) * x[c];
    }
    y[r] = s0;
    y[r + 1] = s1;
    y[r + 2] = s2;
    y[r + 3] = s3;
  }
#endif
  for (; r < r1; ++r) {
    const typename L::Elem* wr = w + r * ldw;
    int64_t c = 0;
    float s = 0.0f;
#if TESSERA_CPU_AVX2
    __m256 a = _mm256_setzero_ps();
    for (; c + 8 <= k; c += 8) a = _mm256_fmadd_ps(L::load8(wr + c), _mm256_loadu_ps(x + c), a);
    s = hsum(a);
#endif
    for (; c < k; ++c) s += L::scalar(wr + c) * x[c];
    y[r] = s;
  }
}

// y[i, j] = dot(x[i], w[j]) for i < m, j < n; w is f32 (a converted panel or f32 weights).
inline void gemm_f32_block(const float* x, int64_t ldx, int64_t m, const float* w, int64_t ldw,
                           int64_t n, int64_t k, float* y, int64_t ldy) {
  int64_t i = 0;
#if TESSERA_CPU_AVX2
  const int64_t k8 = k & ~int64_t{7};
  for (; i + 2 <= m; i += 2) {
    const float* x0 = x + i * ldx;
    const float* x1 = x0 + ldx;
    int64_t j = 0;
    for (; j + 4 <= n; j += 4) {
      const float* w0 = w + j * ldw;
      const float* w1 = w0 + ldw;
      const float* w2 = w1 + ldw;
      const float* w3 = w2 + ldw;
      __m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps(), c02 = _mm256_setzero_ps(),
             c03 = _mm256_setzero_ps();
      __m256 c10 = _mm256_setzero_ps(), c11 = _mm256_setzero_ps(), c12 = _mm256_setzero_ps(),
             c13 = _mm256_setzero_ps();
      int64_t c = 0;
      for (; c < k8; c += 8) {
        const __m256 xa = _mm256_loadu_ps(x0 + c), xb = _mm256_loadu_ps(x1 + c);
        __m256 wv = _mm256_loadu_ps(w0 + c);
        c00 = _mm256_fmadd_ps(xa, wv, c00);
        c10 = _mm256_fmadd_ps(xb, wv, c10);
        wv = _mm256_loadu_ps(w1 + c);
        c01 = _mm256_fmadd_ps(xa, wv, c01);
        c11 = _mm256_fmadd_ps(xb, wv, c11);
        wv = _mm256_loadu_ps(w2 + c);
        c02 = _mm256_fmadd_ps(xa, wv, c02);
        c12 = _mm256_fmadd_ps(xb, wv, c12);
        wv = _mm256_loadu_ps(w3 + c);
        c03 = _mm256_fmadd_ps(xa, wv, c03);
        c13 = _mm256_fmadd_ps(xb, wv, c13);
      }
      float s[2][4] = {{hsum(c00), hsum(c01), hsum(c02), hsum(c03)},
                       {hsum(c10), hsum(c11), hsum(c12), hsum(c13)}};
      for (; c < k; ++c) {
        for (int jj = 0; jj < 4; ++jj) {
          s[0][jj] += x0[c] * w[(j + jj) * ldw + c];
          s[1][jj] += x1[c] * w[(j + jj) * ldw + c];
        }
      }
      for (int jj = 0; jj < 4; ++jj) {
        y[i * ldy + j + jj] = s[0][jj];
        y[(i + 1) * ldy + j + jj] = s[1][jj];
      }
    }
    for (; j < n; ++j) {
      y[i * ldy + j] = dot(x0, w + j * ldw, k);
      y[(i + 1) * ldy + j] = dot(x1, w + j * ldw, k);
    }
  }
#endif
  for (; i < m; ++i) gemv_rows<F32Elems>(x + i * ldx, w, ldw, k, 0, n, y + i * ldy);
}

// Converts rows [r0, r0 + n) of w (k columns) into a dense f32 panel.
template <class L>
void convert_panel(const typename L::Elem* w, int64_t ldw, int64_t r0, int64_t n, int64_t k,
                   float* panel) {
  for (int64_t r = 0; r < n; ++r) {
    const typename L::Elem* src = w + (r0 + r) * ldw;
    float* dst = panel + r * k;
    int64_t c = 0;
#if TESSERA_CPU_AVX2
    for (; c + 8 <= k; c += 8) _mm256_storeu_ps(dst + c, L::load8(src + c));
#endif
    for (; c < k; ++c) dst[c] = L::scalar(src + c);
  }
}

// Output columns [n0, n1) of y for all m rows of x.
template <class L>
void matmul_range(const float* x, int64_t ldx, int64_t m, const typename L::Elem* w, int64_t ldw,
                  int64_t k, int64_t n0, int64_t n1, float* y, int64_t ldy) {
  if (m == 1) {
    gemv_rows<L>(x, w, ldw, k, n0, n1, y);
    return;
  }
  // One panel per thread, reused across calls: no allocation on the hot path.
  thread_local std::vector<float> panel_storage;
  for (int64_t i0 = 0; i0 < m; i0 += kRowBlock) {
    const int64_t mb = std::min(kRowBlock, m - i0);
    for (int64_t j0 = n0; j0 < n1; j0 += kPanelRows) {
      const int64_t nb = std::min(kPanelRows, n1 - j0);
      const float* panel;
      int64_t ld_panel;
      if constexpr (std::is_same_v<L, F32Elems>) {
        panel = w + j0 * ldw;
        ld_panel = ldw;
      } else {
        if (panel_storage.size() < static_cast<size_t>(kPanelRows * k))
          panel_storage.resize(static_cast<size_t>(kPanelRows * k));
        convert_panel<L>(w, ldw, j0, nb, k, panel_storage.data());
        panel = panel_storage.data();
        ld_panel = k;
      }
      gemm_f32_block(x + i0 * ldx, ldx, mb, panel, ld_panel, nb, k, y + i0 * ldy + j0, ldy);
    }
  }
}

}  // namespace detail

// Output columns [n0, n1) of y = x W^T, on the calling thread: for plugins that
// fuse work into their own parallel region. Throws std::invalid_argument on a
// weight dtype other than f32/bf16/f16.
inline void matmul_nt_range(const float* x, int64_t m, int64_t ldx, const MatrixView& w, int64_t n0,
                            int64_t n1, float* y, int64_t ldy) {
  if (m <= 0 || n1 <= n0) return;
  switch (w.dtype) {
    case TS_F32:
      detail::matmul_range<F32Elems>(x, ldx, m, static_cast<const float*>(w.data), w.row_stride,
                                     w.cols, n0, n1, y, ldy);
      break;
    case TS_BF16:
      detail::matmul_range<Bf16Elems>(x, ldx, m, static_cast<const uint16_t*>(w.data), w.row_stride,
                                      w.cols, n0, n1, y, ldy);
      break;
    case TS_F16:
      detail::matmul_range<F16Elems>(x, ldx, m, static_cast<const uint16_t*>(w.data), w.row_stride,
                                     w.cols, n0, n1, y, ldy);
      break;
    default:
      throw std::invalid_argument(std::string("matmul: weight dtype ") + dtype_name(w.dtype) +
                                  " is not supported (expected f32, bf16 or f16)");
  }
}

// How many rows of output a thread takes at a time, and the smallest number of
// such units worth a chunk of its own, for a product of m rows by k columns.
inline int64_t matmul_split_rows() {
  return detail::kSplitRows;
}
inline int64_t matmul_grain(int64_t m, int64_t k) {
  const int64_t unit_macs = std::max<int64_t>(1, detail::kSplitRows * k * std::max<int64_t>(m, 1));
  return std::max<int64_t>(1, detail::kMinChunkMacs / unit_macs);
}

// One product y = x W^T of a batch of products sharing x.
struct MatmulTarget {
  MatrixView w;
  float* y = nullptr;
  int64_t ldy = 0;
};

// Several products of the same x (e.g. the q, k and v projections) in a single
// parallel region, so the threads synchronise once. All w share w.cols.
inline void matmul_nt_many(const ts_host* host, const float* x, int64_t m, int64_t ldx,
                           const MatmulTarget* targets, int n_targets) {
  if (m <= 0 || n_targets <= 0) return;
  const int64_t split = detail::kSplitRows;
  int64_t units = 0;
  for (int t = 0; t < n_targets; ++t) {
    if (t > 0 && targets[t].w.cols != targets[0].w.cols)
      throw std::invalid_argument("matmul_nt_many: products have different inner sizes");
    if (targets[t].w.dtype != TS_F32 && targets[t].w.dtype != TS_BF16 &&
        targets[t].w.dtype != TS_F16)
      throw std::invalid_argument(std::string("matmul: weight dtype ") +
                                  dtype_name(targets[t].w.dtype) +
                                  " is not supported (expected f32, bf16 or f16)");
    units += (targets[t].w.rows + split - 1) / split;
  }
  sdk::parallel_for(host, units, matmul_grain(m, targets[0].w.cols), [&](int64_t u0, int64_t u1) {
    int64_t first = 0;  // first unit of target t
    for (int t = 0; t < n_targets && first < u1; ++t) {
      const MatmulTarget& tg = targets[t];
      const int64_t count = (tg.w.rows + split - 1) / split;
      const int64_t lo = std::max(u0, first), hi = std::min(u1, first + count);
      if (lo < hi)
        matmul_nt_range(x, m, ldx, tg.w, (lo - first) * split,
                        std::min(tg.w.rows, (hi - first) * split), tg.y, tg.ldy);
      first += count;
    }
  });
}

// y[i, j] = sum_c x[i, c] * w[j, c] for i < m, j < w.rows; x has w.cols columns
// (row stride ldx), y row stride ldy. Splits output columns over the host's
// threads (host may be NULL: single-threaded). Throws std::invalid_argument on a
// weight dtype other than f32/bf16/f16.
inline void matmul_nt(const ts_host* host, const float* x, int64_t m, int64_t ldx,
                      const MatrixView& w, float* y, int64_t ldy) {
  const MatmulTarget target{w, y, ldy};
  matmul_nt_many(host, x, m, ldx, &target, 1);
}

}  // namespace tessera::cpu
