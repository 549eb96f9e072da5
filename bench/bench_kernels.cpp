// Google Benchmark cases for the hot CPU paths, on the SmolLM2-135M shapes
// (hidden 576, 9 heads, 3 KV heads, head_dim 64, FFN 1536, vocab 49152).
// Memory-bound cases report bytes/s and "of_probe", their share of the read
// bandwidth the core's probe measures in the same case; compute-bound ones
// report FLOP/s. Run with --benchmark_min_time=... as usual.
#include <tessera/cpu/attention.hpp>
#include <tessera/cpu/matmul.hpp>
#include <tessera/dtype.hpp>
#include <tessera/engine/rng.hpp>
#include <tessera/engine/thread_pool.hpp>
#include <tessera/engine/weights.hpp>
#include <tessera/plugin.hpp>
#include <tessera/tools/bandwidth_probe.hpp>

#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cmath>
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

// Read bandwidth of every thread of the pool (what a GEMV should approach).
void BM_ReadBandwidth(benchmark::State& state) {
  const size_t bytes = size_t{256} << 20;
  for (auto _ : state) {
    const tessera::ReadBandwidth bw = tessera::measure_read_bandwidth(pool(), bytes, 1);
    state.SetIterationTime(static_cast<double>(bw.bytes) / bw.bytes_per_second);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(bytes));
}
BENCHMARK(BM_ReadBandwidth)->Unit(benchmark::kMillisecond)->UseManualTime()->Iterations(5);

// Enough copies of a weight matrix to span 320 MB, so that rotating through
// them reads memory rather than a large last-level cache.
struct WeightCopies {
  std::vector<std::vector<float>> f32;
  std::vector<std::vector<uint16_t>> half;
  std::vector<tessera::cpu::MatrixView> views;

  WeightCopies(int64_t rows, int64_t cols, ts_dtype dtype, bool rotate) {
    const std::vector<float> w = random_floats(static_cast<size_t>(rows * cols), 1);
    const size_t bytes = w.size() * tessera::dtype_size(dtype);
    const size_t copies = rotate ? std::max<size_t>(1, (size_t{320} << 20) / bytes + 1) : 1;
    f32.reserve(copies);
    half.reserve(copies);
    for (size_t c = 0; c < copies; ++c) {
      if (dtype == TS_F32) {
        f32.push_back(w);
        views.push_back({f32.back().data(), dtype, rows, cols, cols});
      } else {
        std::vector<uint16_t> h(w.size());
        for (size_t i = 0; i < w.size(); ++i)
          h[i] = dtype == TS_BF16 ? tessera::f32_to_bf16(w[i]) : tessera::f32_to_f16(w[i]);
        half.push_back(std::move(h));
        views.push_back({half.back().data(), dtype, rows, cols, cols});
      }
    }
  }
};

// y = x W^T for one token: args rows, cols, dtype.
void BM_Gemv(benchmark::State& state) {
  const int64_t rows = state.range(0), cols = state.range(1);
  const auto dtype = static_cast<ts_dtype>(state.range(2));
  const WeightCopies w(rows, cols, dtype, true);
  const std::vector<float> x = random_floats(static_cast<size_t>(cols), 2);
  std::vector<float> y(static_cast<size_t>(rows));
  const double probe =
      tessera::measure_read_bandwidth(pool(), size_t{128} << 20, 3).bytes_per_second;
  size_t next = 0;
  for (auto _ : state) {
    tessera::cpu::matmul_nt(pool().host(), x.data(), 1, cols, w.views[next], y.data(), rows);
    next = (next + 1) % w.views.size();
    benchmark::DoNotOptimize(y.data());
  }
  const auto bytes = rows * cols * static_cast<int64_t>(tessera::dtype_size(dtype));
  state.SetBytesProcessed(state.iterations() * bytes);
  state.counters["of_probe"] = benchmark::Counter(static_cast<double>(bytes) / probe,
                                                  benchmark::Counter::kIsIterationInvariantRate);
  state.counters["probe_GB/s"] = probe / 1e9;
  state.SetLabel(tessera::dtype_name(dtype));
}
// SmolLM2-135M: FFN gate/up (1536x576), down (576x1536), lm head (49152x576).
BENCHMARK(BM_Gemv)
    ->Args({1536, 576, TS_F32})
    ->Args({576, 1536, TS_F32})
    ->Args({49152, 576, TS_F32})
    ->Args({1536, 576, TS_BF16})
    ->Args({576, 1536, TS_BF16})
    ->Args({49152, 576, TS_BF16})
    ->Args({1536, 576, TS_F16})
    ->Args({576, 1536, TS_F16})
    ->Args({49152, 576, TS_F16})
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();

