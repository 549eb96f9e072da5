// The naive references against values worked out by hand, and against the
// properties that define them (RoPE is a rotation, attention over one row
// returns that row's value, causal vs tree masks).
#include <tessera/reference/reference.hpp>

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

namespace {

namespace ref = tessera::reference;

std::vector<float> randn(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = d(gen);
  return v;
}

TEST(Reference, RmsnormByHand) {
  // Row [3, 4]: mean square 12.5; eps 0 -> x / sqrt(12.5) * w.
  const float x[4] = {3.0f, 4.0f, 0.0f, 0.0f};
  const float w[2] = {1.0f, 2.0f};
  float y[4];
  ref::rmsnorm(x, w, 0.0, 1, 2, y);
  EXPECT_NEAR(y[0], 3.0 / std::sqrt(12.5), 1e-6);
  EXPECT_NEAR(y[1], 8.0 / std::sqrt(12.5), 1e-6);
  // A zero row with eps stays zero (no division by zero).
  ref::rmsnorm(x + 2, w, 1e-5, 1, 2, y + 2);
  EXPECT_EQ(y[2], 0.0f);
  EXPECT_EQ(y[3], 0.0f);
}

TEST(Reference, MatmulNtByHand) {
  // x [2, 3], w [2, 3] (out, in): y = x w^T
  const float x[6] = {1, 2, 3, 4, 5, 6};
  const float w[6] = {1, 0, -1, 0.5f, 0.5f, 0.5f};
  float y[4];
  ref::matmul_nt(x, w, 2, 2, 3, y);
  EXPECT_FLOAT_EQ(y[0], -2.0f);
  EXPECT_FLOAT_EQ(y[1], 3.0f);
  EXPECT_FLOAT_EQ(y[2], -2.0f);
  EXPECT_FLOAT_EQ(y[3], 7.5f);
}

TEST(Reference, RopeRotatesHalvesByPositionTimesFrequency) {
  // head_dim 4: pairs (0, 2) at angle p, (1, 3) at angle p * theta^(-1/2).
  float v[4] = {1.0f, 2.0f, 3.0f, 4.0f};
  ref::rope(v, 1, 4, 2, 100.0);
  const double a0 = 2.0, a1 = 2.0 / 10.0;
  EXPECT_NEAR(v[0], 1 * std::cos(a0) - 3 * std::sin(a0), 1e-6);
  EXPECT_NEAR(v[2], 3 * std::cos(a0) + 1 * std::sin(a0), 1e-6);
  EXPECT_NEAR(v[1], 2 * std::cos(a1) - 4 * std::sin(a1), 1e-6);
  EXPECT_NEAR(v[3], 4 * std::cos(a1) + 2 * std::sin(a1), 1e-6);
  // Position 0 is the identity; every position keeps each pair's norm.
  auto w = randn(2 * 64, 1);
  auto w0 = w;
  ref::rope(w0.data(), 2, 64, 0, 10000.0);
  EXPECT_EQ(w0, w);
  auto w7 = w;
  ref::rope(w7.data(), 2, 64, 777, 10000.0);
  for (int h = 0; h < 2; ++h)
    for (int i = 0; i < 32; ++i) {
      const size_t a = static_cast<size_t>(h * 64 + i), b = a + 32;
      EXPECT_NEAR(std::hypot(w7[a], w7[b]), std::hypot(w[a], w[b]), 1e-5);
    }
}

TEST(Reference, SwigluByHand) {
  // hidden 1, inter 2: gate [1, -1], up [2, 3], down [1, 1]; x = 2
  const float x[1] = {2.0f};
  const float gate[2] = {1.0f, -1.0f}, up[2] = {2.0f, 3.0f}, down[2] = {1.0f, 1.0f};
  float y[1];
  ref::swiglu(x, gate, up, down, 1, 1, 2, y);
  auto silu = [](double v) { return v / (1.0 + std::exp(-v)); };
  EXPECT_NEAR(y[0], silu(2.0) * 4.0 + silu(-2.0) * 6.0, 1e-6);
}

// Identity q/k/v projections and o_proj make the attention arithmetic visible.
struct IdentityGqa {
  explicit IdentityGqa(int64_t heads, int64_t kv_heads, int64_t hd)
      : shape{heads * hd, heads, kv_heads, hd, 10000.0} {
    const int64_t h = heads * hd;
    auto eye = [](int64_t rows, int64_t cols) {
      std::vector<float> m(static_cast<size_t>(rows * cols), 0.0f);
      for (int64_t i = 0; i < std::min(rows, cols); ++i)
        m[static_cast<size_t>(i * cols + i)] = 1.0f;
      return m;
    };
    q = eye(h, h);
    k = eye(kv_heads * hd, h);
    v = eye(kv_heads * hd, h);
    o = eye(h, h);
  }
  ref::GqaWeights weights() const { return {q.data(), k.data(), v.data(), o.data()}; }
  ref::GqaShape shape;
  std::vector<float> q, k, v, o;
};

TEST(Reference, AttentionOverOneTokenReturnsItsValue) {
  IdentityGqa m(2, 1, 4);
  const float x[8] = {1, 2, 3, 4, 5, 6, 7, 8};
  const int32_t pos[1] = {0};
  ref::SequenceKv kv;
  float y[8];
  ref::gqa_attention(m.shape, m.weights(), x, 1, pos, nullptr, kv, y);
  // The only visible row is the token itself: both query heads read KV head 0 = x[0..3].
  for (int i = 0; i < 4; ++i) {
    EXPECT_FLOAT_EQ(y[i], x[i]);
    EXPECT_FLOAT_EQ(y[4 + i], x[i]);
  }
  EXPECT_EQ(kv.rows, 1);
  EXPECT_EQ(kv.k.size(), 4u);
  EXPECT_EQ(kv.v, std::vector<float>(x, x + 4));
}

TEST(Reference, AttentionWeightsBySoftmaxOfScaledScores) {
  // One head, head_dim 2, positions 0: RoPE is the identity, so with identity
  // projections row i's score against row j is dot(x_i, x_j) / sqrt(2).
  IdentityGqa m(1, 1, 2);
  const float x[4] = {1.0f, 0.0f, 2.0f, 1.0f};
  const int32_t pos[2] = {0, 0};
  ref::SequenceKv kv;
  float y[4];
  ref::gqa_attention(m.shape, m.weights(), x, 2, pos, nullptr, kv, y);
  EXPECT_FLOAT_EQ(y[0], 1.0f);  // causal: token 0 sees itself only
  EXPECT_FLOAT_EQ(y[1], 0.0f);
  const double s0 = 2.0 / std::sqrt(2.0), s1 = 5.0 / std::sqrt(2.0);
  const double p0 = std::exp(s0) / (std::exp(s0) + std::exp(s1)), p1 = 1.0 - p0;
  EXPECT_NEAR(y[2], p0 * 1.0 + p1 * 2.0, 1e-6);
  EXPECT_NEAR(y[3], p1 * 1.0, 1e-6);

  // A tree mask where token 1 sees only itself; token 0 sees both.
  const uint8_t mask[4] = {1, 1, 0, 1};
  ref::SequenceKv kv2;
  ref::gqa_attention(m.shape, m.weights(), x, 2, pos, mask, kv2, y);
  EXPECT_FLOAT_EQ(y[2], 2.0f);
  EXPECT_FLOAT_EQ(y[3], 1.0f);
  const double t0 = 1.0 / std::sqrt(2.0), t1 = 2.0 / std::sqrt(2.0);
  const double q0 = std::exp(t0) / (std::exp(t0) + std::exp(t1));
  EXPECT_NEAR(y[0], q0 * 1.0 + (1 - q0) * 2.0, 1e-6);
  EXPECT_NEAR(y[1], (1 - q0) * 1.0, 1e-6);
}

TEST(Reference, IncrementalAttentionEqualsOneCall) {
  const ref::GqaShape shape{24, 6, 2, 8, 10000.0};
  const auto q = randn(48 * 24, 1, 0.2f), k = randn(16 * 24, 2, 0.2f), v = randn(16 * 24, 3, 0.2f),
             o = randn(24 * 48, 4, 0.2f);
  const ref::GqaWeights w{q.data(), k.data(), v.data(), o.data()};
  const auto x = randn(5 * 24, 5);
  const int32_t pos[5] = {0, 1, 2, 3, 4};
  ref::SequenceKv whole_kv, step_kv;
  std::vector<float> whole(5 * 24), steps(5 * 24);
  ref::gqa_attention(shape, w, x.data(), 5, pos, nullptr, whole_kv, whole.data());
  ref::gqa_attention(shape, w, x.data(), 3, pos, nullptr, step_kv, steps.data());
  ref::gqa_attention(shape, w, x.data() + 3 * 24, 2, pos + 3, nullptr, step_kv,
                     steps.data() + 3 * 24);
  for (size_t i = 0; i < whole.size(); ++i) EXPECT_NEAR(steps[i], whole[i], 1e-6) << i;
  EXPECT_EQ(step_kv.rows, 5);
  EXPECT_EQ(step_kv.k, whole_kv.k);
}

TEST(Reference, AttentionRejectsBadShape) {
  const ref::GqaShape shape{8, 3, 2, 4, 10000.0};  // 3 heads over 2 KV heads
  ref::SequenceKv kv;
  EXPECT_THROW(ref::gqa_attention(shape, {}, nullptr, 0, nullptr, nullptr, kv, nullptr),
               std::invalid_argument);
}

}  // namespace
