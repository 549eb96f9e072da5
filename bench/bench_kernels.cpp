// Google Benchmark cases for the hot CPU paths, on the SmolLM2-135M shapes
// (hidden 576, 9 heads, 3 KV heads, head_dim 64, FFN 1536, vocab 49152).
// Memory-bound cases report bytes/s and "of_probe", their share of the read
// bandwidth the core's probe measures in the same case; compute-bound ones
// report FLOP/s. Run with --benchmark_min_time=... as usual.
#include <tessera/cpu/attention.hpp>
#include <tessera/cpu/matmul.hpp>
#include <tessera/cpu/quant_matmul.hpp>
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
#include <cstring>
#include <string>
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

// A block-quantised [rows, cols] weight: random bytes, every f16 scale (and minimum) set to a
// small value; enough copies to span 320 MB, as WeightCopies.
struct QuantWeightCopies {
  std::vector<std::vector<uint8_t>> copies;
  size_t row_bytes;

  QuantWeightCopies(int64_t rows, int64_t cols, ts_dtype dtype)
      : row_bytes(tessera::dtype_bytes(dtype, cols)) {
    tessera::Rng rng(3);
    std::vector<uint8_t> w(static_cast<size_t>(rows) * row_bytes);
    for (uint8_t& b : w) b = static_cast<uint8_t>(rng.next());
    const size_t block = tessera::dtype_block_bytes(dtype);
    const uint16_t small = tessera::f32_to_f16(0.01f);
    for (size_t at = 0; at < w.size(); at += block) {
      const size_t scale_at = dtype == TS_Q6_K ? at + 208 : at;
      std::memcpy(&w[scale_at], &small, 2);
      if (dtype == TS_Q4_1 || dtype == TS_Q4_K || dtype == TS_Q5_K)
        std::memcpy(&w[at + 2], &small, 2);
    }
    const size_t n = std::max<size_t>(1, (size_t{320} << 20) / w.size() + 1);
    for (size_t c = 0; c < n; ++c) copies.push_back(w);
  }
};

// y = x W^T for one token with block-quantised weights, as matmul_nt splits a GEMV over the
// pool: the activations quantised once (calling thread), rows in units of matmul_split_rows().
// args rows, cols, dtype. vs_bf16: the bf16 GEMV's time over this one's, measured in the same
// case on the same shape (BM_Gemv's loop), so > 1 is faster than bf16.
void BM_QuantGemv(benchmark::State& state) {
  const int64_t rows = state.range(0), cols = state.range(1);
  const auto dtype = static_cast<ts_dtype>(state.range(2));
  if (tessera::dtype_bytes(dtype, cols) == 0) {
    state.SkipWithError("the columns are not whole blocks of the dtype");
    return;
  }
  const std::vector<float> x = random_floats(static_cast<size_t>(cols), 2);
  std::vector<float> y(static_cast<size_t>(rows));
  double bf16_seconds = 0;
  {
    const WeightCopies w(rows, cols, TS_BF16, true);
    constexpr int kRuns = 2000;
    const auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < kRuns; ++i)
      tessera::cpu::matmul_nt(pool().host(), x.data(), 1, cols, w.views[i % w.views.size()],
                              y.data(), rows);
    bf16_seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() / kRuns;
  }
  const QuantWeightCopies w(rows, cols, dtype);
  std::vector<tessera::quant::ActBlock> xq(static_cast<size_t>(cols / tessera::quant::kBlock));
  const double probe =
      tessera::measure_read_bandwidth(pool(), size_t{128} << 20, 3).bytes_per_second;
  const int64_t split = tessera::cpu::matmul_split_rows();
  const int64_t units = (rows + split - 1) / split;
  size_t next = 0;
  for (auto _ : state) {
    tessera::cpu::quantize_activations(x.data(), cols, xq.data());
    const uint8_t* wq = w.copies[next].data();
    tessera::cpu::parallel_claims(pool().host(), units, tessera::cpu::matmul_claim_units(),
                                  tessera::cpu::matmul_grain(1, cols), [&](int64_t u0, int64_t u1) {
                                    tessera::cpu::quant_gemv_rows(
                                        dtype, wq, w.row_bytes, cols, u0 * split,
                                        std::min(rows, u1 * split), xq.data(), y.data());
                                  });
    next = (next + 1) % w.copies.size();
    benchmark::DoNotOptimize(y.data());
  }
  const auto bytes = rows * static_cast<int64_t>(w.row_bytes);
  state.SetBytesProcessed(state.iterations() * bytes);
  state.counters["of_probe"] = benchmark::Counter(static_cast<double>(bytes) / probe,
                                                  benchmark::Counter::kIsIterationInvariantRate);
  state.counters["vs_bf16"] =
      benchmark::Counter(bf16_seconds, benchmark::Counter::kIsIterationInvariantRate);
  const bool vnni = tessera::cpu::active_vnni();
  state.SetLabel(std::string(tessera::dtype_name(dtype)) + " " +
                 tessera::cpu::isa_name(tessera::cpu::active_isa()) + (vnni ? "-vnni" : ""));
}
// SmolLM2-135M's FFN shapes: gate/up (1536x576) and down (576x1536).
// The K types need whole 256-value super-blocks per row: 576 columns are not.
BENCHMARK(BM_QuantGemv)
    ->ArgsProduct({{1536}, {576}, {TS_Q8_0, TS_Q4_0, TS_Q4_1}})
    ->ArgsProduct({{576}, {1536}, {TS_Q8_0, TS_Q4_0, TS_Q4_1, TS_Q4_K, TS_Q5_K, TS_Q6_K}})
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();

