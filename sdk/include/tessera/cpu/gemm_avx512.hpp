// The register tile of the packed GEMM (matmul.hpp's gemm_range) with AVX-512:
// one 16-float vector is a whole row of a packed panel, so a tile of MR rows of
// x by the panel's 16 columns keeps MR accumulators; up to kTileRows512 = 12
// rows per tile (the AVX2 tile has 6), so each panel row loaded feeds twelve
// FMAs and the x broadcasts come straight from memory into the FMA. The tile's
// last columns (cols < 16) are masked stores. Same contract as gemm_tile:
// c[i, 0 .. cols) (+)= sum_p a[i * lda + p * a_step] * b[p * ldb + 0 .. 16).
#pragma once

#include <tessera/cpu/gemv_avx512.hpp>
#include <tessera/cpu/isa.hpp>

#include <cstdint>

#if TESSERA_CPU_AVX512

namespace tessera::cpu::detail {

constexpr int64_t kTileRows512 = 12;

template <int MR>
TESSERA_TARGET_AVX512 void gemm_tile_avx512(const float* a, int64_t lda, int64_t a_step,
                                            const float* b, int64_t ldb, int64_t k, float* c,
                                            int64_t ldc, int64_t cols, bool accumulate) {
  __m512 acc[MR];
#pragma GCC unroll 12
  for (int i = 0; i < MR; ++i) acc[i] = _mm512_setzero_ps();
#pragma GCC unroll 2
  for (int64_t p = 0; p < k; ++p) {
    const __m512 bp = _mm512_loadu_ps(b + p * ldb);
#pragma GCC unroll 12
    for (int i = 0; i < MR; ++i)
      acc[i] = _mm512_fmadd_ps(_mm512_set1_ps(a[i * lda + p * a_step]), bp, acc[i]);
  }
  const auto mask = static_cast<__mmask16>(cols >= 16 ? 0xffffu : (1u << cols) - 1u);
#pragma GCC unroll 12
  for (int i = 0; i < MR; ++i) {
    float* ci = c + i * ldc;
    if (accumulate) acc[i] = _mm512_add_ps(acc[i], _mm512_maskz_loadu_ps(mask, ci));
    _mm512_mask_storeu_ps(ci, mask, acc[i]);
  }
}

// gemm_tile_avx512 for any rows in [1, kTileRows512].
TESSERA_TARGET_AVX512 inline void gemm_tile_rows_avx512(int64_t rows, const float* a, int64_t lda,
                                                        int64_t a_step, const float* b, int64_t ldb,
                                                        int64_t k, float* c, int64_t ldc,
                                                        int64_t cols, bool accumulate) {
  switch (rows) {
#define TESSERA_GEMM_TILE_CASE(R)                                             \
  case R:                                                                     \
    gemm_tile_avx512<R>(a, lda, a_step, b, ldb, k, c, ldc, cols, accumulate); \
    break;
    TESSERA_GEMM_TILE_CASE(1)
    TESSERA_GEMM_TILE_CASE(2)
    TESSERA_GEMM_TILE_CASE(3)
    TESSERA_GEMM_TILE_CASE(4)
    TESSERA_GEMM_TILE_CASE(5)
    TESSERA_GEMM_TILE_CASE(6)
    TESSERA_GEMM_TILE_CASE(7)
    TESSERA_GEMM_TILE_CASE(8)
    TESSERA_GEMM_TILE_CASE(9)
    TESSERA_GEMM_TILE_CASE(10)
    TESSERA_GEMM_TILE_CASE(11)
    default:
      gemm_tile_avx512<12>(a, lda, a_step, b, ldb, k, c, ldc, cols, accumulate);
      break;
#undef TESSERA_GEMM_TILE_CASE
  }
}

}  // namespace tessera::cpu::detail

#endif  // TESSERA_CPU_AVX512
