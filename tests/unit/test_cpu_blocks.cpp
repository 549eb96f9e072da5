// The CPU block plugins (attention-cpu: gqa/linear/noop, ffn-cpu: swiglu/linear/noop)
// and the header-only kernels, against the naive references.
//
// Tolerances: f32 paths must match the reference within 1e-4 * max(1, max|reference|)
// (max abs error); bf16/f16 weights must match the reference run on the same rounded
// weights within the same bound, and the unrounded f32 result within 3e-2 (bf16) /
// 5e-3 (f16) relative to the output's magnitude.
#include "block_harness.hpp"

#include <tessera/cpu/matmul.hpp>
#include <tessera/cpu/ops.hpp>
#include <tessera/reference/reference.hpp>

#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <string>
#include <vector>

namespace {

using namespace tessera::test;
namespace ref = tessera::reference;

constexpr float kTol = 1e-4f;

// The message must contain the fact; prints the whole message when it does not.
#define EXPECT_HAS(message, fact) \
  EXPECT_NE(std::string(message).find(fact), std::string::npos) << "message: " << (message)

void expect_close(const std::vector<float>& got, const std::vector<float>& want, float rel,
                  const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  const float bound = rel * std::max(1.0f, max_abs(want));
  EXPECT_LE(max_abs_diff(got, want), bound) << what << " (max |want| " << max_abs(want) << ")";
}

std::vector<float> rows_of(const std::vector<float>& v, int64_t first, int64_t count,
                           int64_t width) {
  return {v.begin() + first * width, v.begin() + (first + count) * width};
}

// --------------------------------------------------------------- GQA model

struct GqaConfig {
  int32_t hidden;
  int32_t heads;
  int32_t kv_heads;
  int32_t head_dim;
};

void PrintTo(const GqaConfig& c, std::ostream* os) {
  *os << "{hidden " << c.hidden << ", heads " << c.heads << ", kv_heads " << c.kv_heads
      << ", head_dim " << c.head_dim << "}";
}

// Random GQA weights, held both as f32 (rounded to `dtype` when it is not f32,
// so the reference sees what the plugin sees) and in a TestWeights of `dtype`.
struct GqaModel {
  GqaModel(const GqaConfig& c, uint32_t seed, int32_t dtype = TS_F32) : config(c) {
    const int64_t qw = int64_t{c.heads} * c.head_dim, kvw = int64_t{c.kv_heads} * c.head_dim;
    const float in_scale = 1.0f / std::sqrt(static_cast<float>(c.hidden));
    exact_q = random_vector(static_cast<size_t>(qw * c.hidden), seed, in_scale);
    exact_k = random_vector(static_cast<size_t>(kvw * c.hidden), seed + 1, in_scale);
    exact_v = random_vector(static_cast<size_t>(kvw * c.hidden), seed + 2, in_scale);
    exact_o = random_vector(static_cast<size_t>(c.hidden * qw), seed + 3,
                            1.0f / std::sqrt(static_cast<float>(qw)));
    wq = rounded(exact_q, dtype);
    wk = rounded(exact_k, dtype);
    wv = rounded(exact_v, dtype);
    wo = rounded(exact_o, dtype);
    weights.add("q_proj.weight", {qw, c.hidden}, exact_q, dtype);
    weights.add("k_proj.weight", {kvw, c.hidden}, exact_k, dtype);
    weights.add("v_proj.weight", {kvw, c.hidden}, exact_v, dtype);
    weights.add("o_proj.weight", {c.hidden, qw}, exact_o, dtype);
  }

  ParamList params() const {
    ParamList p;
    p.set_int("hidden_size", config.hidden)
        .set_int("num_heads", config.heads)
        .set_int("head_dim", config.head_dim)
        .set_int("kv_heads", config.kv_heads)
        .set_float("rope_theta", 10000.0)
        .set_float("rms_norm_eps", 1e-5)
        .set_int("max_seq_len", 128);
    return p;
  }

  ref::GqaShape shape() const {
    return {config.hidden, config.heads, config.kv_heads, config.head_dim, 10000.0};
  }
  ref::GqaWeights ref_weights() const { return {wq.data(), wk.data(), wv.data(), wo.data()}; }

  // The reference forward of one sequence (its cache kept in `kv`).
  std::vector<float> reference(const std::vector<float>& x, const std::vector<int32_t>& positions,
                               ref::SequenceKv& kv, const uint8_t* mask = nullptr) const {
    const int64_t n = static_cast<int64_t>(positions.size());
    std::vector<float> y(static_cast<size_t>(n * config.hidden));
    ref::gqa_attention(shape(), ref_weights(), x.data(), n, positions.data(), mask, kv, y.data());
    return y;
  }

  BlockSetup setup(const ts_host* host, int32_t slots = 4, int32_t capacity = 64) const {
    BlockSetup s;
    s.kind = TS_KIND_ATTENTION;
    s.layer = 3;
    s.hidden = config.hidden;
    s.weights = weights.abi();
    s.host = host;
    s.slots = slots;
    s.capacity = capacity;
    return s;
  }

