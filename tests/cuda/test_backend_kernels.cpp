// The CUDA backend's kernels against their naive CUDA references and the CPU references:
// RMSNorm in every dtype mix, argmax (ties to the smaller index), sampling by inverse CDF,
// conversion, residual add and the embedding gather.
#include "backend_kernels.hpp"
#include "cuda_test_util.hpp"

#include <tessera/abi.h>
#include <tessera/reference/reference.hpp>

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <vector>

namespace tessera::cuda::test {
namespace {

namespace be = tessera::cuda::backend;

// Host values as a device array of `dtype` (f32 or bf16).
struct TypedArray {
  int32_t dtype;
  DeviceArray<float> f32;
  DeviceArray<Bf16Bits> bf16;
  TypedArray(const std::vector<float>& v, int32_t d) : dtype(d) {
    if (d == TS_F32)
      f32 = DeviceArray<float>(v);
    else
      bf16 = DeviceArray<Bf16Bits>(to_bf16(v));
  }
  void* get() const {
    return dtype == TS_F32 ? static_cast<void*>(f32.get()) : static_cast<void*>(bf16.get());
  }
  std::vector<float> download() const {
    return dtype == TS_F32 ? f32.download() : from_bf16(bf16.download());
  }
};

TEST(BackendKernels, RmsnormMatchesReferenceInEveryDtypeMix) {
  TESSERA_REQUIRE_CUDA_DEVICE();
  for (const auto& [rows, dim] :
       std::vector<std::pair<int64_t, int64_t>>{{1, 64}, {7, 4096}, {3, 333}})
    for (int32_t x_dtype : {TS_F32, TS_BF16})
      for (int32_t w_dtype : {TS_F32, TS_BF16})
        for (int32_t y_dtype : {TS_F32, TS_BF16}) {
          const std::vector<float> x = random_bf16_values(size_t(rows * dim), 91, 3.0f);
          const std::vector<float> w = random_bf16_values(size_t(dim), 92);
          std::vector<float> want(x.size());
          reference::rmsnorm(x.data(), w.data(), 1e-5, rows, dim, want.data());
          const TypedArray xd(x, x_dtype), wd(w, w_dtype);
          const std::vector<float> poison(x.size(), NAN);
          TypedArray fast(poison, y_dtype), naive(poison, y_dtype);
          be::launch_rmsnorm(xd.get(), x_dtype, wd.get(), w_dtype, fast.get(), y_dtype, rows, dim,
                             1e-5f, nullptr);
          be::launch_rmsnorm_reference(xd.get(), x_dtype, wd.get(), w_dtype, naive.get(), y_dtype,
                                       rows, dim, 1e-5f, nullptr);
          const double tol = y_dtype == TS_F32 ? kTolF32 * 10 : kTolBf16;
          EXPECT_LE(relative_error(naive.download(), want), tol) << rows << "x" << dim;
          EXPECT_LE(relative_error(fast.download(), want), tol) << rows << "x" << dim;
        }
}

TEST(BackendKernels, ArgmaxMatchesReferenceAndPrefersTheFirstOfTies) {
  TESSERA_REQUIRE_CUDA_DEVICE();
  const int64_t rows = 4, vocab = 128257;  // Llama-3 vocabulary: not a multiple of anything
  std::vector<float> logits = random_floats(size_t(rows * vocab), 101);
  logits[size_t(1 * vocab + 77)] = 30.0f;  // a tie in row 1: 77 wins over 90000
  logits[size_t(1 * vocab + 90000)] = 30.0f;
  logits[size_t(2 * vocab + vocab - 1)] = 40.0f;  // the very last element
  DeviceArray<float> ld(logits);
  DeviceArray<int32_t> fast(std::vector<int32_t>(rows, -1)), naive(std::vector<int32_t>(rows, -1));
  be::launch_argmax(ld.get(), rows, vocab, fast.get(), nullptr);
  be::launch_argmax_reference(ld.get(), rows, vocab, naive.get(), nullptr);
  std::vector<int32_t> want;
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = logits.data() + r * vocab;
    want.push_back(static_cast<int32_t>(std::max_element(row, row + vocab) - row));
  }
  EXPECT_EQ(fast.download(), want);
  EXPECT_EQ(naive.download(), want);
  EXPECT_EQ(want[1], 77);
}

TEST(BackendKernels, SampleInvertsTheDistribution) {
  TESSERA_REQUIRE_CUDA_DEVICE();
  const int64_t vocab = 50000;
  const std::vector<float> uniforms{0.0f, 0.1f, 0.5f, 0.9f, 0.99999f};
  const auto rows = static_cast<int64_t>(uniforms.size());
  std::vector<float> logits = random_floats(size_t(rows * vocab), 111, 3.0f);
  for (int64_t i = 0; i < vocab; i += 7) logits[size_t(2 * vocab + i)] = -INFINITY;  // banned
  for (float temperature : {0.5f, 1.0f, 2.0f}) {
    DeviceArray<float> ld(logits), ud(uniforms);
    DeviceArray<int32_t> got(std::vector<int32_t>(size_t(rows), -1));
    be::launch_sample(ld.get(), rows, vocab, temperature, ud.get(), got.get(), nullptr);
    const std::vector<int32_t> picks = got.download();
    for (int64_t r = 0; r < rows; ++r) {
      const float* row = logits.data() + r * vocab;
      const double max_logit = *std::max_element(row, row + vocab);
      std::vector<double> cum(static_cast<size_t>(vocab));
      double total = 0;
      for (int64_t i = 0; i < vocab; ++i) {
        total += std::exp((row[i] - max_logit) / temperature);
        cum[size_t(i)] = total;
      }
      const double target = uniforms[size_t(r)] * total;
      const int32_t k = picks[size_t(r)];
      ASSERT_GE(k, 0);
      ASSERT_LT(k, vocab);
      EXPECT_GT(std::exp((row[k] - max_logit) / temperature), 0.0) << "picked a banned token";
      // f32 sums on the device: the pick's interval holds the target up to their rounding.
      const double lo = k == 0 ? 0.0 : cum[size_t(k - 1)], hi = cum[size_t(k)];
      EXPECT_GE(target, lo - 1e-5 * total) << "row " << r << " T " << temperature;
      EXPECT_LE(target, hi + 1e-5 * total) << "row " << r << " T " << temperature;
    }
  }
}

TEST(BackendKernels, ConvertAddAndEmbed) {
  TESSERA_REQUIRE_CUDA_DEVICE();
  const int64_t n = 1000, vocab = 300, hidden = 72;
  const std::vector<float> a = random_floats(size_t(n), 121),
                           b = random_bf16_values(size_t(n), 122);
  // f32 -> bf16 rounds to nearest even, as the host's f32_to_bf16.
  DeviceArray<float> ad(a);
  DeviceArray<Bf16Bits> ab(std::vector<Bf16Bits>(size_t(n), kBf16Nan));
  be::launch_convert(ad.get(), TS_F32, ab.get(), TS_BF16, n, nullptr);
  EXPECT_EQ(ab.download(), to_bf16(a));
  // f32 residual += bf16 contribution.
  DeviceArray<Bf16Bits> bd(to_bf16(b));
  be::launch_add(ad.get(), TS_F32, bd.get(), TS_BF16, n, nullptr);
  std::vector<float> sum(static_cast<size_t>(n));
  for (size_t i = 0; i < sum.size(); ++i) sum[i] = a[i] + b[i];
  EXPECT_LE(relative_error(ad.download(), sum), kTolF32);
  // bf16 table rows gathered into f32, exactly.
  const std::vector<float> table = random_bf16_values(size_t(vocab * hidden), 123);
  const std::vector<int32_t> tokens{0, 299, 5, 5, 150};
  DeviceArray<Bf16Bits> td(to_bf16(table));
  DeviceArray<int32_t> tok(tokens);
  DeviceArray<float> out(std::vector<float>(tokens.size() * size_t(hidden), NAN));
  be::launch_embed(td.get(), TS_BF16, tok.get(), int64_t(tokens.size()), hidden, out.get(), TS_F32,
                   nullptr);
  std::vector<float> want;
  for (int32_t t : tokens)
    want.insert(want.end(), table.begin() + t * hidden, table.begin() + (t + 1) * hidden);
  EXPECT_EQ(out.download(), want);
}

}  // namespace
}  // namespace tessera::cuda::test
