// Products with quantised weights through cpu::matmul_nt (ABI 2.3): the GEMV takes the
// integer path on 8-bit activations, the GEMM the f32 path on dequantised rows; both against
// the naive references, on every instruction set, and the row-invariant equivalences.
#include <tessera/cpu/isa.hpp>
#include <tessera/cpu/matmul.hpp>
#include <tessera/dtype.hpp>
#include <tessera/engine/rng.hpp>
#include <tessera/engine/thread_pool.hpp>
#include <tessera/quant/blocks.hpp>

#include <gtest/gtest.h>

#include "isa_scope.hpp"

#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

using tessera::cpu::Isa;
using tessera::cpu::MatrixView;

constexpr ts_dtype kQuantized[] = {TS_Q8_0, TS_Q4_0, TS_Q4_1, TS_Q4_K, TS_Q5_K, TS_Q6_K};

using tessera::test::isas_to_test;
using tessera::test::IsaScope;

void put_f16(uint8_t* p, float v) {
  const uint16_t h = tessera::f32_to_f16(v);
  std::memcpy(p, &h, 2);
}

// A [rows, cols] matrix of `dtype` with random quants and scales of a trained model's size.
std::vector<uint8_t> random_matrix(ts_dtype dtype, int64_t rows, int64_t cols, uint64_t seed) {
  const size_t bytes = tessera::dtype_bytes(dtype, rows * cols);
  std::vector<uint8_t> data(bytes);
  tessera::Rng rng(seed);
  for (uint8_t& b : data) b = static_cast<uint8_t>(rng.next() & 0xFF);
  const size_t block = tessera::dtype_block_bytes(dtype);
  for (size_t off = 0; off < bytes; off += block) {
    uint8_t* b = data.data() + off;
    const float d = 0.002f + 0.01f * rng.uniform();
    if (dtype == TS_Q6_K) {
      put_f16(b + 208, d);
    } else {
      put_f16(b, d);
      if (dtype == TS_Q4_1 || dtype == TS_Q4_K || dtype == TS_Q5_K)
        put_f16(b + 2, -0.02f * rng.uniform());
    }
  }
  return data;
}

std::vector<float> normal_floats(size_t n, uint64_t seed) {
  tessera::Rng rng(seed);
  std::vector<float> v(n);
  for (float& f : v) f = rng.normal();
  return v;
}

// |got - want| <= 1e-5 * sum |w x| + 1e-6 for every element, and not all zero.
void expect_close(const std::vector<float>& got, const std::vector<double>& want,
                  const std::vector<double>& scale, const std::string& what) {
  bool any = false;
  for (size_t i = 0; i < got.size(); ++i) {
    any = any || got[i] != 0.0f;
    ASSERT_NEAR(got[i], want[i], 1e-5 * scale[i] + 1e-6) << what << ", element " << i;
  }
  EXPECT_TRUE(any) << what << ": all zeros";
}

// One decode row (the GEMV) equals the sum over rows of quant::dot_reference on the
// activations quantised by the reference: the integer path and the plain path agree.
TEST(QuantMatmul, GemvMatchesTheReferenceOnQuantisedActivations) {
  tessera::ThreadPool pool(2);
  for (const Isa isa : isas_to_test()) {
    const IsaScope scope(isa);
    for (const ts_dtype dtype : kQuantized) {
      const int64_t rows = 67, cols = 512;
      const std::vector<uint8_t> w = random_matrix(dtype, rows, cols, 7 + dtype);
      const std::vector<float> x = normal_floats(static_cast<size_t>(cols), 11);
      std::vector<tessera::quant::ActBlock> xq(static_cast<size_t>(cols / 32));
      tessera::quant::quantize_activations_reference(x.data(), cols, xq.data());
      std::vector<float> y(static_cast<size_t>(rows));
      tessera::cpu::matmul_nt(pool.host(), x.data(), 1, cols,
                              MatrixView{w.data(), dtype, rows, cols, cols}, y.data(), rows);
      std::vector<double> want(y.size()), scale(y.size());
      const size_t row_bytes = tessera::dtype_bytes(dtype, cols);
      std::vector<float> wf(static_cast<size_t>(cols));
      for (int64_t r = 0; r < rows; ++r) {
        const uint8_t* row = w.data() + static_cast<size_t>(r) * row_bytes;
        want[static_cast<size_t>(r)] = tessera::quant::dot_reference(dtype, row, xq.data(), cols);
        tessera::quant::dequantize_row_reference(dtype, row, wf.data(), cols);
        double s = 0;
        for (int64_t c = 0; c < cols; ++c) s += std::fabs(static_cast<double>(wf[c]) * x[c]);
        scale[static_cast<size_t>(r)] = s;
      }
      expect_close(
          y, want, scale,
          std::string(tessera::dtype_name(dtype)) + " GEMV on " + tessera::cpu::isa_name(isa));
    }
  }
}

