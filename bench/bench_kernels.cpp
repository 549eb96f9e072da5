// Google Benchmark cases for the hot CPU paths, on the SmolLM2-135M shapes.
// Memory-bound cases report bytes/s (compare with BM_ReadBandwidth from the same
// run); compute-bound ones report FLOP/s.
#include <tessera/core/thread_pool.hpp>
#include <tessera/core/weights.hpp>
#include <tessera/cpu/matmul.hpp>
#include <tessera/dtype.hpp>

#include <benchmark/benchmark.h>

#include <immintrin.h>

#include <algorithm>
#include <mutex>
#include <numeric>
#include <vector>

namespace {

tessera::ThreadPool& pool() {
  static tessera::ThreadPool p(0);
  return p;
}

std::vector<float> random_floats(size_t n, uint64_t seed) {
  tessera::Rng rng(seed);
  std::vector<float> v(n);
  for (float& f : v) f = rng.normal() * 0.05f;
  return v;
}

// Reads a 256 MiB buffer with every thread: the bandwidth the GEMV should approach.
void BM_ReadBandwidth(benchmark::State& state) {
  const size_t n = size_t{64} << 20;  // floats
  std::vector<float> data(n, 1.0f);
  std::vector<double> partial(static_cast<size_t>(pool().size()) * 8, 0.0);
  for (auto _ : state) {
    double total = 0;
    std::mutex m;
    pool().parallel_for(static_cast<int64_t>(n), 1 << 20, [&](int64_t b, int64_t e) {
      // Eight independent accumulators so the adds never limit the loads.
      __m256 acc[8];
      for (auto& a : acc) a = _mm256_setzero_ps();
      int64_t i = b;
      for (; i + 64 <= e; i += 64)
        for (int j = 0; j < 8; ++j)
          acc[j] = _mm256_add_ps(acc[j], _mm256_loadu_ps(&data[static_cast<size_t>(i + 8 * j)]));
      for (int j = 1; j < 8; ++j) acc[0] = _mm256_add_ps(acc[0], acc[j]);
      const __m256 acc0 = acc[0], acc1 = _mm256_setzero_ps();
      alignas(32) float lanes[8];
      _mm256_store_ps(lanes, _mm256_add_ps(acc0, acc1));
      double s = std::accumulate(lanes, lanes + 8, 0.0);
      for (; i < e; ++i) s += data[static_cast<size_t>(i)];
      std::lock_guard<std::mutex> lock(m);
      total += s;
    });
    benchmark::DoNotOptimize(total);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(n * 4));
}
BENCHMARK(BM_ReadBandwidth)->Unit(benchmark::kMillisecond)->UseRealTime();

// y = x W^T for one token: args rows, cols, dtype.
void BM_Gemv(benchmark::State& state) {
  const int64_t rows = state.range(0), cols = state.range(1);
  const auto dtype = static_cast<ts_dtype>(state.range(2));
  const std::vector<float> w32 = random_floats(static_cast<size_t>(rows * cols), 1);
  std::vector<uint16_t> w16(w32.size());
  for (size_t i = 0; i < w32.size(); ++i)
    w16[i] = dtype == TS_BF16 ? tessera::f32_to_bf16(w32[i]) : tessera::f32_to_f16(w32[i]);
  const tessera::cpu::MatrixView w{
      dtype == TS_F32 ? static_cast<const void*>(w32.data()) : w16.data(), dtype, rows, cols, cols};
  const std::vector<float> x = random_floats(static_cast<size_t>(cols), 2);
  std::vector<float> y(static_cast<size_t>(rows));
  for (auto _ : state) {
    tessera::cpu::matmul_nt(pool().host(), x.data(), 1, cols, w, y.data(), rows);
    benchmark::DoNotOptimize(y.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * rows * cols *
                          static_cast<int64_t>(tessera::dtype_size(dtype)));
  state.SetLabel(tessera::dtype_name(dtype));
}
// SmolLM2-135M: FFN gate/up (1536x576), down (576x1536), lm head (49152x576).
BENCHMARK(BM_Gemv)
    ->Args({1536, 576, TS_F32})
    ->Args({576, 1536, TS_F32})
    ->Args({49152, 576, TS_F32})
    ->Args({1536, 576, TS_BF16})
    ->Args({49152, 576, TS_BF16})
    ->Args({1536, 576, TS_F16})
    ->Args({49152, 576, TS_F16})
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();

// Prefill-sized products: args tokens, rows, cols.
void BM_Gemm(benchmark::State& state) {
  const int64_t m = state.range(0), rows = state.range(1), cols = state.range(2);
  const std::vector<float> w = random_floats(static_cast<size_t>(rows * cols), 3);
  const std::vector<float> x = random_floats(static_cast<size_t>(m * cols), 4);
  std::vector<float> y(static_cast<size_t>(m * rows));
  const auto view = tessera::cpu::matrix_view(w.data(), rows, cols);
  for (auto _ : state) {
    tessera::cpu::matmul_nt(pool().host(), x.data(), m, cols, view, y.data(), rows);
    benchmark::DoNotOptimize(y.data());
  }
  state.counters["FLOP/s"] = benchmark::Counter(2.0 * static_cast<double>(m * rows * cols),
                                                benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_Gemm)
    ->Args({512, 1536, 576})
    ->Args({512, 576, 1536})
    ->Args({64, 1536, 576})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
