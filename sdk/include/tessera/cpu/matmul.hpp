// y = x W^T on the CPU, W stored [out, in] like nn.Linear, in f32, bf16 or f16
// (converted to f32 on the fly). Three regimes:
//  - GEMV (one row of x, i.e. decode): memory-bound (AVX-512 variant in
//    gemv_avx512.hpp, chosen at run time). W is streamed once, four
//    rows at a time, one cache line per row per step, with 8 accumulators and a
//    software prefetch of the next four rows (each row is only a few KiB, too
//    short a stream for the hardware prefetcher to ramp up). Threads take
//    contiguous chunks of rows.
//  - multi-row GEMV (2 .. kMaxGemvRows rows of x with AVX-512: a verified tree, a batch of
//    decodes): each weight vector converted once for four rows of x, every output with the
//    bits the one-row GEMV gives (gemv_multi_rows_avx512). RowReduction::each_row takes it
//    (or the one-row GEMV row by row without AVX-512) for any number of rows.
//  - GEMM (several rows, i.e. prefill): compute-bound. Blocks of W are packed
//    once per call, converted to f32, into panels of 16 rows laid out [k][16];
//    a 6x16 register tile (12 accumulators) multiplies a panel by six rows of x,
//    broadcasting one x element at a time (gemm_avx512.hpp: 12x16 with
//    AVX-512, chosen at run time). Cache blocking: kc columns of W
//    (<= kMaxDepth) so that six x rows stay in L1, kNcRows rows of W so that the
//    packed block stays in L2.
// Block-quantised W (ABI 2.3) takes quant_matmul.hpp's integer kernels against 8-bit
// activations for every row count, prefill included (quant_matmul_range): each output has the
// bits of the one-row GEMV.
// reference_matmul_nt is the plain loop that the tests hold every path to.
#pragma once

#include <tessera/abi.h>
#include <tessera/cpu/gemm_avx512.hpp>
#include <tessera/cpu/gemv_avx512.hpp>
#include <tessera/cpu/isa.hpp>
#include <tessera/cpu/quant_matmul.hpp>
#include <tessera/cpu/simd.hpp>
#include <tessera/dtype.hpp>
#include <tessera/plugin.hpp>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

namespace tessera::cpu {

// A read-only [rows, cols] matrix, row i at data + i * row_stride elements. For a quantised
// dtype the offsets count whole blocks: a column offset must fall on a block boundary.
struct MatrixView {
  const void* data = nullptr;
  int32_t dtype = TS_F32;
  int64_t rows = 0;
  int64_t cols = 0;
  int64_t row_stride = 0;

