// The CUDA attention kernels: the prefill (tensor-core) and split-KV decode kernels against
// the naive CUDA kernel, the naive kernel against a double-precision host loop, RoPE against
// the CPU reference, and the cache compaction. Shapes include odd lengths, one KV head,
// tree masks (one with a row that sees nothing) and split-KV with many splits.
#include "attention_kernels.hpp"
#include "cuda_test_util.hpp"

#include <tessera/reference/reference.hpp>

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <ostream>
#include <random>
#include <vector>

namespace tessera::cuda::test {
namespace {

namespace attn = tessera::cuda::attention;

struct SeqSpec {
  int32_t cached = 0;
  int32_t n_new = 1;
  bool tree = false;
};

// Host side of one batch: cache, queries, masks and tables, in bf16 values.
struct Scenario {
  int32_t n_heads = 8, kv_heads = 2, head_dim = 64, capacity = 0;
  std::vector<SeqSpec> specs;
  std::vector<float> k, v, q;  // cache [slots, capacity, kv_heads, D]; q [tokens, heads, D]
  std::vector<attn::SeqDesc> seqs;
  std::vector<uint8_t> masks;
  std::vector<int32_t> token_seq;
  int32_t n_tokens = 0, max_keys = 0;

  Scenario(int32_t heads, int32_t kv, int32_t d, std::vector<SeqSpec> s, uint32_t seed,
           int32_t empty_mask_row = -1)
      : n_heads(heads), kv_heads(kv), head_dim(d), specs(std::move(s)) {
    std::mt19937 gen(seed);
    for (const SeqSpec& sp : specs) {
      capacity = std::max(capacity, sp.cached + sp.n_new);
      max_keys = std::max(max_keys, sp.cached + sp.n_new);
    }
    capacity += 3;  // rows past every sequence's end stay unread
    const size_t cache_elems = specs.size() * capacity * static_cast<size_t>(kv * d);
    k = random_bf16_values(cache_elems, seed + 1);
    v = random_bf16_values(cache_elems, seed + 2);
    for (size_t i = 0; i < specs.size(); ++i) {
      const SeqSpec& sp = specs[i];
      attn::SeqDesc desc{static_cast<int32_t>(i), sp.cached, n_tokens, sp.n_new, -1};
      if (sp.tree) {  // a random tree: each node's parent comes before it
        desc.mask_offset = static_cast<int32_t>(masks.size());
        std::vector<int32_t> parent(static_cast<size_t>(sp.n_new), -1);
        for (int32_t n = 1; n < sp.n_new; ++n)
          parent[static_cast<size_t>(n)] = static_cast<int32_t>(gen() % static_cast<uint32_t>(n));
        std::vector<uint8_t> m(static_cast<size_t>(sp.n_new * sp.n_new), 0);
        for (int32_t n = 0; n < sp.n_new; ++n)
          for (int32_t a = n; a >= 0; a = parent[static_cast<size_t>(a)])
            m[static_cast<size_t>(n * sp.n_new + a)] = 1;
        if (empty_mask_row >= 0 && empty_mask_row < sp.n_new)
          std::fill_n(m.begin() + empty_mask_row * sp.n_new, sp.n_new, uint8_t{0});
        masks.insert(masks.end(), m.begin(), m.end());
      }
      seqs.push_back(desc);
      for (int32_t t = 0; t < sp.n_new; ++t) token_seq.push_back(static_cast<int32_t>(i));
      n_tokens += sp.n_new;
    }
    q = random_bf16_values(static_cast<size_t>(n_tokens) * heads * d, seed + 3);
  }