  GqaConfig config;
  std::vector<float> exact_q, exact_k, exact_v, exact_o;
  std::vector<float> wq, wk, wv, wo;
  TestWeights weights;
};

std::vector<int32_t> iota_positions(int32_t first, int32_t n) {
  std::vector<int32_t> p(static_cast<size_t>(n));
  for (int32_t i = 0; i < n; ++i) p[static_cast<size_t>(i)] = first + i;
  return p;
}

SeqFeed feed(int32_t slot, std::vector<float> x, std::vector<int32_t> positions = {},
             std::vector<uint8_t> mask = {}) {
  SeqFeed f;
  f.slot = slot;
  f.x = std::move(x);
  f.positions = std::move(positions);
  f.mask = std::move(mask);
  return f;
}

// ---------------------------------------------------------------- kernels

TEST(CpuBlockKernels, MatmulMatchesReferenceForAllDtypesAndShapes) {
  TwoThreadHost threads;
  for (int32_t dtype : {TS_F32, TS_BF16, TS_F16}) {
    for (int64_t m : {1, 2, 3, 5, 131}) {
      for (int64_t n : {1, 5, 17, 70}) {
        for (int64_t k : {1, 7, 8, 37, 64}) {
          const auto x = random_vector(static_cast<size_t>(m * k), 11);
          const auto w_exact = random_vector(static_cast<size_t>(n * k), 12);
          const auto w = rounded(w_exact, dtype);
          std::vector<uint16_t> half(w.size());
          for (size_t i = 0; i < w.size(); ++i)
            half[i] = dtype == TS_BF16 ? tessera::f32_to_bf16(w[i]) : tessera::f32_to_f16(w[i]);
          tessera::cpu::MatrixView view{dtype == TS_F32 ? static_cast<const void*>(w.data())
                                                        : static_cast<const void*>(half.data()),
                                        dtype, n, k, k};
          std::vector<float> want(static_cast<size_t>(m * n)), got(want.size(), NAN);
          ref::matmul_nt(x.data(), w.data(), m, n, k, want.data());
          tessera::cpu::matmul_nt(threads.abi(), x.data(), m, k, view, got.data(), n);
          expect_close(got, want, kTol,
                       "dtype " + std::string(tessera::dtype_name(dtype)) + " m " +
                           std::to_string(m) + " n " + std::to_string(n) + " k " +
                           std::to_string(k));
        }
      }
    }
  }
}

TEST(CpuBlockKernels, MatmulOnRowAndColumnSlices) {
  const int64_t rows = 40, cols = 50;
  const auto w = random_vector(static_cast<size_t>(rows * cols), 5);
  const auto x = random_vector(static_cast<size_t>(3 * cols), 6);
  const auto full = tessera::cpu::matrix_view(w.data(), rows, cols);
  // Columns [10, 30) of rows [8, 24): the reference on an explicit copy.
  const auto view = full.row_slice(8, 24).col_slice(10, 30);
  std::vector<float> dense;
  for (int64_t r = 8; r < 24; ++r)
    for (int64_t c = 10; c < 30; ++c) dense.push_back(w[static_cast<size_t>(r * cols + c)]);
  for (int64_t m : {1, 3}) {
    std::vector<float> want(static_cast<size_t>(m * 16)), got(want.size());
    // x's columns 10..29 with row stride cols
    std::vector<float> xs;
    for (int64_t i = 0; i < m; ++i)
      for (int64_t c = 10; c < 30; ++c) xs.push_back(x[static_cast<size_t>(i * cols + c)]);
    ref::matmul_nt(xs.data(), dense.data(), m, 16, 20, want.data());
    tessera::cpu::matmul_nt(nullptr, x.data() + 10, m, cols, view, got.data(), 16);
    expect_close(got, want, kTol, "slice m " + std::to_string(m));
  }
  tessera::cpu::MatrixView bad{w.data(), TS_I32, 2, 2, 2};
  std::vector<float> out(4);
  EXPECT_THROW(tessera::cpu::matmul_nt(nullptr, x.data(), 2, 2, bad, out.data(), 2),
               std::invalid_argument);
}

TEST(CpuBlockKernels, SoftmaxRopeSiluMatchPlainFormulas) {
  // softmax, with -inf entries and a long row (vector path + tail)
  std::vector<float> s = random_vector(37, 3, 4.0f);
  s[5] = -INFINITY;
  s[20] = -INFINITY;
  std::vector<double> want(s.size());
  double mx = -INFINITY, total = 0.0;
  for (float v : s) mx = std::max(mx, static_cast<double>(v));
  for (size_t i = 0; i < s.size(); ++i) total += want[i] = std::exp(s[i] - mx);
  tessera::cpu::softmax_inplace(s.data(), static_cast<int64_t>(s.size()));
  for (size_t i = 0; i < s.size(); ++i) EXPECT_NEAR(s[i], want[i] / total, 1e-6) << i;
  EXPECT_EQ(s[5], 0.0f);
  std::vector<float> all_masked(9, -INFINITY);
  EXPECT_EQ(tessera::cpu::softmax_inplace(all_masked.data(), 9), 0.0f);
  for (float v : all_masked) EXPECT_EQ(v, 0.0f);

  // RoPE against the reference at a large position
  for (int64_t hd : {2, 16, 64, 96}) {
    auto v = random_vector(static_cast<size_t>(3 * hd), 4);
    auto want_v = v;
    ref::rope(want_v.data(), 3, hd, 1234, 10000.0);
    const auto inv = tessera::cpu::rope_inv_freq(hd, 10000.0);
    std::vector<float> c(static_cast<size_t>(hd / 2)), sn(c.size());
    tessera::cpu::rope_angles(1234, inv.data(), hd / 2, c.data(), sn.data());
    const auto original = v;
    tessera::cpu::rope_apply(v.data(), 3, hd, c.data(), sn.data());
    expect_close(v, want_v, 1e-5f, "rope head_dim " + std::to_string(hd));
    // The inverse rotation undoes it, and is the rotation by minus each angle.
    auto back = v;
    tessera::cpu::rope_apply(back.data(), 3, hd, c.data(), sn.data(), true);
    expect_close(back, original, 1e-5f, "inverse rope head_dim " + std::to_string(hd));
    std::vector<float> minus_sin(sn.size());
    for (size_t i = 0; i < sn.size(); ++i) minus_sin[i] = -sn[i];
    auto by_minus = v;
    tessera::cpu::rope_apply(by_minus.data(), 3, hd, c.data(), minus_sin.data());
    EXPECT_EQ(back, by_minus) << "head_dim " << hd;
  }

  // SwiGLU gating over a wide range, including saturated values
  std::vector<float> g, u;
  for (int i = -400; i <= 400; ++i) {
    g.push_back(static_cast<float>(i) * 0.25f);
    u.push_back(1.0f + static_cast<float>(i % 7));
  }
  auto gated = g;
  tessera::cpu::swiglu_gate(gated.data(), u.data(), static_cast<int64_t>(g.size()));
  for (size_t i = 0; i < g.size(); ++i) {
    const double x = g[i];
    const double want_g = x / (1.0 + std::exp(-x)) * u[i];
    EXPECT_NEAR(gated[i], want_g, 1e-6 * std::max(1.0, std::fabs(want_g))) << "x = " << x;
  }
}

// ----------------------------------------------------------- GQA vs reference

class CpuBlockAttention : public ::testing::TestWithParam<GqaConfig> {};

// Prefill, then several decode steps: each matches the reference, and the
// decoded rows equal one full recomputation of the whole sequence.
TEST_P(CpuBlockAttention, PrefillAndDecodeMatchReferenceAndFullRecomputation) {
  const GqaConfig c = GetParam();
  GqaModel model(c, 100);
  TwoThreadHost threads;
  BlockRunner block(attention_vtable("gqa"), model.setup(threads.abi()), model.params());
  ASSERT_TRUE(block.ok()) << block.create_error();
  EXPECT_EQ(block.info().kv_heads, c.kv_heads);
  EXPECT_EQ(block.info().head_dim, c.head_dim);
  EXPECT_EQ(block.info().flags & TS_BLOCK_IDENTITY, 0u);
  EXPECT_EQ(block.info().parameters, 2 * int64_t{c.hidden} * c.head_dim * (c.heads + c.kv_heads));

  const int32_t prefill = 6, decode_steps = 3, total = prefill + decode_steps;
  const auto x = random_vector(static_cast<size_t>(total * c.hidden), 7);
  ref::SequenceKv ref_kv;
  std::vector<float> decoded_rows;

  std::vector<float> y;
  ASSERT_EQ(block.forward({feed(1, rows_of(x, 0, prefill, c.hidden))}, y), TS_OK);
  expect_close(
      y, model.reference(rows_of(x, 0, prefill, c.hidden), iota_positions(0, prefill), ref_kv),
      kTol, "prefill");
  decoded_rows = y;
  for (int32_t step = 0; step < decode_steps; ++step) {
    const auto xt = rows_of(x, prefill + step, 1, c.hidden);
    ASSERT_EQ(block.forward({feed(1, xt)}, y), TS_OK);
    expect_close(y, model.reference(xt, {prefill + step}, ref_kv), kTol,
                 "decode step " + std::to_string(step));
    decoded_rows.insert(decoded_rows.end(), y.begin(), y.end());
  }
  EXPECT_EQ(block.lengths()[1], total);
  // The cache holds the reference's K/V rows (after RoPE) for slot 1.
  const int64_t width = int64_t{c.kv_heads} * c.head_dim;
  const std::vector<float> k_all = block.k_cache();
  std::vector<float> k_slot(k_all.begin() + 1 * 64 * width,
                            k_all.begin() + (1 * 64 + total) * width);
  expect_close(k_slot, ref_kv.k, kTol, "cached keys");

  BlockRunner whole(attention_vtable("gqa"), model.setup(nullptr), model.params());
  ASSERT_EQ(whole.forward({feed(0, x)}, y), TS_OK);
  expect_close(decoded_rows, y, kTol, "decode vs full recomputation");
}

INSTANTIATE_TEST_SUITE_P(Heads, CpuBlockAttention,
                         ::testing::Values(GqaConfig{84, 9, 1, 64}, GqaConfig{84, 9, 3, 64},
                                           GqaConfig{84, 9, 9, 64}, GqaConfig{32, 4, 2, 16}),
                         [](const auto& test_param) {
                           const GqaConfig& g = test_param.param;
                           return "h" + std::to_string(g.heads) + "_kv" +
                                  std::to_string(g.kv_heads) + "_d" + std::to_string(g.head_dim);
                         });

// A 16-bit KV cache: the block reports it, stores the reference's K/V rows
// rounded to it, decodes incrementally as it recomputes, and stays within the
// rounding of the f32-cache block's outputs.
TEST(CpuBlockAttentionKvDtype, HalfCachesHoldRoundedRowsAndTrackTheF32Cache) {
  const GqaConfig c{84, 9, 3, 64};
  GqaModel model(c, 150);
  TwoThreadHost threads;
  const int32_t prefill = 20, decode_steps = 4, total = prefill + decode_steps;
  const auto x = random_vector(static_cast<size_t>(total * c.hidden), 8);
  BlockRunner f32(attention_vtable("gqa"), model.setup(threads.abi()), model.params());
  ASSERT_TRUE(f32.ok()) << f32.create_error();
  std::vector<float> y32, y;
  ASSERT_EQ(f32.forward({feed(0, rows_of(x, 0, prefill, c.hidden))}, y32), TS_OK);
  std::vector<float> f32_rows = y32;
  for (int32_t step = 0; step < decode_steps; ++step) {
    ASSERT_EQ(f32.forward({feed(0, rows_of(x, prefill + step, 1, c.hidden))}, y32), TS_OK);
    f32_rows.insert(f32_rows.end(), y32.begin(), y32.end());
  }
  const float scale = max_abs(f32_rows);
  const int64_t width = int64_t{c.kv_heads} * c.head_dim;
  for (const auto& [name, dtype, rel] :
       {std::tuple{"bf16", TS_BF16, 2e-2f}, std::tuple{"f16", TS_F16, 3e-3f}}) {
    ParamList params = model.params();
    params.set_string("kv_dtype", name);
    BlockRunner block(attention_vtable("gqa"), model.setup(threads.abi()), params);
    ASSERT_TRUE(block.ok()) << block.create_error();
    EXPECT_EQ(block.info().kv_dtype, dtype) << name;
    ASSERT_EQ(block.forward({feed(0, rows_of(x, 0, prefill, c.hidden))}, y), TS_OK) << name;
    std::vector<float> rows = y;
    for (int32_t step = 0; step < decode_steps; ++step) {
      ASSERT_EQ(block.forward({feed(0, rows_of(x, prefill + step, 1, c.hidden))}, y), TS_OK);
      rows.insert(rows.end(), y.begin(), y.end());
    }
    // Within 16-bit rounding of the f32 cache's outputs, but not identical to them.
    EXPECT_LE(max_abs_diff(rows, f32_rows), rel * scale) << name;
    EXPECT_GT(max_abs_diff(rows, f32_rows), 0.0f) << name << ": the cache was not rounded";
    // The stored rows are the f32 block's, rounded to the dtype.
    const std::vector<float> k16 = block.k_cache(), k32 = f32.k_cache();
    const std::vector<float> k_want =
        rounded(std::vector<float>(k32.begin(), k32.begin() + total * width), dtype);
    EXPECT_EQ(std::vector<float>(k16.begin(), k16.begin() + total * width), k_want) << name;
    // Decoding one token at a time equals recomputing with the same cache dtype
    // (the tiled prefill widens the same stored values).
    BlockRunner whole(attention_vtable("gqa"), model.setup(nullptr), params);
    ASSERT_EQ(whole.forward({feed(0, x)}, y), TS_OK);
    expect_close(rows, y, 1e-4f, std::string(name) + ": decode vs full recomputation");
    // compact_kv moves 16-bit rows: keep rows 0, 2 and 5 of the last six.
    const std::vector<float> before = block.k_cache();
    ASSERT_EQ(block.compact_kv(0, total - 6, {0, 2, 5}), TS_OK) << name;
    const std::vector<float> after = block.k_cache();
    for (int32_t i = 0; i < 3; ++i) {
      const int64_t src = (total - 6 + std::array<int, 3>{0, 2, 5}[i]) * width;
      const int64_t dst = (total - 6 + i) * width;
      EXPECT_TRUE(
          std::equal(after.begin() + dst, after.begin() + dst + width, before.begin() + src))
          << name << " kept row " << i;
    }
  }
  // An unknown dtype names the block, the parameter and the value.
  ParamList bad = model.params();
  bad.set_string("kv_dtype", "i8");
  BlockRunner refused(attention_vtable("gqa"), model.setup(nullptr), bad);
  EXPECT_FALSE(refused.ok());
  EXPECT_NE(refused.create_error().find("layer 3 attention gqa"), std::string::npos)
      << refused.create_error();
  EXPECT_NE(
      refused.create_error().find("kv_dtype must be \"f32\", \"bf16\" or \"f16\", got \"i8\""),
      std::string::npos)
      << refused.create_error();
}

// Decode after a long prompt runs split-KV (chunks of the cache over the
// threads, merged); with two sequences of different lengths in one batch, and
// a three-token tree-masked verification step, it matches the reference.
TEST(CpuBlockAttentionSplit, LongContextDecodeMatchesReference) {
  const GqaConfig c{84, 9, 3, 64};
  GqaModel model(c, 170);
  TwoThreadHost threads;
  BlockRunner block(attention_vtable("gqa"), model.setup(threads.abi(), 2, 400), model.params());
  ASSERT_TRUE(block.ok()) << block.create_error();
  const int32_t lengths[2] = {300, 131};
  ref::SequenceKv ref_kv[2];
  std::vector<float> y;
  for (int32_t s = 0; s < 2; ++s) {
    const auto x = random_vector(static_cast<size_t>(lengths[s] * c.hidden), 30 + s);
    ASSERT_EQ(block.forward({feed(s, x)}, y), TS_OK);
    (void)model.reference(x, iota_positions(0, lengths[s]), ref_kv[s]);
  }
  for (int32_t step = 0; step < 3; ++step) {
    const auto x0 = random_vector(static_cast<size_t>(c.hidden), 40 + step);
    const auto x1 = random_vector(static_cast<size_t>(c.hidden), 50 + step);
    ASSERT_EQ(block.forward({feed(0, x0), feed(1, x1)}, y), TS_OK);
    std::vector<float> want = model.reference(x0, {lengths[0] + step}, ref_kv[0]);
    const std::vector<float> want1 = model.reference(x1, {lengths[1] + step}, ref_kv[1]);
    want.insert(want.end(), want1.begin(), want1.end());
    expect_close(y, want, kTol, "split decode step " + std::to_string(step));
  }
  // Three tree-masked tokens on sequence 0: 0 -> 1, 0 -> 2.
  const std::vector<uint8_t> mask = {1, 0, 0, 1, 1, 0, 1, 0, 1};
  const auto xt = random_vector(static_cast<size_t>(3 * c.hidden), 60);
  const int32_t at = lengths[0] + 3;
  const std::vector<int32_t> positions = {at, at + 1, at + 1};
  ASSERT_EQ(block.forward({feed(0, xt, positions, mask)}, y), TS_OK);
  expect_close(y, model.reference(xt, positions, ref_kv[0], mask.data()), kTol, "split tree step");
}

TEST(CpuBlockAttentionBatch, SeveralSequencesInOneBatchEqualEachAlone) {
  const GqaConfig c{48, 4, 2, 16};
  GqaModel model(c, 200);
  TwoThreadHost threads;
  BlockRunner batched(attention_vtable("gqa"), model.setup(threads.abi()), model.params());
  BlockRunner alone(attention_vtable("gqa"), model.setup(nullptr), model.params());
  ASSERT_TRUE(batched.ok() && alone.ok());
  // Slots 2, 0 and 3 start with 5, 0 and 2 cached tokens.
  const std::vector<int32_t> slots{2, 0, 3}, cached{5, 0, 2}, fresh{3, 1, 4};
  std::vector<float> y;
  for (size_t s = 0; s < slots.size(); ++s) {
    if (cached[s] == 0) continue;
    const auto x =
        random_vector(static_cast<size_t>(cached[s] * c.hidden), 300 + static_cast<uint32_t>(s));
    ASSERT_EQ(batched.forward({feed(slots[s], x)}, y), TS_OK);
    ASSERT_EQ(alone.forward({feed(slots[s], x)}, y), TS_OK);
  }
  std::vector<SeqFeed> batch;
  std::vector<float> want;
  for (size_t s = 0; s < slots.size(); ++s) {
    const auto x =
        random_vector(static_cast<size_t>(fresh[s] * c.hidden), 400 + static_cast<uint32_t>(s));
    batch.push_back(feed(slots[s], x));
    ASSERT_EQ(alone.forward({feed(slots[s], x)}, y), TS_OK);
    want.insert(want.end(), y.begin(), y.end());
  }
  ASSERT_EQ(batched.forward(batch, y), TS_OK);
  expect_close(y, want, kTol, "batched vs alone");
  EXPECT_EQ(batched.lengths(), alone.lengths());
  expect_close(batched.k_cache(), alone.k_cache(), kTol, "k cache");
  expect_close(batched.v_cache(), alone.v_cache(), kTol, "v cache");
}

// The tree of candidate paths [0], [0,0], [1], [0,1], [0,0,0] as nodes with parents.
struct Tree {
  std::vector<int32_t> parent{-1, 0, -1, 0, 1};
  std::vector<int32_t> depth{1, 2, 1, 2, 3};
  size_t size() const { return parent.size(); }
  // Node indices from the root down to `node`.
  std::vector<int32_t> path(int32_t node) const {
    std::vector<int32_t> p;
    for (int32_t n = node; n >= 0; n = parent[static_cast<size_t>(n)]) p.insert(p.begin(), n);
    return p;
  }
  std::vector<uint8_t> mask() const {
    const size_t n = size();
    std::vector<uint8_t> m(n * n, 0);
    for (size_t i = 0; i < n; ++i)
      for (int32_t a : path(static_cast<int32_t>(i))) m[i * n + static_cast<size_t>(a)] = 1;
    return m;
  }
};

TEST(CpuBlockAttentionTree, TreeMaskEqualsEachRootToLeafPathAsCausalSequence) {
  const GqaConfig c{48, 4, 2, 16};
  GqaModel model(c, 500);
  TwoThreadHost threads;
  const Tree tree;
  const int32_t context = 4, n = static_cast<int32_t>(tree.size());
  const auto ctx_x = random_vector(static_cast<size_t>(context * c.hidden), 501);
  const auto node_x = random_vector(static_cast<size_t>(n * c.hidden), 502);

  BlockRunner block(attention_vtable("gqa"), model.setup(threads.abi()), model.params());
  ASSERT_TRUE(block.ok());
  std::vector<float> y, tree_y;
  ASSERT_EQ(block.forward({feed(1, ctx_x)}, y), TS_OK);
  std::vector<int32_t> positions;
  for (int32_t d : tree.depth) positions.push_back(context + d - 1);
  ASSERT_EQ(block.forward({feed(1, node_x, positions, tree.mask())}, tree_y), TS_OK);
  EXPECT_EQ(block.lengths()[1], context + n);

  // The reference with the same mask agrees too.
  ref::SequenceKv ref_kv;
  model.reference(ctx_x, iota_positions(0, context), ref_kv);
  const auto mask = tree.mask();
  expect_close(tree_y, model.reference(node_x, positions, ref_kv, mask.data()), kTol,
               "tree vs reference");

  for (int32_t leaf : {2, 3, 4}) {
    const auto path = tree.path(leaf);
    std::vector<float> path_x;
    for (int32_t node : path) {
      const auto row = rows_of(node_x, node, 1, c.hidden);
      path_x.insert(path_x.end(), row.begin(), row.end());
    }
    BlockRunner causal(attention_vtable("gqa"), model.setup(nullptr), model.params());
    ASSERT_EQ(causal.forward({feed(0, ctx_x)}, y), TS_OK);
    ASSERT_EQ(causal.forward({feed(0, path_x)}, y), TS_OK);
    for (size_t i = 0; i < path.size(); ++i)
      expect_close(rows_of(tree_y, path[i], 1, c.hidden),
                   rows_of(y, static_cast<int64_t>(i), 1, c.hidden), kTol,
                   "leaf " + std::to_string(leaf) + " node " + std::to_string(path[i]));
  }
}

TEST(CpuBlockAttentionTree, CompactKvThenDecodeEqualsDecodingOnlyTheKeptPath) {
  const GqaConfig c{48, 4, 2, 16};
  GqaModel model(c, 600);
  const Tree tree;
  const int32_t context = 3, n = static_cast<int32_t>(tree.size());
  const auto ctx_x = random_vector(static_cast<size_t>(context * c.hidden), 601);
  const auto node_x = random_vector(static_cast<size_t>(n * c.hidden), 602);
  const auto next_x = random_vector(static_cast<size_t>(2 * c.hidden), 603);

  BlockRunner block(attention_vtable("gqa"), model.setup(nullptr), model.params());
  std::vector<float> y, compacted_y, path_y;
  ASSERT_EQ(block.forward({feed(2, ctx_x)}, y), TS_OK);
  std::vector<int32_t> positions;
  for (int32_t d : tree.depth) positions.push_back(context + d - 1);
  ASSERT_EQ(block.forward({feed(2, node_x, positions, tree.mask())}, y), TS_OK);
  // Accept the path [0], [0,0], [0,0,0]: nodes 0, 1, 4.
  const std::vector<int32_t> keep{0, 1, 4};
  std::string error;
  ASSERT_EQ(block.compact_kv(2, context, keep, &error), TS_OK) << error;
  ASSERT_EQ(block.forward({feed(2, next_x)}, compacted_y), TS_OK);

  BlockRunner path(attention_vtable("gqa"), model.setup(nullptr), model.params());
  std::vector<float> path_x;
  for (int32_t node : keep) {
    const auto row = rows_of(node_x, node, 1, c.hidden);
    path_x.insert(path_x.end(), row.begin(), row.end());
  }
  ASSERT_EQ(path.forward({feed(2, ctx_x)}, y), TS_OK);
  ASSERT_EQ(path.forward({feed(2, path_x)}, y), TS_OK);
  ASSERT_EQ(path.forward({feed(2, next_x)}, path_y), TS_OK);
  expect_close(compacted_y, path_y, kTol, "decode after compact_kv");

  // Bad keep lists are refused with the facts.
  EXPECT_EQ(block.compact_kv(2, 0, {1, 1}, &error), TS_ERROR);
  EXPECT_HAS(error, "ascending");
  EXPECT_EQ(block.compact_kv(9, 0, {0}, &error), TS_ERROR);
  EXPECT_HAS(error, "slot 9");
  EXPECT_EQ(block.compact_kv(2, 60, {10}, &error), TS_ERROR);
  EXPECT_HAS(error, "capacity 64");
}

// ---------------------------------------------------------------- sharding

// Runs rank 0 and rank 1 one after the other; their partial outputs add up.
TEST(CpuBlockSharding, ShardedGqaEqualsUnsharded) {
  for (const GqaConfig c :
       {GqaConfig{40, 8, 4, 16}, GqaConfig{40, 4, 1, 16}, GqaConfig{40, 4, 2, 8}}) {
    GqaModel model(c, 700);
    BlockRunner full(attention_vtable("gqa"), model.setup(nullptr), model.params());
    ASSERT_TRUE(full.ok());
    RecordingComm comm0(0, 2), comm1(1, 2);
    BlockSetup s0 = model.setup(nullptr), s1 = model.setup(nullptr);
    s0.comm = comm0.abi();
    s1.comm = comm1.abi();
    BlockRunner rank0(attention_vtable("gqa"), s0, model.params());
    BlockRunner rank1(attention_vtable("gqa"), s1, model.params());
    ASSERT_TRUE(rank0.ok()) << rank0.create_error();
    ASSERT_TRUE(rank1.ok()) << rank1.create_error();
    const int32_t local_kv = std::max(1, c.kv_heads / 2);
    EXPECT_EQ(rank0.info().kv_heads, local_kv);
    EXPECT_EQ(
        rank0.info().parameters + rank1.info().parameters,
        full.info().parameters + (c.kv_heads == 1 ? full.info().parameters / (c.heads + 1) : 0))
        << "each rank counts its own heads (a shared KV head counts on both)";
    for (int32_t step = 0; step < 3; ++step) {
      const int32_t n_new = step == 0 ? 5 : 1;
      const auto x =
          random_vector(static_cast<size_t>(n_new * c.hidden), 710 + static_cast<uint32_t>(step));
      std::vector<float> y_full, y0, y1;
      ASSERT_EQ(full.forward({feed(1, x)}, y_full), TS_OK);
      ASSERT_EQ(rank0.forward({feed(1, x)}, y0), TS_OK);
      ASSERT_EQ(rank1.forward({feed(1, x)}, y1), TS_OK);
      for (size_t i = 0; i < y0.size(); ++i) y0[i] += y1[i];
      expect_close(y0, y_full, kTol,
                   "heads " + std::to_string(c.heads) + " kv " + std::to_string(c.kv_heads) +
                       " step " + std::to_string(step));
    }
    EXPECT_EQ(comm0.all_reduce_calls, 3);
    EXPECT_EQ(comm1.all_reduce_calls, 3);
    EXPECT_EQ(comm0.last_numel, c.hidden);
  }
}

struct FfnModel {
  FfnModel(int32_t hidden_, int32_t inter_, uint32_t seed, int32_t dtype = TS_F32)
      : hidden(hidden_), inter(inter_) {
    exact_gate =
        random_vector(static_cast<size_t>(inter * hidden), seed, 1.0f / std::sqrt(float(hidden)));
    exact_up = random_vector(static_cast<size_t>(inter * hidden), seed + 1,
                             1.0f / std::sqrt(float(hidden)));
    exact_down = random_vector(static_cast<size_t>(hidden * inter), seed + 2,
                               1.0f / std::sqrt(float(inter)));
    exact_linear = random_vector(static_cast<size_t>(hidden * hidden), seed + 3,
                                 1.0f / std::sqrt(float(hidden)));
    gate = rounded(exact_gate, dtype);
    up = rounded(exact_up, dtype);
    down = rounded(exact_down, dtype);
    linear = rounded(exact_linear, dtype);
    weights.add("gate_proj.weight", {inter, hidden}, exact_gate, dtype);
    weights.add("up_proj.weight", {inter, hidden}, exact_up, dtype);
    weights.add("down_proj.weight", {hidden, inter}, exact_down, dtype);
    weights.add("linear_mlp.weight", {hidden, hidden}, exact_linear, dtype);
    weights.add("linear_attn.weight", {hidden, hidden}, exact_linear, dtype);
  }
  ParamList params() const {
    ParamList p;
    p.set_int("hidden_size", hidden).set_int("num_heads", 4).set_int("intermediate_size", inter);
    return p;
  }
  BlockSetup setup(int32_t kind, const ts_host* host, const ts_comm* comm = nullptr) const {
    BlockSetup s;
    s.kind = kind;
    s.layer = 7;
    s.hidden = hidden;
    s.weights = weights.abi();
    s.host = host;
    s.comm = comm;
    return s;
  }
  std::vector<float> reference_swiglu(const std::vector<float>& x) const {
    const int64_t n = static_cast<int64_t>(x.size()) / hidden;
    std::vector<float> y(x.size());
    ref::swiglu(x.data(), gate.data(), up.data(), down.data(), n, hidden, inter, y.data());
    return y;
  }
  std::vector<float> reference_linear(const std::vector<float>& x) const {
    const int64_t n = static_cast<int64_t>(x.size()) / hidden;
    std::vector<float> y(x.size());
    ref::matmul_nt(x.data(), linear.data(), n, hidden, hidden, y.data());
    return y;
  }
  int32_t hidden, inter;
  std::vector<float> exact_gate, exact_up, exact_down, exact_linear, gate, up, down, linear;
  TestWeights weights;
};

TEST(CpuBlockSharding, ShardedSwigluAndLinearEqualUnsharded) {
  FfnModel model(40, 74, 800);
  const auto x = random_vector(static_cast<size_t>(3 * 40), 801);
  const struct {
    const ts_block_vtable* vt;
    int32_t kind;
    const char* name;
  } blocks[] = {{ffn_vtable("swiglu"), TS_KIND_FFN, "swiglu"},
                {ffn_vtable("linear"), TS_KIND_FFN, "linear ffn"},
                {attention_vtable("linear"), TS_KIND_ATTENTION, "linear attention"}};
  for (const auto& b : blocks) {
    RecordingComm comm0(0, 2), comm1(1, 2);
    BlockRunner full(b.vt, model.setup(b.kind, nullptr), model.params());
    BlockRunner rank0(b.vt, model.setup(b.kind, nullptr, comm0.abi()), model.params());
    BlockRunner rank1(b.vt, model.setup(b.kind, nullptr, comm1.abi()), model.params());
    ASSERT_TRUE(full.ok() && rank0.ok() && rank1.ok()) << b.name;
    EXPECT_EQ(rank0.info().parameters + rank1.info().parameters, full.info().parameters) << b.name;
    std::vector<float> y_full, y0, y1;
    ASSERT_EQ(full.forward({feed(0, x)}, y_full), TS_OK);
    ASSERT_EQ(rank0.forward({feed(0, x)}, y0), TS_OK);
    ASSERT_EQ(rank1.forward({feed(0, x)}, y1), TS_OK);
    for (size_t i = 0; i < y0.size(); ++i) y0[i] += y1[i];
    expect_close(y0, y_full, kTol, b.name);
    EXPECT_EQ(comm0.all_reduce_calls, 1) << b.name;
    EXPECT_EQ(comm1.all_reduce_calls, 1) << b.name;
  }
}

// --------------------------------------------------------- FFN and the rest

TEST(CpuBlockFfn, SwigluMatchesReferenceForSeveralWidths) {
  TwoThreadHost threads;
  for (int32_t inter : {1, 37, 96, 1536}) {
    FfnModel model(64, inter, 900 + static_cast<uint32_t>(inter));
    BlockRunner block(ffn_vtable("swiglu"), model.setup(TS_KIND_FFN, threads.abi()),
                      model.params());
    ASSERT_TRUE(block.ok()) << block.create_error();
    EXPECT_EQ(block.info().kv_heads, 0);
    EXPECT_EQ(block.info().parameters, 3 * 64 * int64_t{inter});
    for (int32_t n : {1, 9}) {
      const auto x = random_vector(static_cast<size_t>(n * 64), 901);
      std::vector<float> y;
      ASSERT_EQ(block.forward({feed(0, x)}, y), TS_OK);
      expect_close(y, model.reference_swiglu(x), kTol, "inter " + std::to_string(inter));
    }
  }
}

TEST(CpuBlockFfn, LinearAndNoopBlocks) {
  FfnModel model(36, 8, 950);
  const auto x = random_vector(static_cast<size_t>(4 * 36), 951);
  for (const auto& [vt, kind] : {std::pair{ffn_vtable("linear"), TS_KIND_FFN},
                                 std::pair{attention_vtable("linear"), TS_KIND_ATTENTION}}) {
    BlockRunner block(vt, model.setup(kind, nullptr), model.params());
    ASSERT_TRUE(block.ok()) << block.create_error();
    EXPECT_EQ(block.info().kv_heads, 0);
    EXPECT_EQ(block.info().flags & TS_BLOCK_IDENTITY, 0u);
    std::vector<float> y;
    ASSERT_EQ(block.forward({feed(0, x)}, y), TS_OK);
    expect_close(y, model.reference_linear(x), kTol, "linear");
  }
  TestWeights none;
  for (const auto& [vt, kind] : {std::pair{ffn_vtable("noop"), TS_KIND_FFN},
                                 std::pair{attention_vtable("noop"), TS_KIND_ATTENTION}}) {
    BlockSetup s = model.setup(kind, nullptr);
    s.weights = none.abi();
    BlockRunner block(vt, s, ParamList{});
    ASSERT_TRUE(block.ok()) << block.create_error();
    EXPECT_EQ(block.info().flags & TS_BLOCK_IDENTITY, static_cast<uint32_t>(TS_BLOCK_IDENTITY));
    EXPECT_EQ(block.info().kv_heads, 0);
    std::vector<float> y;
    ASSERT_EQ(block.forward({feed(0, x)}, y), TS_OK);
    EXPECT_EQ(max_abs(y), 0.0f);
  }
}

TEST(CpuBlockDescriptors, PluginsListTheirProviders) {
  const auto& attention = PluginLibrary::get("libtessera-attention-cpu.so").descriptor();
  EXPECT_STREQ(attention.name, "tessera-attention-cpu");
  EXPECT_EQ(attention.abi_major, TS_ABI_MAJOR);
  EXPECT_EQ(attention.n_providers, 3);
  const auto& ffn = PluginLibrary::get("libtessera-ffn-cpu.so").descriptor();
  EXPECT_STREQ(ffn.name, "tessera-ffn-cpu");
  EXPECT_EQ(ffn.n_providers, 3);
  for (const auto* d : {&attention, &ffn})
    for (int32_t i = 0; i < d->n_providers; ++i) {
      EXPECT_EQ(d->providers[i].device, TS_DEVICE_CPU);
      const auto* vt = static_cast<const ts_block_vtable*>(d->providers[i].vtable);
      EXPECT_EQ(vt->struct_size, sizeof(ts_block_vtable));
    }
  EXPECT_NE(attention_vtable("gqa")->compact_kv, nullptr);
}

// ------------------------------------------------------------ half weights

TEST(CpuBlockHalfWeights, Bf16AndF16WeightsMatchReferenceOnRoundedWeights) {
  const GqaConfig c{64, 4, 2, 16};
  const auto x = random_vector(static_cast<size_t>(5 * c.hidden), 1001);
  for (const auto& [dtype, vs_exact] : {std::pair{TS_BF16, 3e-2f}, std::pair{TS_F16, 5e-3f}}) {
    const std::string name = tessera::dtype_name(dtype);
    GqaModel half(c, 1000, dtype), exact(c, 1000, TS_F32);
    BlockRunner block(attention_vtable("gqa"), half.setup(nullptr), half.params());
    ASSERT_TRUE(block.ok()) << block.create_error();
    std::vector<float> y;
    ASSERT_EQ(block.forward({feed(0, x)}, y), TS_OK);
    ref::SequenceKv kv_half, kv_exact;
    expect_close(y, half.reference(x, iota_positions(0, 5), kv_half), kTol, name + " gqa rounded");
    expect_close(y, exact.reference(x, iota_positions(0, 5), kv_exact), vs_exact,
                 name + " gqa exact");
    // decode one more token (GEMV path)
    const auto xt = random_vector(static_cast<size_t>(c.hidden), 1002);
    ASSERT_EQ(block.forward({feed(0, xt)}, y), TS_OK);
    expect_close(y, half.reference(xt, {5}, kv_half), kTol, name + " gqa decode");

    FfnModel ffn_half(64, 96, 1003, dtype), ffn_exact(64, 96, 1003, TS_F32);
    BlockRunner ffn(ffn_vtable("swiglu"), ffn_half.setup(TS_KIND_FFN, nullptr), ffn_half.params());
    for (int32_t n : {1, 5}) {
      const auto xf = rows_of(x, 0, n, 64);
      ASSERT_EQ(ffn.forward({feed(0, xf)}, y), TS_OK);
      expect_close(y, ffn_half.reference_swiglu(xf), kTol, name + " swiglu rounded");
      expect_close(y, ffn_exact.reference_swiglu(xf), vs_exact, name + " swiglu exact");
    }
  }
}

// ------------------------------------------------------------------ errors

TEST(CpuBlockErrors, WrongShapeMissingWeightAndBadParamsAreRefusedWithTheFacts) {
  const GqaConfig c{32, 4, 2, 16};
  {
    GqaModel model(c, 1100);
    model.weights.add("k_proj.weight", {16, 32}, std::vector<float>(16 * 32));
    BlockRunner block(attention_vtable("gqa"), model.setup(nullptr), model.params());
    EXPECT_EQ(block.create_status(), TS_ERROR);
    EXPECT_HAS(block.create_error(), "layer 3");
    EXPECT_HAS(block.create_error(), "k_proj.weight");
    EXPECT_HAS(block.create_error(), "[16, 32]");
    EXPECT_HAS(block.create_error(), "expected [32, 32]");
  }
  {
    GqaModel model(c, 1100);
    model.weights.remove("o_proj.weight");
    BlockRunner block(attention_vtable("gqa"), model.setup(nullptr), model.params());
    EXPECT_EQ(block.create_status(), TS_ERROR);
    EXPECT_HAS(block.create_error(), "o_proj.weight");
    EXPECT_HAS(block.create_error(), "layer 3");
  }
  {
    GqaModel model(c, 1100);
    ParamList p;
    p.set_int("num_heads", 4).set_int("head_dim", 16).set_int("kv_heads", 3);
    BlockRunner block(attention_vtable("gqa"), model.setup(nullptr), p);
    EXPECT_EQ(block.create_status(), TS_ERROR);
    EXPECT_HAS(block.create_error(), "kv_heads 3");
  }
  {
    GqaModel model(c, 1100);
    BlockSetup s = model.setup(nullptr);
    s.dtype = TS_F16;
    BlockRunner block(attention_vtable("gqa"), s, model.params());
    EXPECT_EQ(block.create_status(), TS_UNSUPPORTED);
    EXPECT_HAS(block.create_error(), "f16");
  }
  {
    FfnModel model(32, 20, 1101);
    model.weights.add("down_proj.weight", {32, 21}, std::vector<float>(32 * 21));
    BlockRunner block(ffn_vtable("swiglu"), model.setup(TS_KIND_FFN, nullptr), model.params());
    EXPECT_EQ(block.create_status(), TS_ERROR);
    EXPECT_HAS(block.create_error(), "layer 7 ffn swiglu");
    EXPECT_HAS(block.create_error(), "down_proj.weight' has shape [32, 21], expected [32, 20]");
    BlockSetup s = model.setup(TS_KIND_FFN, nullptr);
    s.dtype = TS_BF16;
    BlockRunner bf16_block(ffn_vtable("swiglu"), s, model.params());
    EXPECT_EQ(bf16_block.create_status(), TS_UNSUPPORTED);
    EXPECT_HAS(bf16_block.create_error(), "bf16");
    ParamList no_inter;
    BlockRunner no_inter_block(ffn_vtable("swiglu"), model.setup(TS_KIND_FFN, nullptr), no_inter);
    EXPECT_EQ(no_inter_block.create_status(), TS_ERROR);
    EXPECT_HAS(no_inter_block.create_error(), "intermediate_size");
  }
}

TEST(CpuBlockErrors, BadBatchesAreRefusedWithTheFacts) {
  const GqaConfig c{32, 4, 2, 16};
  GqaModel model(c, 1200);
  BlockRunner block(attention_vtable("gqa"), model.setup(nullptr, 4, 8), model.params());
  ASSERT_TRUE(block.ok());
  std::vector<float> y;
  std::string error;
  // capacity overflow: 6 cached + 3 new > 8
  ASSERT_EQ(block.forward({feed(1, random_vector(6 * 32, 1))}, y), TS_OK);
  EXPECT_EQ(block.forward({feed(1, random_vector(3 * 32, 2))}, y, &error), TS_ERROR);
  EXPECT_HAS(error, "slot 1 holds 6 rows");
  EXPECT_HAS(error, "3 new tokens");
  EXPECT_HAS(error, "capacity of 8");
  EXPECT_EQ(block.lengths()[1], 6);
  // slot out of range
  EXPECT_EQ(block.forward({feed(4, random_vector(32, 3), {0})}, y, &error), TS_ERROR);
  EXPECT_HAS(error, "slot 4");
  // the same slot twice
  EXPECT_EQ(
      block.forward({feed(0, random_vector(32, 3)), feed(0, random_vector(32, 3))}, y, &error),
      TS_ERROR);
  EXPECT_HAS(error, "both use slot 0");

  // non-monotone offsets, wrong x shape, bad activation dtype: through a raw io
  std::vector<float> x(3 * 32, 0.5f), out(3 * 32);
  ts_tensor xt = block.matrix(x.data(), 3), yt = block.matrix(out.data(), 3);
  std::vector<int32_t> slots{0, 2}, offsets{0, 2, 1}, positions{0, 1, 2};
  ts_batch batch{sizeof(ts_batch), 2,       3, slots.data(), offsets.data(),
                 positions.data(), nullptr, 0u};
  ts_kv_layer kv = block.kv_view();
  ts_block_io io{sizeof(ts_block_io), &xt, &yt, &batch, &kv};
  EXPECT_EQ(block.forward_io(io, &error), TS_ERROR);
  EXPECT_HAS(error, "not monotone");
  offsets = {0, 2, 3};
  xt.shape[1] = 31;
  EXPECT_EQ(block.forward_io(io, &error), TS_ERROR);
  EXPECT_HAS(error, "tensor x has shape [3, 31], expected [3, 32]");
  xt.shape[1] = 32;
  xt.dtype = TS_BF16;
  EXPECT_EQ(block.forward_io(io, &error), TS_UNSUPPORTED);
  EXPECT_HAS(error, "bf16");
  xt.dtype = TS_F32;
  kv.k.shape[2] = 3;
  EXPECT_EQ(block.forward_io(io, &error), TS_ERROR);
  EXPECT_HAS(error, "k cache");
  kv = block.kv_view();
  // No cache: a cache-free causal run over the batch's own rows, which leaves the cache alone.
  const std::vector<int32_t> lengths_before = block.lengths();
  io.kv = nullptr;
  EXPECT_EQ(block.forward_io(io, &error), TS_OK) << error;
  EXPECT_EQ(block.lengths(), lengths_before);
  io.kv = &kv;
  EXPECT_EQ(block.forward_io(io, &error), TS_OK) << error;

  FfnModel ffn_model(32, 20, 1201);
  BlockRunner ffn(ffn_vtable("swiglu"), ffn_model.setup(TS_KIND_FFN, nullptr), ffn_model.params());
  yt.shape[0] = 2;
  EXPECT_EQ(ffn.forward_io(io, &error), TS_ERROR);
  EXPECT_HAS(error, "tensor y has shape [2, 32], expected [3, 32]");
}

}  // namespace