  // Bytes from the start of the matrix to element `n` of the flat layout.
  int64_t byte_offset(int64_t n) const {
    if (!is_quantized(dtype)) return static_cast<int64_t>(dtype_size(dtype)) * n;
    const int64_t block = dtype_block_elems(dtype);
    if (n % block != 0)
      throw std::invalid_argument(std::string("matrix view: offset ") + std::to_string(n) +
                                  " is not on a block of " + dtype_name(dtype) + " (" +
                                  std::to_string(block) + " values)");
    return n / block * static_cast<int64_t>(dtype_block_bytes(dtype));
  }
  const char* elem_ptr(int64_t row, int64_t col) const {
    return static_cast<const char*>(data) + byte_offset(row * row_stride + col);
  }
  // Bytes from one row to the next.
  size_t row_bytes() const { return static_cast<size_t>(byte_offset(row_stride)); }
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

// Element j of row i of w as a float.
inline float matrix_element(const MatrixView& w, int64_t i, int64_t j) {
  if (is_quantized(w.dtype)) {  // decode the block that holds it
    const int64_t block = dtype_block_elems(w.dtype);
    float values[quant::kSuperBlock];
    quant::block_decoder(w.dtype)(reinterpret_cast<const uint8_t*>(w.elem_ptr(i, j - j % block)),
                                  values);
    return values[j % block];
  }
  const char* p = w.elem_ptr(i, j);
  switch (w.dtype) {
    case TS_BF16:
      return bf16_to_f32(*reinterpret_cast<const uint16_t*>(p));
    case TS_F16:
      return f16_to_f32(*reinterpret_cast<const uint16_t*>(p));
    default:
      return *reinterpret_cast<const float*>(p);
  }
}

// The naive product every fast path is tested against: y[i, j] = sum_c x[i, c] w[j, c],
// accumulated in double.
inline void reference_matmul_nt(const float* x, int64_t m, int64_t ldx, const MatrixView& w,
                                float* y, int64_t ldy) {
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < w.rows; ++j) {
      double s = 0;
      for (int64_t c = 0; c < w.cols; ++c)
        s += static_cast<double>(x[i * ldx + c]) * matrix_element(w, j, c);
      y[i * ldy + j] = static_cast<float>(s);
    }
}

namespace detail {

constexpr int64_t kSplitRows = 16;          // unit of work: rows of W (one GEMM panel)
constexpr int64_t kClaimUnits = 4;          // units a thread takes at a time
constexpr int64_t kMinChunkMacs = 1 << 15;  // below this, threading costs more than it saves
constexpr int64_t kTileRows = 6;            // GEMM register tile: 6 rows of x ...
constexpr int64_t kTileCols = 16;           // ... by 16 rows of W (two vectors)
constexpr int64_t kMaxDepth = 384;          // columns of W per packed block (x tile in L1)
constexpr int64_t kNcRows = 128;            // rows of W per packed block (block in L2)
// With AVX-512, products of up to this many rows take the multi-row GEMV (a verified tree,
// a batch of decodes): packing W for the GEMM costs more than it saves there.
constexpr int64_t kMaxGemvRows = 16;

// ------------------------------------------------------------------- GEMV

// y[r] = dot(x, w[r]) for rows [r0, r1): four rows at a time, one 64-byte line
// per row per step.
template <class L>
void gemv_rows(const float* x, const typename L::Elem* w, int64_t ldw, int64_t k, int64_t r0,
               int64_t r1, float* y) {
  using Elem = typename L::Elem;
  int64_t r = r0;
#if TESSERA_CPU_AVX2
  constexpr int kVecs = 64 / (8 * static_cast<int>(sizeof(Elem)));  // 8-float vectors per line
  constexpr int64_t kStep = 8 * kVecs;
  const int64_t k_lines = k - k % kStep;
  const int64_t k8 = k & ~int64_t{7};
  for (; r + 4 <= r1; r += 4) {
    const Elem* wr[4] = {w + r * ldw, w + (r + 1) * ldw, w + (r + 2) * ldw, w + (r + 3) * ldw};
    // The next group's rows, or this group's again at the end of the range.
    const int64_t ahead = r + 8 <= r1 ? 4 * ldw : 0;
    // Every loop over the rows is unrolled so that acc stays in registers.
    __m256 acc[4][2];
#pragma GCC unroll 4
    for (int i = 0; i < 4; ++i) acc[i][0] = acc[i][1] = _mm256_setzero_ps();
    int64_t c = 0;
    for (; c < k_lines; c += kStep) {
      __m256 xv[kVecs];
#pragma GCC unroll 4
      for (int v = 0; v < kVecs; ++v) xv[v] = _mm256_loadu_ps(x + c + 8 * v);
#pragma GCC unroll 4
      for (int i = 0; i < 4; ++i) {
        _mm_prefetch(reinterpret_cast<const char*>(wr[i] + c + ahead), _MM_HINT_T0);
#pragma GCC unroll 4
        for (int v = 0; v < kVecs; ++v)
          acc[i][v & 1] = _mm256_fmadd_ps(L::load8(wr[i] + c + 8 * v), xv[v], acc[i][v & 1]);
      }
    }
    for (; c < k8; c += 8) {
      const __m256 xv = _mm256_loadu_ps(x + c);
#pragma GCC unroll 4
      for (int i = 0; i < 4; ++i) acc[i][0] = _mm256_fmadd_ps(L::load8(wr[i] + c), xv, acc[i][0]);
    }
#pragma GCC unroll 4
    for (int i = 0; i < 4; ++i) {
      float s = hsum(_mm256_add_ps(acc[i][0], acc[i][1]));
      for (int64_t t = c; t < k; ++t) s += L::scalar(wr[i] + t) * x[t];
      y[r + i] = s;
    }
  }
#endif
  for (; r < r1; ++r) {
    const Elem* wr = w + r * ldw;
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

// ------------------------------------------------------------------- GEMM

// c[i, 0 .. cols) (+)= sum_p a[i * lda + p * a_step] * b[p * ldb + 0 .. 16) for
// i < MR: an MR x 16 tile of the output, b a panel of 16 columns (each row p is
// 16 floats; a packed panel has ldb = 16). a_step is 1 for a row-major a; the
// attention kernels also read a transposed. Columns [0, cols) (cols <= 16) are
// stored; accumulate adds to c instead of overwriting it.
template <int MR>
void gemm_tile(const float* a, int64_t lda, int64_t a_step, const float* b, int64_t ldb, int64_t k,
               float* c, int64_t ldc, int64_t cols, bool accumulate) {
#if TESSERA_CPU_AVX2
  __m256 acc[MR][2];
#pragma GCC unroll 6
  for (int i = 0; i < MR; ++i) acc[i][0] = acc[i][1] = _mm256_setzero_ps();
#pragma GCC unroll 4
  for (int64_t p = 0; p < k; ++p) {
    const __m256 b0 = _mm256_loadu_ps(b + p * ldb), b1 = _mm256_loadu_ps(b + p * ldb + 8);
#pragma GCC unroll 6
    for (int i = 0; i < MR; ++i) {
      const __m256 ai = _mm256_broadcast_ss(a + i * lda + p * a_step);
      acc[i][0] = _mm256_fmadd_ps(ai, b0, acc[i][0]);
      acc[i][1] = _mm256_fmadd_ps(ai, b1, acc[i][1]);
    }
  }
  if (cols == kTileCols) {
#pragma GCC unroll 6
    for (int i = 0; i < MR; ++i) {
      float* ci = c + i * ldc;
      if (accumulate) {
        acc[i][0] = _mm256_add_ps(acc[i][0], _mm256_loadu_ps(ci));
        acc[i][1] = _mm256_add_ps(acc[i][1], _mm256_loadu_ps(ci + 8));
      }
      _mm256_storeu_ps(ci, acc[i][0]);
      _mm256_storeu_ps(ci + 8, acc[i][1]);
    }
    return;
  }
  // Every loop over i is unrolled: indexing acc with a run-time i would keep
  // the accumulators in memory instead of registers.
  alignas(32) float part[kTileCols];
#pragma GCC unroll 6
  for (int i = 0; i < MR; ++i) {
    _mm256_store_ps(part, acc[i][0]);
    _mm256_store_ps(part + 8, acc[i][1]);
    float* ci = c + i * ldc;
    for (int64_t j = 0; j < cols; ++j) ci[j] = accumulate ? ci[j] + part[j] : part[j];
  }
#else
  for (int i = 0; i < MR; ++i)
    for (int64_t j = 0; j < cols; ++j) {
      float s = 0.0f;
      for (int64_t p = 0; p < k; ++p) s += a[i * lda + p * a_step] * b[p * ldb + j];
      c[i * ldc + j] = accumulate ? c[i * ldc + j] + s : s;
    }
#endif
}

// gemm_tile for rows < kTileRows (the last rows of x).
inline void gemm_tile_rows(int64_t rows, const float* a, int64_t lda, int64_t a_step,
                           const float* b, int64_t ldb, int64_t k, float* c, int64_t ldc,
                           int64_t cols, bool accumulate) {
  switch (rows) {
    case 1:
      gemm_tile<1>(a, lda, a_step, b, ldb, k, c, ldc, cols, accumulate);
      break;
    case 2:
      gemm_tile<2>(a, lda, a_step, b, ldb, k, c, ldc, cols, accumulate);
      break;
    case 3:
      gemm_tile<3>(a, lda, a_step, b, ldb, k, c, ldc, cols, accumulate);
      break;
    case 4:
      gemm_tile<4>(a, lda, a_step, b, ldb, k, c, ldc, cols, accumulate);
      break;
    case 5:
      gemm_tile<5>(a, lda, a_step, b, ldb, k, c, ldc, cols, accumulate);
      break;
    default:
      gemm_tile<6>(a, lda, a_step, b, ldb, k, c, ldc, cols, accumulate);
      break;
  }
}

// gemm_tile over rows [0, rows) of c (any count), in tiles of the active
// instruction set's height (12 rows with AVX-512, 6 with AVX2); a row of c
// advances a by lda.
inline void gemm_tiles(int64_t rows, const float* a, int64_t lda, int64_t a_step, const float* b,
                       int64_t ldb, int64_t k, float* c, int64_t ldc, int64_t cols,
                       bool accumulate) {
#if TESSERA_CPU_AVX512
  if (active_isa() == Isa::avx512) {
    for (int64_t r0 = 0; r0 < rows; r0 += kTileRows512)
      gemm_tile_rows_avx512(std::min(kTileRows512, rows - r0), a + r0 * lda, lda, a_step, b, ldb, k,
                            c + r0 * ldc, ldc, cols, accumulate);
    return;
  }
#endif
  for (int64_t r0 = 0; r0 < rows; r0 += kTileRows)
    gemm_tile_rows(std::min(kTileRows, rows - r0), a + r0 * lda, lda, a_step, b, ldb, k,
                   c + r0 * ldc, ldc, cols, accumulate);
}

// Rows [r0, r0 + rows) (rows <= 16) and columns [c0, c0 + depth) of w, as f32
// in the panel layout dst[p * 16 + i]; rows beyond `rows` are zero.
template <class L>
void pack_panel(const typename L::Elem* w, int64_t ldw, int64_t r0, int64_t rows, int64_t c0,
                int64_t depth, float* dst) {
  int64_t i0 = 0;
#if TESSERA_CPU_AVX2
  // Full groups of 8 rows: 8x8 transposes of converted vectors.
  for (; i0 + 8 <= rows; i0 += 8) {
    const typename L::Elem* src = w + (r0 + i0) * ldw + c0;
    int64_t p = 0;
    for (; p + 8 <= depth; p += 8) {
      __m256 v[8];
#pragma GCC unroll 8
      for (int i = 0; i < 8; ++i) v[i] = L::load8(src + i * ldw + p);
      transpose8(v);
#pragma GCC unroll 8
      for (int j = 0; j < 8; ++j) _mm256_storeu_ps(dst + (p + j) * kTileCols + i0, v[j]);
    }
    for (; p < depth; ++p)
      for (int64_t i = 0; i < 8; ++i) dst[p * kTileCols + i0 + i] = L::scalar(src + i * ldw + p);
  }
#endif
  for (int64_t i = i0; i < kTileCols; ++i) {
    if (i < rows) {
      const typename L::Elem* src = w + (r0 + i) * ldw + c0;
      for (int64_t p = 0; p < depth; ++p) dst[p * kTileCols + i] = L::scalar(src + p);
    } else {
      for (int64_t p = 0; p < depth; ++p) dst[p * kTileCols + i] = 0.0f;
    }
  }
}

// Per-thread, 64-byte aligned scratch buffers that only grow; `slot` tells
// apart the buffers a kernel needs at the same time (< kScratchSlots). Slots 6 and 7 hold
// matmul_grad.hpp's packed panels (calling thread) and column strips (each thread).
constexpr int kScratchSlots = 9;
inline float* scratch_floats(size_t n, int slot = 0) {
  struct Buffer {
    std::unique_ptr<float[], void (*)(float*)> data{
        nullptr, [](float* p) { ::operator delete[](p, std::align_val_t{64}); }};
    size_t size = 0;
  };
  thread_local Buffer buffers[kScratchSlots];
  Buffer& buffer = buffers[slot];
  if (buffer.size < n) {
    buffer.data.reset(
        static_cast<float*>(::operator new[](n * sizeof(float), std::align_val_t{64})));
    buffer.size = n;
  }
  return buffer.data.get();
}

// Output columns [n0, n1) of y for all m rows of x (m >= 1, any k >= 0).
template <class L>
void gemm_range(const float* x, int64_t ldx, int64_t m, const typename L::Elem* w, int64_t ldw,
                int64_t k, int64_t n0, int64_t n1, float* y, int64_t ldy) {
  if (k == 0) {
    for (int64_t i = 0; i < m; ++i) std::fill(y + i * ldy + n0, y + i * ldy + n1, 0.0f);
    return;
  }
  // Equal depth blocks of at most kMaxDepth columns.
  const int64_t depth_blocks = (k + kMaxDepth - 1) / kMaxDepth;
  const int64_t kc = (k + depth_blocks - 1) / depth_blocks;
  float* packed = scratch_floats(static_cast<size_t>(kNcRows * kc));
#if TESSERA_CPU_AVX512
  const bool avx512 = active_isa() == Isa::avx512;
  const int64_t tile_rows = avx512 ? kTileRows512 : kTileRows;
#else
  const int64_t tile_rows = kTileRows;
#endif
  for (int64_t j0 = n0; j0 < n1; j0 += kNcRows) {
    const int64_t nb = std::min(kNcRows, n1 - j0);
    const int64_t panels = (nb + kTileCols - 1) / kTileCols;
    for (int64_t p0 = 0; p0 < k; p0 += kc) {
      const int64_t depth = std::min(kc, k - p0);
      for (int64_t q = 0; q < panels; ++q)
        pack_panel<L>(w, ldw, j0 + q * kTileCols, std::min(kTileCols, nb - q * kTileCols), p0,
                      depth, packed + q * kTileCols * depth);
      for (int64_t i0 = 0; i0 < m; i0 += tile_rows) {
        const int64_t rows = std::min(tile_rows, m - i0);
        for (int64_t q = 0; q < panels; ++q) {
          const float* a = x + i0 * ldx + p0;
          const float* b = packed + q * kTileCols * depth;
          float* c = y + i0 * ldy + j0 + q * kTileCols;
          const int64_t cols = std::min(kTileCols, nb - q * kTileCols);
#if TESSERA_CPU_AVX512
          if (avx512) {
            gemm_tile_rows_avx512(rows, a, ldx, 1, b, kTileCols, depth, c, ldy, cols, p0 > 0);
            continue;
          }
#endif
          gemm_tile_rows(rows, a, ldx, 1, b, kTileCols, depth, c, ldy, cols, p0 > 0);
        }
      }
    }
  }
}

template <class L>
void matmul_range(const float* x, int64_t ldx, int64_t m, const typename L::Elem* w, int64_t ldw,
                  int64_t k, int64_t n0, int64_t n1, float* y, int64_t ldy, bool each_row) {
#if TESSERA_CPU_AVX512
  // A few rows (or any number, row by row): each weight converted once for four x rows,
  // every output as a one-row product gives it.
  if (active_isa() == Isa::avx512 && (m <= kMaxGemvRows || each_row)) {
    if (m == 1)
      gemv_rows_avx512<L>(x, w, ldw, k, n0, n1, y);
    else
      gemv_multi_rows_avx512<L>(x, ldx, m, w, ldw, k, n0, n1, y, ldy);
    return;
  }
#endif
  if (m == 1 || each_row) {
    // Row by row, each as a one-row product: the W rows [n0, n1) stay in cache from
    // one x row to the next.
    for (int64_t i = 0; i < m; ++i) gemv_rows<L>(x + i * ldx, w, ldw, k, n0, n1, y + i * ldy);
  } else {
    gemm_range<L>(x, ldx, m, w, ldw, k, n0, n1, y, ldy);
  }
}

// Quantised W: rows [n0, n1) of y for every row of x, on its 8-bit activations (xq: m rows of
// k / 32 blocks, quantised here when not given). quant_gemm_rows decodes each weight block
// once for a tile of x rows and gives every output the bits of the one-row GEMV: batch = each
// alone holds exactly.
inline void quant_matmul_range(const float* x, int64_t ldx, int64_t m, const MatrixView& w,
                               int64_t n0, int64_t n1, float* y, int64_t ldy,
                               const quant::ActBlock* xq) {
  const int64_t k = w.cols;
  if (k % dtype_block_elems(w.dtype) != 0)
    throw std::invalid_argument("matmul: " + std::to_string(k) + " columns of a " +
                                dtype_name(w.dtype) + " weight are not whole blocks");
  std::vector<quant::ActBlock> own;
  if (xq == nullptr) {
    own.resize(static_cast<size_t>(m * k / quant::kBlock));
    for (int64_t i = 0; i < m; ++i)
      quantize_activations(x + i * ldx, k, own.data() + i * k / quant::kBlock);
    xq = own.data();
  }
  quant_gemm_rows(w.dtype, w.data, w.row_bytes(), k, n0, n1, xq, m, y, ldy);
}

}  // namespace detail

// How the rows of x are reduced. fastest: GEMM when there are several. each_row: every
// row of y gets the bits a one-row product gives (a GEMV per row), whatever m and the
// thread count: what a row-invariant pass (TS_BATCH_ROW_INVARIANT) needs. A one-row
// product's bits do not depend on the threads: each output is one thread's dot product,
// over column ranges whose bounds are fixed multiples of matmul_split_rows().
enum class RowReduction { fastest, each_row };

inline RowReduction row_reduction(bool row_invariant) {
  return row_invariant ? RowReduction::each_row : RowReduction::fastest;
}

// Output columns [n0, n1) of y = x W^T, on the calling thread: for plugins that
// fuse work into their own parallel region. Throws std::invalid_argument on a
// weight dtype other than f32/bf16/f16.
inline void matmul_nt_range(const float* x, int64_t m, int64_t ldx, const MatrixView& w, int64_t n0,
                            int64_t n1, float* y, int64_t ldy,
                            RowReduction rows = RowReduction::fastest,
                            const quant::ActBlock* xq = nullptr) {
  if (m <= 0 || n1 <= n0) return;
  if (is_quantized(w.dtype)) {
    detail::quant_matmul_range(x, ldx, m, w, n0, n1, y, ldy, xq);
    return;
  }
  with_elems(w.dtype, "matmul: weight", [&](auto elems) {
    using L = decltype(elems);
    detail::matmul_range<L>(x, ldx, m, static_cast<const typename L::Elem*>(w.data), w.row_stride,
                            w.cols, n0, n1, y, ldy, rows == RowReduction::each_row);
  });
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

// Runs fn(u0, u1) over [0, units) in claims of `step` units that one task per
// thread takes from a shared counter until none is left. The balance is as
// fine as `step` whatever chunks the host's pool would cut, and a thread that
// starts late (a worker waking up) simply takes fewer claims. With units <=
// grain, one task runs everything on the calling thread.
template <class F>
void parallel_claims(const ts_host* host, int64_t units, int64_t step, int64_t grain, F&& fn) {
  if (units <= 0) return;
  step = std::max<int64_t>(1, step);
  const int64_t claims = (units + step - 1) / step;
  const int64_t threads = host != nullptr ? std::max<int32_t>(1, host->n_threads) : 1;
  const int64_t tasks = units <= grain ? 1 : std::min(threads, claims);
  std::atomic<int64_t> next{0};
  sdk::parallel_for(host, tasks, 1, [&](int64_t, int64_t) {
    for (int64_t u0 = next.fetch_add(step, std::memory_order_relaxed); u0 < units;
         u0 = next.fetch_add(step, std::memory_order_relaxed))
      fn(u0, std::min(units, u0 + step));
  });
}

// Units (of matmul_split_rows() rows) a thread claims at a time.
inline int64_t matmul_claim_units() {
  return detail::kClaimUnits;
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
                           const MatmulTarget* targets, int n_targets,
                           RowReduction rows = RowReduction::fastest) {
  if (m <= 0 || n_targets <= 0) return;
  const int64_t split = detail::kSplitRows;
  int64_t units = 0;
  for (int t = 0; t < n_targets; ++t) {
    if (t > 0 && targets[t].w.cols != targets[0].w.cols)
      throw std::invalid_argument("matmul_nt_many: products have different inner sizes");
    if (!has_elems(targets[t].w.dtype) && !is_quantized(targets[t].w.dtype))
      throw std::invalid_argument(unsupported_elems_message(targets[t].w.dtype, "matmul: weight"));
    units += (targets[t].w.rows + split - 1) / split;
  }
  // Activations for the quantised GEMV, quantised once for every target and thread, into a
  // buffer of the calling thread that decode steps reuse.
  const int64_t k = targets[0].w.cols;
  thread_local std::vector<quant::ActBlock> xq_buffer;
  const quant::ActBlock* xq = nullptr;
  for (int t = 0; t < n_targets && xq == nullptr; ++t) {
    if (!is_quantized(targets[t].w.dtype)) continue;
    if (k % quant::kBlock != 0)
      throw std::invalid_argument("matmul: " + std::to_string(k) + " columns of a " +
                                  dtype_name(targets[t].w.dtype) + " weight are not whole blocks");
    if (xq_buffer.size() < static_cast<size_t>(m * k / quant::kBlock))
      xq_buffer.resize(static_cast<size_t>(m * k / quant::kBlock));
    for (int64_t i = 0; i < m; ++i)
      quantize_activations(x + i * ldx, k, xq_buffer.data() + i * k / quant::kBlock);
    xq = xq_buffer.data();
  }
  const int64_t grain = matmul_grain(m, targets[0].w.cols);
  parallel_claims(host, units, detail::kClaimUnits, grain, [&](int64_t u0, int64_t u1) {
    int64_t first = 0;  // first unit of target t
    for (int t = 0; t < n_targets && first < u1; ++t) {
      const MatmulTarget& tg = targets[t];
      const int64_t count = (tg.w.rows + split - 1) / split;
      const int64_t lo = std::max(u0, first), hi = std::min(u1, first + count);
      if (lo < hi)
        matmul_nt_range(x, m, ldx, tg.w, (lo - first) * split,
                        std::min(tg.w.rows, (hi - first) * split), tg.y, tg.ldy, rows,
                        is_quantized(tg.w.dtype) ? xq : nullptr);
      first += count;
    }
  });
}

// y[i, j] = sum_c x[i, c] * w[j, c] for i < m, j < w.rows; x has w.cols columns
// (row stride ldx), y row stride ldy. Splits output columns over the host's
// threads (host may be NULL: single-threaded). Throws std::invalid_argument on a
// weight dtype other than f32/bf16/f16.
inline void matmul_nt(const ts_host* host, const float* x, int64_t m, int64_t ldx,
                      const MatrixView& w, float* y, int64_t ldy,
                      RowReduction rows = RowReduction::fastest) {
  const MatmulTarget target{w, y, ldy};
  matmul_nt_many(host, x, m, ldx, &target, 1, rows);
}

}  // namespace tessera::cpu
