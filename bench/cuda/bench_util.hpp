// Shared pieces of the CUDA benchmarks: skipping without a device, timing with CUDA events
// (manual time: the device's time, not the host's), random bf16 device buffers.
#pragma once

#include <tessera/cuda/runtime.hpp>
#include <tessera/dtype.hpp>

#include <benchmark/benchmark.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <random>
#include <vector>

namespace tessera::cuda::bench {

// True, after SkipWithError, when there is no device to run on.
inline bool skip_without_device(benchmark::State& state) {
  if (device_count() > 0) return false;
  static const std::string reason = no_device_reason();
  state.SkipWithError(reason.c_str());
  return true;
}

// Times `run` with CUDA events around each iteration, after one warm-up run.
template <class F>
void time_on_device(benchmark::State& state, F&& run) {
  run();
  check(cudaDeviceSynchronize(), "warm-up");
  cudaEvent_t start, stop;
  check(cudaEventCreate(&start), "cudaEventCreate");
  check(cudaEventCreate(&stop), "cudaEventCreate");
  for (auto _ : state) {
    check(cudaEventRecord(start), "cudaEventRecord");
    run();
    check(cudaEventRecord(stop), "cudaEventRecord");
    check(cudaEventSynchronize(stop), "cudaEventSynchronize");
    float ms = 0;
    check(cudaEventElapsedTime(&ms, start, stop), "cudaEventElapsedTime");
    state.SetIterationTime(static_cast<double>(ms) / 1e3);
  }
  (void)cudaEventDestroy(start);
  (void)cudaEventDestroy(stop);
}

// A device buffer of n random bf16 values (normal, scale): never zeros, which can run
// faster than real data. Up to 4 Mi values are drawn on the host and repeated to fill
// larger buffers (the cache and weight sizes here reach billions of elements).
inline DeviceBuffer random_bf16(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<uint16_t> host(std::min<size_t>(n, size_t{1} << 22));
  for (uint16_t& h : host) h = f32_to_bf16(dist(gen));
  DeviceBuffer buffer(std::max<size_t>(n, 1) * sizeof(uint16_t));
  for (size_t done = 0; done < n; done += host.size()) {
    const size_t count = std::min(host.size(), n - done);
    check(cudaMemcpy(buffer.get<uint16_t>() + done, host.data(), count * sizeof(uint16_t),
                     cudaMemcpyHostToDevice),
          "cudaMemcpy");
  }
  return buffer;
}

inline void report_tflops(benchmark::State& state, double flops_per_iteration) {
  state.counters["TFLOP/s"] =
      benchmark::Counter(flops_per_iteration / 1e12, benchmark::Counter::kIsIterationInvariantRate);
}

}  // namespace tessera::cuda::bench
