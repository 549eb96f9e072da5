// The SDK's gradient products (cpu/matmul_grad.hpp) against plain loops that make the same
// fused multiply-adds in the same order: every element must match bit for bit, for shapes
// with partial row blocks, partial panels, row strides wider than the matrix, any thread
// count; and adding a product twice gives exactly twice it.
#include <tessera/cpu/matmul_grad.hpp>

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "model_fixtures.hpp"

namespace tessera::test {
namespace {

std::vector<float> random_values(int64_t n, uint64_t seed) {
  Rng rng(seed);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = rng.normal();
  return v;
}

// sum_p a(i, p) * b(p, j), one fma per step from 0 in order (what a register tile does).
template <class A, class B>
float fma_sum(A a, B b, int64_t depth) {
  float s = 0.0f;
  for (int64_t p = 0; p < depth; ++p) s = std::fma(a(p), b(p), s);
  return s;
}

TEST(MatmulGrad, TnAddIsTheInOrderSumAddedOnce) {
  // g[j, p] += sum_i a[i, j] * b[i, p]: a [m, n] (lda), b [m, k] (ldb), g [n, k] (ldg).
  for (const auto& [m, n, k] : std::vector<std::array<int64_t, 3>>{{5, 7, 3}, {37, 100, 33}}) {
    const int64_t lda = n + 3, ldb = k + 1, ldg = k + 2;
    const auto a = random_values(m * lda, 1), b = random_values(m * ldb, 2);
    const auto start = random_values(n * ldg, 3);
    for (ThreadPool* pool : {&test_pool(), static_cast<ThreadPool*>(nullptr)}) {
      std::vector<float> g = start;
      cpu::matmul_tn_add(pool != nullptr ? pool->host() : nullptr, a.data(), lda, b.data(), ldb, m,
                         n, k, g.data(), ldg);
      for (int64_t j = 0; j < n; ++j)
        for (int64_t p = 0; p < k; ++p) {
          const float s = fma_sum([&](int64_t i) { return a[i * lda + j]; },
                                  [&](int64_t i) { return b[i * ldb + p]; }, m);
          ASSERT_EQ(g[j * ldg + p], start[j * ldg + p] + s)
              << "m " << m << " j " << j << " p " << p;
        }
    }
    // Twice from zero: exactly twice.
    std::vector<float> once(n * ldg, 0.0f), twice(n * ldg, 0.0f);
    cpu::matmul_tn_add(test_pool().host(), a.data(), lda, b.data(), ldb, m, n, k, once.data(), ldg);
    for (int r = 0; r < 2; ++r)
      cpu::matmul_tn_add(test_pool().host(), a.data(), lda, b.data(), ldb, m, n, k, twice.data(),
                         ldg);
    for (size_t i = 0; i < once.size(); ++i) ASSERT_EQ(twice[i], 2.0f * once[i]);
  }
}

TEST(MatmulGrad, NnIsTheInOrderSum) {
  // c[i, j] (+)= sum_p a[i, p] * w[p, j]: a [m, rows] (lda), w [rows, cols].
  const int64_t m = 53, rows = 40, cols = 35, lda = rows + 5, ldc = cols + 4;
  const auto a = random_values(m * lda, 4), w = random_values(rows * cols, 5);
  const auto start = random_values(m * ldc, 6);
  const cpu::MatrixView view{w.data(), TS_F32, rows, cols, cols};
  for (const bool accumulate : {false, true}) {
    std::vector<float> c = start;
    cpu::matmul_nn(test_pool().host(), a.data(), m, lda, view, c.data(), ldc, accumulate);
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < cols; ++j) {
        const float s = fma_sum([&](int64_t p) { return a[i * lda + p]; },
                                [&](int64_t p) { return w[p * cols + j]; }, rows);
        ASSERT_EQ(c[i * ldc + j], accumulate ? start[i * ldc + j] + s : s) << i << ", " << j;
      }
  }
}

}  // namespace
}  // namespace tessera::test