// Prefill-sized products: args tokens, rows, cols, dtype.
void BM_Gemm(benchmark::State& state) {
  const int64_t m = state.range(0), rows = state.range(1), cols = state.range(2);
  const auto dtype = static_cast<ts_dtype>(state.range(3));
  const WeightCopies w(rows, cols, dtype, false);
  const std::vector<float> x = random_floats(static_cast<size_t>(m * cols), 4);
  std::vector<float> y(static_cast<size_t>(m * rows));
  for (auto _ : state) {
    tessera::cpu::matmul_nt(pool().host(), x.data(), m, cols, w.views[0], y.data(), rows);
    benchmark::DoNotOptimize(y.data());
  }
  state.counters["FLOP/s"] = benchmark::Counter(2.0 * static_cast<double>(m * rows * cols),
                                                benchmark::Counter::kIsIterationInvariantRate);
  state.SetLabel(tessera::dtype_name(dtype));
}
// A few rows (a verified Medusa tree, a batch of decodes): the multi-row GEMV up to
// kMaxGemvRows (16) with AVX-512, the GEMM beyond; the time per row against BM_Gemv's one.
BENCHMARK(BM_Gemm)
    ->Args({2, 1536, 576, TS_BF16})
    ->Args({4, 1536, 576, TS_BF16})
    ->Args({8, 1536, 576, TS_BF16})
    ->Args({16, 1536, 576, TS_BF16})
    ->Args({17, 1536, 576, TS_BF16})
    ->Args({8, 49152, 576, TS_BF16})
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();
BENCHMARK(BM_Gemm)
    ->Args({512, 1536, 576, TS_F32})
    ->Args({512, 576, 1536, TS_F32})
    ->Args({64, 1536, 576, TS_F32})
    ->Args({512, 1536, 576, TS_BF16})
    ->Args({512, 576, 1536, TS_BF16})
    ->Args({512, 1536, 576, TS_F16})
    ->Args({512, 576, 1536, TS_F16})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// One layer's attention (no projections) for the SmolLM2 shape: args new
// tokens, context after them. Work split as the gqa plugin does: (head, tile
// of 64 queries) items over the pool.
void BM_Attention(benchmark::State& state) {
  constexpr int64_t kHeads = 9, kKvHeads = 3, kHeadDim = 64, kItemQueries = 64;
  const int64_t n_new = state.range(0), context = state.range(1), cached = context - n_new;
  const int64_t kv_width = kKvHeads * kHeadDim, q_width = kHeads * kHeadDim;
  const std::vector<float> k = random_floats(static_cast<size_t>(context * kv_width), 5);
  const std::vector<float> v = random_floats(static_cast<size_t>(context * kv_width), 6);
  const std::vector<float> q = random_floats(static_cast<size_t>(n_new * q_width), 7);
  std::vector<float> out(q.size());
  const int64_t tiles = (n_new + kItemQueries - 1) / kItemQueries;
  for (auto _ : state) {
    tessera::sdk::parallel_for(pool().host(), kHeads * tiles, 1, [&](int64_t i0, int64_t i1) {
      for (int64_t item = i0; item < i1; ++item) {
        const int64_t head = item / tiles, first = item % tiles * kItemQueries;
        tessera::cpu::AttentionHead h;
        h.k = k.data() + head / (kHeads / kKvHeads) * kHeadDim;
        h.v = v.data() + head / (kHeads / kKvHeads) * kHeadDim;
        h.row_stride = kv_width;
        h.head_dim = kHeadDim;
        h.cached = cached;
        h.n_new = n_new;
        h.scale = 0.125f;
        tessera::cpu::attention_queries(h, q.data() + first * q_width + head * kHeadDim, q_width,
                                        first, std::min(kItemQueries, n_new - first),
                                        out.data() + first * q_width + head * kHeadDim, q_width);
      }
    });
    benchmark::DoNotOptimize(out.data());
  }
  // q.k and p.v: 4 * head_dim FLOPs per (query head, visible row).
  double visible = 0;
  for (int64_t i = 0; i < n_new; ++i) visible += static_cast<double>(cached + i + 1);
  state.counters["FLOP/s"] = benchmark::Counter(4.0 * kHeads * kHeadDim * visible,
                                                benchmark::Counter::kIsIterationInvariantRate);
  // K and V rows of the context, read once per KV head group at least.
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * 2 * context * kv_width *
                          static_cast<int64_t>(sizeof(float)));
}
BENCHMARK(BM_Attention)
    ->ArgNames({"new", "context"})
    ->Args({512, 512})
    ->Args({1, 512})
    ->Args({1, 2048})
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
