// The FFN path's kernels: SwiGLU gating (vectorised and scalar) and the cuBLASLt bf16 GEMM
// (tessera/cuda/cublaslt.hpp) against the naive CUDA GEMM and the CPU references.
#include "cuda_test_util.hpp"
#include "ffn_kernels.hpp"

#include <tessera/cuda/cublaslt.hpp>
#include <tessera/reference/reference.hpp>

#include <gtest/gtest.h>

#include <cmath>
#include <ostream>
#include <vector>

namespace tessera::cuda::test {
namespace {

namespace ffn = tessera::cuda::ffn;

std::vector<float> swiglu_on_host(const std::vector<float>& gate_up, int64_t n, int64_t inter) {
  std::vector<float> out(static_cast<size_t>(n * inter));
  for (int64_t t = 0; t < n; ++t)
    for (int64_t i = 0; i < inter; ++i) {
      const float g = gate_up[size_t(t * 2 * inter + i)],
                  u = gate_up[size_t(t * 2 * inter + inter + i)];
      out[size_t(t * inter + i)] = g / (1.0f + std::exp(-g)) * u;
    }
  return out;
}

TEST(FfnKernels, SwigluFastAndReferenceMatchHost) {
  TESSERA_REQUIRE_CUDA_DEVICE();
  // 1536 and 8: the vectorised kernel; 100 and 37: rows not 16-byte aligned, the scalar one.
  for (const auto& [n, inter] :
       std::vector<std::pair<int64_t, int64_t>>{{1, 8}, {7, 1536}, {33, 100}, {5, 37}}) {
    const std::vector<float> gate_up = random_bf16_values(size_t(n * 2 * inter), 71, 2.0f);
    const std::vector<float> want = swiglu_on_host(gate_up, n, inter);
    DeviceArray<Bf16Bits> in(to_bf16(gate_up));
    DeviceArray<Bf16Bits> fast(std::vector<Bf16Bits>(size_t(n * inter), kBf16Nan));
    DeviceArray<Bf16Bits> naive(std::vector<Bf16Bits>(size_t(n * inter), kBf16Nan));
    const auto* src = reinterpret_cast<const ffn::bf16*>(in.get());
    ffn::launch_swiglu(src, n, inter, reinterpret_cast<ffn::bf16*>(fast.get()), nullptr);
    ffn::launch_swiglu_reference(src, n, inter, reinterpret_cast<ffn::bf16*>(naive.get()), nullptr);
    EXPECT_LE(relative_error(from_bf16(naive.download()), want), kTolBf16) << n << "x" << inter;
    EXPECT_LE(relative_error(from_bf16(fast.download()), want), kTolBf16) << n << "x" << inter;
  }
}

struct GemmShape {
  int64_t m, n, k;
};

void PrintTo(const GemmShape& s, std::ostream* os) {
  *os << "m " << s.m << ", n " << s.n << ", k " << s.k;
}

class BlasGemm : public ::testing::TestWithParam<GemmShape> {};

// y = x w^T through cuBLASLt, f32 and bf16 out, against the naive kernel (f32) and the
// CPU reference on the same bf16 values.
TEST_P(BlasGemm, MatchesNaiveKernelAndCpuReference) {
  TESSERA_REQUIRE_CUDA_DEVICE();
  const auto [m, n, k] = GetParam();
  const std::vector<float> x = random_bf16_values(size_t(m * k), 81);
  const std::vector<float> w = random_bf16_values(size_t(n * k), 82, 1.0f / std::sqrt(float(k)));
  std::vector<float> want(size_t(m * n));
  reference::matmul_nt(x.data(), w.data(), m, n, k, want.data());

  DeviceArray<Bf16Bits> xd(to_bf16(x)), wd(to_bf16(w));
  DeviceArray<float> naive(std::vector<float>(size_t(m * n), NAN));
  ffn::launch_matmul_nt_reference(reinterpret_cast<const ffn::bf16*>(xd.get()),
                                  reinterpret_cast<const ffn::bf16*>(wd.get()), m, n, k,
                                  naive.get(), nullptr);
  EXPECT_LE(relative_error(naive.download(), want), kTolF32 * 10);

  Gemm gemm;
  GemmArgs g;
  g.x = xd.get();
  g.w = wd.get();
  g.m = m;
  g.n = n;
  g.k = k;
  g.ldx = k;
  g.ldw = k;
  g.ldy = n;
  DeviceArray<float> y32(std::vector<float>(size_t(m * n), NAN));
  g.y = y32.get();
  g.y_dtype = TS_F32;
  gemm.run(g, nullptr);
  EXPECT_LE(relative_error(y32.download(), want), 1e-3);  // bf16 products, f32 sums
  DeviceArray<Bf16Bits> y16(std::vector<Bf16Bits>(size_t(m * n), kBf16Nan));
  g.y = y16.get();
  g.y_dtype = TS_BF16;
  gemm.run(g, nullptr);
  EXPECT_LE(relative_error(from_bf16(y16.download()), want), kTolBf16);
}

INSTANTIATE_TEST_SUITE_P(Shapes, BlasGemm,
                         ::testing::Values(GemmShape{1, 128, 64}, GemmShape{7, 1000, 96},
                                           GemmShape{33, 5, 200}, GemmShape{130, 576, 1536},
                                           GemmShape{256, 3072, 1024}),
                         [](const ::testing::TestParamInfo<GemmShape>& p) {
                           return "m" + std::to_string(p.param.m) + "_n" +
                                  std::to_string(p.param.n) + "_k" + std::to_string(p.param.k);
                         });

}  // namespace
}  // namespace tessera::cuda::test
