// Attention kernels on a GPU.
//   BM_PrefillAttention/<seq>/<head_dim>/<kv_heads>: one causal prefill of <seq> tokens, 32
//     query heads; TFLOP/s counts 4 * head_dim multiply-adds x 2 per visible (query, key)
//     pair. Compare with BM_GemmPeak in the same run (bench_ffn.cpp).
//   BM_DecodeAttention/<context>/<kv_heads>/<batch>: one new token per sequence against a
//     cache of <context> rows, head_dim 128, 32 query heads; bytes/s counts K and V read once
//     (the floor). Compare with BM_DeviceCopy: a device-to-device copy, read + write.
#include "attention_kernels.hpp"
#include "bench_util.hpp"

#include <tessera/cuda/runtime.hpp>

#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <vector>

namespace {

namespace attn = tessera::cuda::attention;
namespace cu = tessera::cuda;
using tessera::cuda::bench::random_bf16;
using tessera::cuda::bench::report_tflops;
using tessera::cuda::bench::skip_without_device;
using tessera::cuda::bench::time_on_device;

constexpr int32_t kQueryHeads = 32;

// A batch of `batch` sequences with `cached` rows each and `n_new` new tokens, all on the
// device, ready for either kernel.
struct AttentionSetup {
  cu::DeviceBuffer k, v, q, out, seqs, table;
  attn::AttentionArgs args;
  std::vector<attn::SeqDesc> host_seqs;

  AttentionSetup(int32_t batch, int32_t cached, int32_t n_new, int32_t head_dim, int32_t kv_heads) {
    const int32_t capacity = cached + n_new;
    const size_t cache = size_t(batch) * capacity * kv_heads * head_dim;
    const size_t tokens = size_t(batch) * n_new;
    k = random_bf16(cache, 1);
    v = random_bf16(cache, 2);
    q = random_bf16(tokens * kQueryHeads * head_dim, 3);
    out = cu::DeviceBuffer(tokens * kQueryHeads * head_dim * 2);
    for (int32_t s = 0; s < batch; ++s) host_seqs.push_back({s, cached, s * n_new, n_new, -1});
    seqs = cu::DeviceBuffer(host_seqs.size() * sizeof(attn::SeqDesc));
    cu::check(cudaMemcpy(seqs.get(), host_seqs.data(), host_seqs.size() * sizeof(attn::SeqDesc),
                         cudaMemcpyHostToDevice),
              "cudaMemcpy");
    args.q = q.get<attn::bf16>();
    args.k_cache = k.get<attn::bf16>();
    args.v_cache = v.get<attn::bf16>();
    args.out = out.get<attn::bf16>();
    args.seqs = seqs.get<attn::SeqDesc>();
    args.n_seqs = batch;
    args.n_heads = kQueryHeads;
    args.kv_heads = kv_heads;
    args.head_dim = head_dim;
    args.capacity = capacity;
    args.scale = 1.0f / std::sqrt(float(head_dim));
  }

  template <class T>
  const T* upload(const std::vector<T>& items) {
    table.reserve(items.size() * sizeof(T));
    cu::check(
        cudaMemcpy(table.get(), items.data(), items.size() * sizeof(T), cudaMemcpyHostToDevice),
        "cudaMemcpy");
    return table.get<T>();
  }
};

void BM_PrefillAttention(benchmark::State& state) {
  if (skip_without_device(state)) return;
  const auto seq = static_cast<int32_t>(state.range(0));
  const auto head_dim = static_cast<int32_t>(state.range(1));
  const auto kv_heads = static_cast<int32_t>(state.range(2));
  AttentionSetup s(1, 0, seq, head_dim, kv_heads);
  std::vector<attn::PrefillTile> tiles;
  for (int32_t i = 0; i < seq; i += attn::kPrefillTileRows) tiles.push_back({0, i});
  std::reverse(tiles.begin(), tiles.end());  // longest first, as the plugin orders them
  const attn::PrefillTile* device_tiles = s.upload(tiles);
  time_on_device(state, [&] {
    attn::launch_prefill(s.args, device_tiles, static_cast<int32_t>(tiles.size()), nullptr);
  });
  const double pairs = double(seq) * (double(seq) + 1) / 2;  // causal
  report_tflops(state, 4.0 * pairs * head_dim * kQueryHeads);
}
BENCHMARK(BM_PrefillAttention)
    ->ArgNames({"seq", "head_dim", "kv_heads"})
    ->ArgsProduct({{1024, 4096, 16384}, {64, 128}, {8, 2, 1}})
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);

void BM_DecodeAttention(benchmark::State& state) {
  if (skip_without_device(state)) return;
  const auto context = static_cast<int32_t>(state.range(0));
  const auto kv_heads = static_cast<int32_t>(state.range(1));
  const auto batch = static_cast<int32_t>(state.range(2));
  constexpr int32_t head_dim = 128;
  AttentionSetup s(batch, context - 1, 1, head_dim, kv_heads);
  const int32_t group = kQueryHeads / kv_heads, rows = attn::decode_rows_per_block(head_dim);
  std::vector<attn::DecodeWork> work;
  for (int32_t b = 0; b < batch; ++b)
    for (int32_t r = 0; r < group; r += rows) work.push_back({b, r, std::min(rows, group - r)});
  int sms = 0;
  cu::check(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0), "attribute");
  const auto n_work = static_cast<int32_t>(work.size());
  const attn::DecodeSplits splits =
      attn::choose_decode_splits(int64_t{n_work} * kv_heads, context, sms);
  const attn::DecodeWork* device_work = s.upload(work);
  cu::DeviceBuffer scratch(
      attn::decode_scratch_floats(n_work, kv_heads, splits.n_splits, head_dim) * sizeof(float));
  const attn::DecodeScratch view =
      attn::decode_scratch_view(scratch.get<float>(), n_work, kv_heads, splits.n_splits, head_dim);
  time_on_device(state, [&] {
    attn::launch_decode(s.args, device_work, n_work, splits.n_splits, splits.keys_per_split, view,
                        nullptr);
  });
  const double kv_bytes = 2.0 * batch * context * kv_heads * head_dim * 2;  // K and V, bf16
  state.SetBytesProcessed(static_cast<int64_t>(kv_bytes) * state.iterations());
  state.counters["splits"] = splits.n_splits;
}
BENCHMARK(BM_DecodeAttention)
    ->ArgNames({"context", "kv_heads", "batch"})
    ->ArgsProduct({{1024, 4096, 16384, 65536}, {8, 2, 1}, {1, 8}})
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond);

// The bandwidth ceiling: 1 GiB copied device to device, bytes read plus bytes written.
void BM_DeviceCopy(benchmark::State& state) {
  if (skip_without_device(state)) return;
  const size_t bytes = size_t{1} << 30;
  cu::DeviceBuffer a = random_bf16(bytes / 2, 4), b(bytes);
  time_on_device(state, [&] {
    cu::check(cudaMemcpyAsync(b.get(), a.get(), bytes, cudaMemcpyDeviceToDevice, nullptr),
              "cudaMemcpyAsync");
  });
  state.SetBytesProcessed(static_cast<int64_t>(2 * bytes) * state.iterations());
}
BENCHMARK(BM_DeviceCopy)->UseManualTime()->Unit(benchmark::kMillisecond);

}  // namespace