  // Attention in double on the host, from the same bf16 values.
  std::vector<float> host_reference() const {
    std::vector<float> out(q.size());
    const int32_t group = n_heads / kv_heads;
    for (int32_t t = 0; t < n_tokens; ++t) {
      const attn::SeqDesc& s = seqs[static_cast<size_t>(token_seq[static_cast<size_t>(t)])];
      const int32_t i = t - s.first_token;
      for (int32_t h = 0; h < n_heads; ++h) {
        const int32_t kvh = h / group;
        std::vector<double> score(static_cast<size_t>(s.cached + s.n_new), -INFINITY);
        double max_score = -INFINITY;
        for (int32_t key = 0; key < s.cached + s.n_new; ++key) {
          if (!attn::key_visible(s, masks.data(), i, key)) continue;
          double dot = 0;
          for (int32_t d = 0; d < head_dim; ++d)
            dot += double(q[(size_t(t) * n_heads + h) * head_dim + d]) *
                   k[((size_t(s.slot) * capacity + key) * kv_heads + kvh) * head_dim + d];
          score[size_t(key)] = dot / std::sqrt(double(head_dim));
          max_score = std::max(max_score, score[size_t(key)]);
        }
        double sum = 0;
        for (double& sc : score) {
          sc = std::isinf(sc) ? 0.0 : std::exp(sc - max_score);
          sum += sc;
        }
        for (int32_t d = 0; d < head_dim; ++d) {
          double acc = 0;
          for (int32_t key = 0; key < s.cached + s.n_new; ++key)
            acc += score[size_t(key)] *
                   v[((size_t(s.slot) * capacity + key) * kv_heads + kvh) * head_dim + d];
          out[(size_t(t) * n_heads + h) * head_dim + d] = sum > 0 ? float(acc / sum) : 0.0f;
        }
      }
    }
    return out;
  }
};

enum class Kernel { kReference, kPrefill, kDecode };

// Runs one kernel over the whole batch on the device; returns out as f32.
std::vector<float> run(const Scenario& sc, Kernel kernel, int32_t splits = 1) {
  DeviceArray<Bf16Bits> k(to_bf16(sc.k)), v(to_bf16(sc.v)), q(to_bf16(sc.q));
  DeviceArray<Bf16Bits> out(std::vector<Bf16Bits>(sc.q.size(), kBf16Nan));
  DeviceArray<attn::SeqDesc> seqs(sc.seqs);
  DeviceArray<uint8_t> masks(sc.masks.empty() ? std::vector<uint8_t>{0} : sc.masks);
  DeviceArray<int32_t> token_seq(sc.token_seq);
  attn::AttentionArgs a;
  a.q = reinterpret_cast<const attn::bf16*>(q.get());
  a.k_cache = reinterpret_cast<const attn::bf16*>(k.get());
  a.v_cache = reinterpret_cast<const attn::bf16*>(v.get());
  a.out = reinterpret_cast<attn::bf16*>(out.get());
  a.seqs = seqs.get();
  a.masks = masks.get();
  a.n_seqs = static_cast<int32_t>(sc.seqs.size());
  a.n_heads = sc.n_heads;
  a.kv_heads = sc.kv_heads;
  a.head_dim = sc.head_dim;
  a.capacity = sc.capacity;
  a.scale = static_cast<float>(1.0 / std::sqrt(double(sc.head_dim)));
  if (kernel == Kernel::kReference) {
    std::vector<int32_t> all(static_cast<size_t>(sc.n_tokens));
    for (int32_t t = 0; t < sc.n_tokens; ++t) all[size_t(t)] = t;
    DeviceArray<int32_t> tokens(all);
    DeviceArray<float> scores(size_t(sc.n_tokens) * sc.n_heads * sc.max_keys);
    attn::launch_reference_attention(a, token_seq.get(), tokens.get(), sc.n_tokens, sc.max_keys,
                                     scores.get(), nullptr);
    return from_bf16(out.download());
  }
  if (kernel == Kernel::kPrefill) {
    std::vector<attn::PrefillTile> tiles;
    for (size_t s = 0; s < sc.seqs.size(); ++s)
      for (int32_t i = 0; i < sc.seqs[s].n_new; i += attn::kPrefillTileRows)
        tiles.push_back({static_cast<int32_t>(s), i});
    DeviceArray<attn::PrefillTile> t(tiles);
    attn::launch_prefill(a, t.get(), static_cast<int32_t>(tiles.size()), nullptr);
    return from_bf16(out.download());
  }
  const int32_t group = sc.n_heads / sc.kv_heads;
  const int32_t rows = attn::decode_rows_per_block(sc.head_dim);
  std::vector<attn::DecodeWork> work;
  for (size_t s = 0; s < sc.seqs.size(); ++s)
    for (int32_t r = 0; r < sc.seqs[s].n_new * group; r += rows)
      work.push_back({static_cast<int32_t>(s), r, std::min(rows, sc.seqs[s].n_new * group - r)});
  const attn::DecodeSplits plan = attn::choose_decode_splits(1, sc.max_keys, 1, splits);
  const int32_t per_split = plan.keys_per_split, n_splits = plan.n_splits;
  const auto n_work = static_cast<int32_t>(work.size());
  DeviceArray<attn::DecodeWork> w(work);
  DeviceArray<float> scratch(
      attn::decode_scratch_floats(n_work, sc.kv_heads, n_splits, sc.head_dim));
  attn::launch_decode(
      a, w.get(), n_work, n_splits, per_split,
      attn::decode_scratch_view(scratch.get(), n_work, sc.kv_heads, n_splits, sc.head_dim),
      nullptr);
  return from_bf16(out.download());
}

struct Shape {
  int32_t heads, kv, head_dim;
};

void PrintTo(const Shape& s, std::ostream* os) {
  *os << "heads " << s.heads << ", kv_heads " << s.kv << ", head_dim " << s.head_dim;
}

class AttentionKernels : public ::testing::TestWithParam<Shape> {};

// The naive kernel is the definition: it must match the double-precision loop up to its
// one bf16 rounding of the output.
TEST_P(AttentionKernels, ReferenceKernelMatchesHostLoop) {
  TESSERA_REQUIRE_CUDA_DEVICE();
  const Shape p = GetParam();
  const Scenario sc(p.heads, p.kv, p.head_dim, {{0, 77}, {37, 5, true}, {300, 1}}, 11);
  EXPECT_LE(relative_error(run(sc, Kernel::kReference), sc.host_reference()), kTolBf16);
}

TEST_P(AttentionKernels, PrefillMatchesReference) {
  TESSERA_REQUIRE_CUDA_DEVICE();
  const Shape p = GetParam();
  if (!attn::prefill_supported(p.head_dim)) GTEST_SKIP() << "no prefill kernel for this head_dim";
  // Odd lengths, a cached prefix, several tiles, a tree, a single token.
  for (const std::vector<SeqSpec>& specs :
       {std::vector<SeqSpec>{{0, 1}}, std::vector<SeqSpec>{{0, 77}, {37, 5}, {300, 1}},
        std::vector<SeqSpec>{{0, 130}, {20, 9, true}, {0, 64}},
        std::vector<SeqSpec>{{129, 200}, {0, 63, true}}}) {
    const Scenario sc(p.heads, p.kv, p.head_dim, specs, 21);
    const std::vector<float> want = run(sc, Kernel::kReference);
    EXPECT_LE(relative_error(run(sc, Kernel::kPrefill), want), kTolAttention);
  }
}

TEST_P(AttentionKernels, DecodeMatchesReferenceWithManySplits) {
  TESSERA_REQUIRE_CUDA_DEVICE();
  const Shape p = GetParam();
  if (!attn::decode_supported(p.head_dim)) GTEST_SKIP() << "no decode kernel for this head_dim";
  // Long caches cut into up to 32 splits of 64 keys; a split past a short sequence's end;
  // prefill-size sequences through the decode kernel too (many packed row blocks).
  for (const std::vector<SeqSpec>& specs :
       {std::vector<SeqSpec>{{2000, 1}, {1500, 3}, {0, 1}}, std::vector<SeqSpec>{{63, 1}, {64, 1}},
        std::vector<SeqSpec>{{100, 5, true}, {7, 33}}}) {
    const Scenario sc(p.heads, p.kv, p.head_dim, specs, 31);
    const std::vector<float> want = run(sc, Kernel::kReference);
    for (int32_t splits : {1, 3, 32})
      EXPECT_LE(relative_error(run(sc, Kernel::kDecode, splits), want), kTolAttention)
          << "splits " << splits;
  }
}

// A tree row that sees no new token and has no cached prefix: zeros, like the CPU plugin.
TEST_P(AttentionKernels, TreeRowWithNothingVisibleIsZero) {
  TESSERA_REQUIRE_CUDA_DEVICE();
  const Shape p = GetParam();
  const Scenario sc(p.heads, p.kv, p.head_dim, {{0, 6, true}}, 41, /*empty_mask_row=*/2);
  const std::vector<float> want = sc.host_reference();
  for (Kernel k : {Kernel::kReference, Kernel::kPrefill, Kernel::kDecode}) {
    if (k == Kernel::kPrefill && !attn::prefill_supported(p.head_dim)) continue;
    if (k == Kernel::kDecode && !attn::decode_supported(p.head_dim)) continue;
    const std::vector<float> got = run(sc, k);
    for (int32_t h = 0; h < p.heads; ++h)
      for (int32_t d = 0; d < p.head_dim; ++d)
        EXPECT_EQ(got[(size_t(2) * p.heads + h) * p.head_dim + d], 0.0f);
    EXPECT_LE(relative_error(got, want), kTolAttention);
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, AttentionKernels,
                         ::testing::Values(Shape{8, 8, 64}, Shape{8, 2, 64}, Shape{8, 1, 64},
                                           Shape{8, 8, 128}, Shape{12, 3, 128}, Shape{4, 1, 128},
                                           Shape{4, 2, 16}, Shape{6, 1, 40}),
                         [](const ::testing::TestParamInfo<Shape>& p) {
                           return "h" + std::to_string(p.param.heads) + "_kv" +
                                  std::to_string(p.param.kv) + "_d" +
                                  std::to_string(p.param.head_dim);
                         });

// RoPE (rotate-half, angles in double) and the cache write against the CPU reference.
TEST(AttentionKernels, RopeAndCacheWriteMatchCpuReference) {
  TESSERA_REQUIRE_CUDA_DEVICE();
  const int32_t n = 5, heads = 4, kv = 2, d = 64, capacity = 16, slot = 1;
  const std::vector<int32_t> positions{0, 1, 7, 4095, 131071};
  const std::vector<float> q = random_floats(size_t(n) * heads * d, 51);
  const std::vector<float> k = random_floats(size_t(n) * kv * d, 52);
  const std::vector<float> v = random_floats(size_t(n) * kv * d, 53);
  std::vector<double> inv_freq(d / 2);
  for (int32_t i = 0; i < d / 2; ++i) inv_freq[size_t(i)] = std::pow(10000.0, -2.0 * i / d);
  std::vector<int64_t> cache_row(n);
  for (int32_t t = 0; t < n; ++t) cache_row[size_t(t)] = int64_t{slot} * capacity + 3 + t;

  DeviceArray<float> q_in(q), k_in(k), v_in(v);
  DeviceArray<Bf16Bits> q_out(std::vector<Bf16Bits>(q.size(), kBf16Nan));
  const size_t cache_elems = size_t(2) * capacity * kv * d;
  DeviceArray<Bf16Bits> k_cache(std::vector<Bf16Bits>(cache_elems, 0));
  DeviceArray<Bf16Bits> v_cache(std::vector<Bf16Bits>(cache_elems, 0));
  DeviceArray<int32_t> pos(positions);
  DeviceArray<int64_t> rows(cache_row);
  DeviceArray<double> freq(inv_freq);
  attn::RopeArgs a;
  a.q_in = q_in.get();
  a.k_in = k_in.get();
  a.v_in = v_in.get();
  a.q_out = reinterpret_cast<attn::bf16*>(q_out.get());
  a.k_cache = reinterpret_cast<attn::bf16*>(k_cache.get());
  a.v_cache = reinterpret_cast<attn::bf16*>(v_cache.get());
  a.positions = pos.get();
  a.cache_row = rows.get();
  a.inv_freq = freq.get();
  a.n_tokens = n;
  a.n_heads = heads;
  a.kv_heads = kv;
  a.head_dim = d;
  attn::launch_rope_store_kv(a, nullptr);

  std::vector<float> want_q = q, want_k = k;
  for (int32_t t = 0; t < n; ++t) {
    reference::rope(want_q.data() + size_t(t) * heads * d, heads, d, positions[size_t(t)], 10000.0);
    reference::rope(want_k.data() + size_t(t) * kv * d, kv, d, positions[size_t(t)], 10000.0);
  }
  EXPECT_LE(relative_error(from_bf16(q_out.download()), want_q), kTolBf16);
  const std::vector<float> kc = from_bf16(k_cache.download()), vc = from_bf16(v_cache.download());
  std::vector<float> got_k, got_v;
  for (int32_t t = 0; t < n; ++t) {
    const size_t at = size_t(cache_row[size_t(t)]) * kv * d;
    got_k.insert(got_k.end(), kc.begin() + long(at), kc.begin() + long(at + size_t(kv) * d));
    got_v.insert(got_v.end(), vc.begin() + long(at), vc.begin() + long(at + size_t(kv) * d));
  }
  EXPECT_LE(relative_error(got_k, want_k), kTolBf16);
  EXPECT_LE(relative_error(got_v, v), kTolBf16);
  // Rows that no token owns stay untouched.
  EXPECT_EQ(kc[0], 0.0f);
}

TEST(AttentionKernels, CompactKeepsTheListedRowsInOrder) {
  TESSERA_REQUIRE_CUDA_DEVICE();
  const int32_t capacity = 20, row = 2 * 16, slot = 1, first = 4;
  const std::vector<float> k = random_bf16_values(size_t(2) * capacity * row, 61);
  const std::vector<float> v = random_bf16_values(k.size(), 62);
  const std::vector<int32_t> keep{0, 2, 3, 7};  // overlapping moves: row 2 -> 1, 3 -> 2, 7 -> 3
  DeviceArray<Bf16Bits> kd(to_bf16(k)), vd(to_bf16(v));
  DeviceArray<int32_t> keep_d(keep);
  DeviceArray<Bf16Bits> scratch(2 * keep.size() * row);
  attn::launch_compact_kv(reinterpret_cast<attn::bf16*>(kd.get()),
                          reinterpret_cast<attn::bf16*>(vd.get()), int64_t{slot} * capacity + first,
                          keep_d.get(), static_cast<int32_t>(keep.size()), row,
                          reinterpret_cast<attn::bf16*>(scratch.get()), nullptr);
  std::vector<float> want_k = k, want_v = v;
  for (size_t i = 0; i < keep.size(); ++i)
    for (int32_t e = 0; e < row; ++e) {
      const size_t dst = (size_t(slot) * capacity + first + i) * row + size_t(e);
      const size_t src = (size_t(slot) * capacity + first + size_t(keep[i])) * row + size_t(e);
      want_k[dst] = k[src];
      want_v[dst] = v[src];
    }
  EXPECT_EQ(from_bf16(kd.download()), want_k);
  EXPECT_EQ(from_bf16(vd.download()), want_v);
}

}  // namespace
}  // namespace tessera::cuda::test