// Prefill with quantised weights: args tokens, rows, cols, dtype, and 1 to run quant_gemv_rows
// per token instead of quant_gemm_rows (the bits are the same; the time is not). Threads take
// matmul_split_rows() W rows at a time, as matmul.hpp's quant_matmul_range.
void BM_QuantGemm(benchmark::State& state) {
  const int64_t m = state.range(0), rows = state.range(1), cols = state.range(2);
  const auto dtype = static_cast<ts_dtype>(state.range(3));
  const bool per_row = state.range(4) != 0;
  if (tessera::dtype_bytes(dtype, cols) == 0) {
    state.SkipWithError("the columns are not whole blocks of the dtype");
    return;
  }
  const size_t row_bytes = tessera::dtype_bytes(dtype, cols);
  std::vector<uint8_t> w(static_cast<size_t>(rows) * row_bytes);
  {
    tessera::Rng rng(3);
    for (uint8_t& b : w) b = static_cast<uint8_t>(rng.next());
    const size_t block = tessera::dtype_block_bytes(dtype);
    const uint16_t small = tessera::f32_to_f16(0.01f);
    for (size_t at = 0; at < w.size(); at += block) {
      std::memcpy(&w[dtype == TS_Q6_K ? at + 208 : at], &small, 2);
      if (dtype == TS_Q4_1 || dtype == TS_Q4_K || dtype == TS_Q5_K)
        std::memcpy(&w[at + 2], &small, 2);
    }
  }
  const std::vector<float> x = random_floats(static_cast<size_t>(m * cols), 4);
  const int64_t blocks = cols / tessera::quant::kBlock;
  std::vector<tessera::quant::ActBlock> xq(static_cast<size_t>(m * blocks));
  std::vector<float> y(static_cast<size_t>(m * rows));
  const int64_t split = tessera::cpu::matmul_split_rows();
  const int64_t units = (rows + split - 1) / split;
  for (auto _ : state) {
    for (int64_t i = 0; i < m; ++i)
      tessera::cpu::quantize_activations(x.data() + i * cols, cols, xq.data() + i * blocks);
    tessera::cpu::parallel_claims(
        pool().host(), units, tessera::cpu::matmul_claim_units(),
        tessera::cpu::matmul_grain(m, cols), [&](int64_t u0, int64_t u1) {
          const int64_t r0 = u0 * split, r1 = std::min(rows, u1 * split);
          if (!per_row) {
            tessera::cpu::quant_gemm_rows(dtype, w.data(), row_bytes, cols, r0, r1, xq.data(), m,
                                          y.data(), rows);
            return;
          }
          for (int64_t i = 0; i < m; ++i)
            tessera::cpu::quant_gemv_rows(dtype, w.data(), row_bytes, cols, r0, r1,
                                          xq.data() + i * blocks, y.data() + i * rows);
        });
    benchmark::DoNotOptimize(y.data());
  }
  state.counters["OP/s"] = benchmark::Counter(2.0 * static_cast<double>(m * rows * cols),
                                              benchmark::Counter::kIsIterationInvariantRate);
  state.SetLabel(std::string(tessera::dtype_name(dtype)) + (per_row ? " gemv per row" : " gemm"));
}
BENCHMARK(BM_QuantGemm)
    ->ArgsProduct({{512}, {1536}, {576}, {TS_Q8_0, TS_Q4_0, TS_Q4_1}, {0, 1}})
    ->ArgsProduct({{512}, {576}, {1536}, {TS_Q4_1, TS_Q4_K, TS_Q5_K, TS_Q6_K}, {0, 1}})
    ->Unit(benchmark::kMillisecond)
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
