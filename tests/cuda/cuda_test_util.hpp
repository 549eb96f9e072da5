// Shared pieces of the CUDA tests: the skip without a device, device arrays, bf16 random
// data, error measures and the tolerances, stated once per dtype.
#pragma once

#include <tessera/cuda/check.hpp>
#include <tessera/cuda/runtime.hpp>
#include <tessera/dtype.hpp>

#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

namespace tessera::cuda::test {

// Tolerances on max |got - want| / max |want| (what tessera plugin-check reports):
//   f32 kernels (RMSNorm, add, convert), same inputs                      1e-5
//   one bf16 rounding of an f32-accumulated result (GEMM, SwiGLU, RoPE)   1e-2
//   attention kernels vs the naive kernel (probabilities rounded to bf16) 2e-2
//   whole bf16 blocks vs the f32 CPU references (several bf16 stages)     3e-2
constexpr double kTolF32 = 1e-5;
constexpr double kTolBf16 = 1e-2;
constexpr double kTolAttention = 2e-2;
constexpr double kTolBlock = 3e-2;

// GTEST_SKIP()s the calling test when there is no usable device.
#define TESSERA_REQUIRE_CUDA_DEVICE()                                                             \
  do {                                                                                            \
    if (::tessera::cuda::device_count() == 0)                                                     \
      GTEST_SKIP() << ::tessera::cuda::no_device_reason() << " (skipped: this test needs a GPU)"; \
  } while (0)

// A typed device array with host round trips.
template <class T>
class DeviceArray {
 public:
  DeviceArray() = default;
  explicit DeviceArray(size_t n) : n_(n) { buffer_.reserve(std::max<size_t>(n, 1) * sizeof(T)); }
  explicit DeviceArray(const std::vector<T>& host) : DeviceArray(host.size()) { upload(host); }
  void upload(const std::vector<T>& host) {
    check(cudaMemcpy(buffer_.get(), host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice),
          "cudaMemcpy H2D");
  }
  std::vector<T> download() const {
    std::vector<T> host(n_);
    check(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
    check(cudaMemcpy(host.data(), buffer_.get(), n_ * sizeof(T), cudaMemcpyDeviceToHost),
          "cudaMemcpy D2H");
    return host;
  }
  T* get() const { return buffer_.get<T>(); }
  size_t size() const { return n_; }

 private:
  size_t n_ = 0;
  DeviceBuffer buffer_;
};

using Bf16Bits = uint16_t;  // bf16 on the host, as bits

inline std::vector<float> random_floats(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = dist(gen);
  return v;
}

inline std::vector<Bf16Bits> to_bf16(const std::vector<float>& v) {
  std::vector<Bf16Bits> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = f32_to_bf16(v[i]);
  return out;
}

inline std::vector<float> from_bf16(const std::vector<Bf16Bits>& v) {
  std::vector<float> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = bf16_to_f32(v[i]);
  return out;
}

// Values exactly representable in bf16 (so host references see what the device sees).
inline std::vector<float> random_bf16_values(size_t n, uint32_t seed, float scale = 1.0f) {
  return from_bf16(to_bf16(random_floats(n, seed, scale)));
}

// max |got - want| / max |want|; NaN (an unwritten or broken output) counts as infinite.
inline double relative_error(const std::vector<float>& got, const std::vector<float>& want) {
  if (got.size() != want.size()) return INFINITY;
  double max_abs = 0, max_ref = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double d = std::fabs(static_cast<double>(got[i]) - want[i]);
    if (std::isnan(d)) return INFINITY;
    max_abs = std::max(max_abs, d);
    max_ref = std::max(max_ref, std::fabs(static_cast<double>(want[i])));
  }
  return max_abs / std::max(max_ref, 1e-30);
}

constexpr Bf16Bits kBf16Nan = 0x7fc0;  // poison for outputs that must be written

}  // namespace tessera::cuda::test