// A prefill (more rows than the float GEMV takes) runs every row through the same integer
// GEMV: each row of y is within float rounding of the plain product on that row's quantised
// activations, and far from a product that skipped the quantisation of x only by its error.
TEST(QuantMatmul, PrefillRowsMatchTheReferenceRowByRow) {
  tessera::ThreadPool pool(2);
  for (const Isa isa : isas_to_test()) {
    const IsaScope scope(isa);
    for (const ts_dtype dtype : kQuantized) {
      const int64_t m = 37, rows = 150, cols = 256;
      const std::vector<uint8_t> w = random_matrix(dtype, rows, cols, 19 + dtype);
      const MatrixView view{w.data(), dtype, rows, cols, cols};
      const std::vector<float> x = normal_floats(static_cast<size_t>(m * cols), 23);
      std::vector<float> y(static_cast<size_t>(m * rows));
      tessera::cpu::matmul_nt(pool.host(), x.data(), m, cols, view, y.data(), rows);
      std::vector<float> wf(static_cast<size_t>(rows * cols));
      ASSERT_TRUE(
          tessera::quant::dequantize_row_reference(dtype, w.data(), wf.data(), rows * cols));
      std::vector<tessera::quant::ActBlock> xq(static_cast<size_t>(cols / 32));
      std::vector<double> want(y.size()), scale(y.size());
      const size_t row_bytes = tessera::dtype_bytes(dtype, cols);
      for (int64_t i = 0; i < m; ++i) {
        tessera::quant::quantize_activations_reference(x.data() + i * cols, cols, xq.data());
        for (int64_t j = 0; j < rows; ++j) {
          const size_t at = static_cast<size_t>(i * rows + j);
          want[at] = tessera::quant::dot_reference(
              dtype, w.data() + static_cast<size_t>(j) * row_bytes, xq.data(), cols);
          for (int64_t c = 0; c < cols; ++c)
            scale[at] += std::fabs(x[static_cast<size_t>(i * cols + c)] *
                                   wf[static_cast<size_t>(j * cols + c)]);
        }
      }
      expect_close(
          y, want, scale,
          std::string(tessera::dtype_name(dtype)) + " prefill on " + tessera::cpu::isa_name(isa));
    }
  }
}

// Batch = each alone, exactly: every row of a product (the fastest reduction and each_row
// alike) has the bits of that row alone, and a one-row product the same bits on 1 and on 2
// threads.
TEST(QuantMatmul, EveryRowGetsTheBitsItGetsAlone) {
  tessera::ThreadPool one(1), two(2);
  for (const ts_dtype dtype : {TS_Q4_1, TS_Q6_K}) {
    const int64_t m = 21, rows = 96, cols = 256;
    const std::vector<uint8_t> w = random_matrix(dtype, rows, cols, 31);
    const MatrixView view{w.data(), dtype, rows, cols, cols};
    const std::vector<float> x = normal_floats(static_cast<size_t>(m * cols), 37);
    std::vector<float> all(static_cast<size_t>(m * rows)), fastest(all.size());
    tessera::cpu::matmul_nt(two.host(), x.data(), m, cols, view, all.data(), rows,
                            tessera::cpu::RowReduction::each_row);
    tessera::cpu::matmul_nt(two.host(), x.data(), m, cols, view, fastest.data(), rows);
    ASSERT_EQ(0, std::memcmp(all.data(), fastest.data(), all.size() * 4))
        << tessera::dtype_name(dtype) << ": each_row and fastest differ";
    for (int64_t i = 0; i < m; ++i) {
      std::vector<float> alone(static_cast<size_t>(rows)), alone1(alone.size());
      tessera::cpu::matmul_nt(two.host(), x.data() + i * cols, 1, cols, view, alone.data(), rows);
      tessera::cpu::matmul_nt(one.host(), x.data() + i * cols, 1, cols, view, alone1.data(), rows);
      ASSERT_EQ(0, std::memcmp(alone.data(), all.data() + i * rows, alone.size() * 4))
          << tessera::dtype_name(dtype) << " row " << i;
      ASSERT_EQ(0, std::memcmp(alone.data(), alone1.data(), alone.size() * 4))
          << tessera::dtype_name(dtype) << " row " << i << ": 1 thread against 2";
    }
  }
}

// Views of quantised matrices count whole blocks; a column range inside a block is refused.
TEST(QuantMatmul, ViewsRefuseColumnsInsideABlock) {
  const std::vector<uint8_t> w = random_matrix(TS_Q4_K, 4, 512, 41);
  const MatrixView view{w.data(), TS_Q4_K, 4, 512, 512};
  EXPECT_EQ(view.row_bytes(), 2u * 144u);
  EXPECT_EQ(view.row_slice(1, 3).data, w.data() + 2 * 144);
  EXPECT_EQ(view.col_slice(256, 512).data, w.data() + 144);
  try {
    (void)view.col_slice(64, 512);
    FAIL() << "a column offset of 64 inside a 256-value block was accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("not on a block of q4_k (256 values)"), std::string::npos)
        << e.what();
  }
}

}  // namespace
