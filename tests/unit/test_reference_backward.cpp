// The f64 reference backwards (reference.hpp: linear_backward, swiglu_backward,
// gqa_attention_backward) against central finite differences of the f64 reference forwards.
//
// With loss L = sum(dy * y) for a random dy, every coordinate c of x and of each weight gets
// (L(c + h) - L(c - h)) / 2h with h = 1e-6; the analytic gradient must agree within
// 1e-6 * max(1, max |gradient|) (the differences are exact to about 1e-9 here).
// Also: the f64 forwards agree with the f32 ones, and a cache-free f64 gqa equals the cached
// reference run of the same sequence from an empty cache.
#include <tessera/reference/reference.hpp>

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <functional>
#include <random>
#include <string>
#include <vector>

namespace {

namespace ref = tessera::reference;

constexpr double kStep = 1e-6;
constexpr double kTolerance = 1e-6;

std::vector<double> random_doubles(size_t n, uint32_t seed, double scale = 1.0) {
  std::mt19937 gen(seed);
  std::normal_distribution<double> dist(0.0, scale);
  std::vector<double> v(n);
  for (double& x : v) x = dist(gen);
  return v;
}

double dot(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0.0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

// Checks `grad` (d loss / d values) against central differences of loss() over every
// coordinate of `values`; returns the largest error.
double check_by_differences(std::vector<double>& values, const std::vector<double>& grad,
                            const std::function<double()>& loss, const std::string& what) {
  double scale = 1.0, worst = 0.0;
  for (double g : grad) scale = std::max(scale, std::fabs(g));
  for (size_t i = 0; i < values.size(); ++i) {
    const double keep = values[i];
    values[i] = keep + kStep;
    const double up = loss();
    values[i] = keep - kStep;
    const double down = loss();
    values[i] = keep;
    const double numeric = (up - down) / (2 * kStep);
    worst = std::max(worst, std::fabs(numeric - grad[i]));
    if (std::fabs(numeric - grad[i]) > kTolerance * scale) {
      ADD_FAILURE() << what << "[" << i << "]: backward " << grad[i] << ", differences " << numeric;
      break;
    }
  }
  return worst;
}

TEST(ReferenceBackward, LinearMatchesFiniteDifferences) {
  for (const auto& [m, n, k] :
       std::vector<std::array<int64_t, 3>>{{1, 3, 4}, {5, 6, 6}, {3, 2, 7}}) {
    auto x = random_doubles(static_cast<size_t>(m * k), 1);
    auto w = random_doubles(static_cast<size_t>(n * k), 2);
    const auto dy = random_doubles(static_cast<size_t>(m * n), 3);
    std::vector<double> dx(x.size()), dw(w.size()), y(dy.size());
    ref::linear_backward(x.data(), w.data(), dy.data(), m, n, k, dx.data(), dw.data());
    auto loss = [&] {
      ref::linear_f64(x.data(), w.data(), m, n, k, y.data());
      return dot(y, dy);
    };
    const std::string what =
        "linear " + std::to_string(m) + "x" + std::to_string(n) + "x" + std::to_string(k);
    const double err = std::max(check_by_differences(x, dx, loss, what + " x"),
                                check_by_differences(w, dw, loss, what + " w"));
    std::printf("[ measured ] %s: max |backward - differences| %.2e\n", what.c_str(), err);
  }
}

TEST(ReferenceBackward, SwigluMatchesFiniteDifferencesForSeveralWidths) {
  constexpr int64_t hidden = 8, tokens = 4;
  for (int64_t inter : {1, 5, 12}) {
    auto x = random_doubles(static_cast<size_t>(tokens * hidden), 10);
    auto gate = random_doubles(static_cast<size_t>(inter * hidden), 11, 0.5);
    auto up = random_doubles(static_cast<size_t>(inter * hidden), 12, 0.5);
    auto down = random_doubles(static_cast<size_t>(hidden * inter), 13, 0.5);
    const auto dy = random_doubles(static_cast<size_t>(tokens * hidden), 14);
    std::vector<double> dx(x.size()), dgate(gate.size()), dup(up.size()), ddown(down.size()),
        y(dy.size());
    ref::swiglu_backward(x.data(), gate.data(), up.data(), down.data(), dy.data(), tokens, hidden,
                         inter, {dx.data(), dgate.data(), dup.data(), ddown.data()});
    auto loss = [&] {
      ref::swiglu_f64(x.data(), gate.data(), up.data(), down.data(), tokens, hidden, inter,
                      y.data());
      return dot(y, dy);
    };
    const std::string what = "swiglu intermediate=" + std::to_string(inter);
    double err = check_by_differences(x, dx, loss, what + " x");
    err = std::max(err, check_by_differences(gate, dgate, loss, what + " gate"));
    err = std::max(err, check_by_differences(up, dup, loss, what + " up"));
    err = std::max(err, check_by_differences(down, ddown, loss, what + " down"));
    std::printf("[ measured ] %s: max |backward - differences| %.2e\n", what.c_str(), err);
  }
}

struct GqaCase {
  int64_t hidden, heads, kv_heads, head_dim, tokens;
  int32_t first_position;
  bool llama3;
  bool tree;
};

tessera::RopeScaling llama3_scaling() {
  tessera::RopeScaling s;
  s.type = "llama3";
  s.factor = 8.0;
  s.low_freq_factor = 1.0;
  s.high_freq_factor = 4.0;
  s.original_max_position_embeddings = 256;
  return s;
}

// A tree of five nodes: 0 the root, 1 and 2 its children, 3 under 1, 4 under 2.
std::vector<uint8_t> five_node_tree() {
  const int parent[5] = {-1, 0, 0, 1, 2};
  std::vector<uint8_t> m(25, 0);
  for (int i = 0; i < 5; ++i)
    for (int a = i; a >= 0; a = parent[a]) m[static_cast<size_t>(i * 5 + a)] = 1;
  return m;
}

TEST(ReferenceBackward, GqaMatchesFiniteDifferencesForGroupingsAndRopeScaling) {
  // head_dim 6 with theta 1e4 gives wavelengths 6.3, 135 and 2900: with llama3 scaling
  // (original 256, low 1, high 4) one is kept, one interpolated and one divided by the factor.
  const std::vector<GqaCase> cases = {
      {12, 4, 4, 6, 5, 0, false, false},  {12, 4, 2, 6, 5, 3, false, false},
      {12, 4, 1, 6, 5, 0, false, false},  {12, 4, 4, 6, 5, 200, true, false},
      {12, 4, 2, 6, 5, 300, true, false}, {12, 4, 1, 6, 5, 1000, true, false},
      {12, 4, 2, 6, 5, 7, false, true},   {10, 2, 1, 4, 1, 0, false, false}};
  for (const GqaCase& c : cases) {
    const ref::GqaShape shape{c.hidden, c.heads, c.kv_heads, c.head_dim, 10000.0};
    const tessera::RopeScaling scaling = c.llama3 ? llama3_scaling() : tessera::RopeScaling{};
    const int64_t qw = c.heads * c.head_dim, kvw = c.kv_heads * c.head_dim;
    auto x = random_doubles(static_cast<size_t>(c.tokens * c.hidden), 20);
    auto wq = random_doubles(static_cast<size_t>(qw * c.hidden), 21, 0.4);
    auto wk = random_doubles(static_cast<size_t>(kvw * c.hidden), 22, 0.4);
    auto wv = random_doubles(static_cast<size_t>(kvw * c.hidden), 23, 0.4);
    auto wo = random_doubles(static_cast<size_t>(c.hidden * qw), 24, 0.4);
    const auto dy = random_doubles(static_cast<size_t>(c.tokens * c.hidden), 25);
    std::vector<int32_t> positions(static_cast<size_t>(c.tokens));
    for (int64_t i = 0; i < c.tokens; ++i)
      positions[static_cast<size_t>(i)] = c.first_position + static_cast<int32_t>(i);
    const std::vector<uint8_t> tree = c.tree ? five_node_tree() : std::vector<uint8_t>{};
    const uint8_t* mask = c.tree ? tree.data() : nullptr;

    std::vector<double> dx(x.size()), dq(wq.size()), dk(wk.size()), dv(wv.size()), d_o(wo.size()),
        y(dy.size());
    const ref::GqaWeightsF64 w{wq.data(), wk.data(), wv.data(), wo.data()};
    ref::gqa_attention_backward(shape, scaling, w, x.data(), c.tokens, positions.data(), mask,
                                dy.data(),
                                {dx.data(), dq.data(), dk.data(), dv.data(), d_o.data()});
    auto loss = [&] {
      ref::gqa_attention_f64(shape, scaling, w, x.data(), c.tokens, positions.data(), mask,
                             y.data());
      return dot(y, dy);
    };
    const std::string what = "gqa heads=" + std::to_string(c.heads) +
                             " kv_heads=" + std::to_string(c.kv_heads) +
                             " tokens=" + std::to_string(c.tokens) + (c.llama3 ? " llama3" : "") +
                             (c.tree ? " tree_mask" : "");
    double err = check_by_differences(x, dx, loss, what + " x");
    err = std::max(err, check_by_differences(wq, dq, loss, what + " q_proj"));
    err = std::max(err, check_by_differences(wk, dk, loss, what + " k_proj"));
    err = std::max(err, check_by_differences(wv, dv, loss, what + " v_proj"));
    err = std::max(err, check_by_differences(wo, d_o, loss, what + " o_proj"));
    std::printf("[ measured ] %s: max |backward - differences| %.2e\n", what.c_str(), err);
  }
}

TEST(ReferenceBackward, F64ForwardsAgreeWithTheF32References) {
  // gqa: the f64 forward of a whole sequence equals prefilling it into an empty cache.
  const ref::GqaShape shape{16, 4, 2, 4, 10000.0};
  const int64_t n = 6, qw = 16, kvw = 8;
  const auto xd = random_doubles(static_cast<size_t>(n * 16), 30);
  const auto q = random_doubles(static_cast<size_t>(qw * 16), 31, 0.3);
  const auto k = random_doubles(static_cast<size_t>(kvw * 16), 32, 0.3);
  const auto v = random_doubles(static_cast<size_t>(kvw * 16), 33, 0.3);
  const auto o = random_doubles(static_cast<size_t>(16 * qw), 34, 0.3);
  auto to_float = [](const std::vector<double>& d) {
    return std::vector<float>(d.begin(), d.end());
  };
  auto to_double = [](const std::vector<float>& f) {
    return std::vector<double>(f.begin(), f.end());
  };
  // Both on the same (f32-representable) values.
  const auto xf = to_float(xd), qf = to_float(q), kf = to_float(k), vf = to_float(v),
             of = to_float(o);
  const std::vector<int32_t> positions{4, 5, 6, 7, 8, 9};
  std::vector<float> y32(static_cast<size_t>(n * 16));
  ref::SequenceKv kv;
  ref::gqa_attention(shape, {qf.data(), kf.data(), vf.data(), of.data()}, xf.data(), n,
                     positions.data(), nullptr, kv, y32.data());
  const auto x2 = to_double(xf), q2 = to_double(qf), k2 = to_double(kf), v2 = to_double(vf),
             o2 = to_double(of);
  std::vector<double> y64(y32.size());
  ref::gqa_attention_f64(shape, {}, {q2.data(), k2.data(), v2.data(), o2.data()}, x2.data(), n,
                         positions.data(), nullptr, y64.data());
  for (size_t i = 0; i < y32.size(); ++i) EXPECT_NEAR(y64[i], y32[i], 1e-5) << i;

  // swiglu and linear.
  std::vector<float> s32(static_cast<size_t>(n * 16));
  std::vector<double> s64(s32.size());
  ref::swiglu(xf.data(), qf.data(), kf.data(), of.data(), n, 16, 8, s32.data());
  ref::swiglu_f64(x2.data(), q2.data(), k2.data(), o2.data(), n, 16, 8, s64.data());
  for (size_t i = 0; i < s32.size(); ++i) EXPECT_NEAR(s64[i], s32[i], 1e-5) << i;
  ref::matmul_nt(xf.data(), qf.data(), n, 16, 16, s32.data());
  ref::linear_f64(x2.data(), q2.data(), n, 16, 16, s64.data());
  for (size_t i = 0; i < s32.size(); ++i) EXPECT_NEAR(s64[i], s32[i], 1e-5) << i;
}

TEST(ReferenceBackward, FrozenOutputsAreSkippedAndBadShapesRefused) {
  // NULL outputs are skipped: only dx asked for.
  const ref::GqaShape shape{8, 2, 1, 4, 10000.0};
  const auto x = random_doubles(24, 40);
  const auto w = random_doubles(64, 41);
  const auto dy = random_doubles(24, 42);
  const std::vector<int32_t> positions{0, 1, 2};
  std::vector<double> dx(24, -1.0);
  ref::gqa_attention_backward(shape, {}, {w.data(), w.data(), w.data(), w.data()}, x.data(), 3,
                              positions.data(), nullptr, dy.data(), {dx.data()});
  EXPECT_NE(dx[0], -1.0);
  const ref::GqaShape bad{8, 3, 2, 4, 10000.0};
  EXPECT_THROW(ref::gqa_attention_backward(bad, {}, {w.data(), w.data(), w.data(), w.data()},
                                           x.data(), 3, positions.data(), nullptr, dy.data(), {}),
               std::invalid_argument);
}

}  // namespace
