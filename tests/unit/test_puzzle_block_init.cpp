// Puzzle's block initialisers against naive references: least squares recovers a known map and
// reports its own error honestly, channel statistics and contributions match a loop over tokens,
// pruning keeps exactly the named channels (the pruned FFN equals the parent with the other
// channels removed), and KV-head pooling is the mean of each group.
#include <gtest/gtest.h>

#include <tessera/engine/error.hpp>
#include <tessera/engine/rng.hpp>
#include <tessera/puzzle/block_init.hpp>

#include <cmath>
#include <string>
#include <vector>

#include "model_fixtures.hpp"

namespace tessera::puzzle {
namespace {

using test::error_of;

std::vector<float> random_values(size_t n, uint64_t seed, float scale = 1.0f) {
  Rng rng(seed);
  std::vector<float> v(n);
  for (float& x : v) x = scale * (2.0f * rng.uniform() - 1.0f);
  return v;
}

// y = x w^T, x [n, in], w [out, in], in double.
std::vector<double> apply(const std::vector<float>& x, const std::vector<float>& w, int64_t n,
                          int64_t in, int64_t out) {
  std::vector<double> y(static_cast<size_t>(n * out));
  for (int64_t t = 0; t < n; ++t)
    for (int64_t o = 0; o < out; ++o) {
      double s = 0;
      for (int64_t i = 0; i < in; ++i)
        s += static_cast<double>(x[static_cast<size_t>(t * in + i)]) *
             w[static_cast<size_t>(o * in + i)];
      y[static_cast<size_t>(t * out + o)] = s;
    }
  return y;
}

double silu(double v) {
  return v / (1.0 + std::exp(-v));
}

TEST(PuzzleLeastSquares, RecoversAKnownLinearMap) {
  const int64_t h = 12, n = 300;
  const std::vector<float> w = random_values(static_cast<size_t>(h * h), 1, 0.5f);
  const std::vector<float> x = random_values(static_cast<size_t>(n * h), 2);
  const std::vector<double> yd = apply(x, w, n, h, h);
  const std::vector<float> y(yd.begin(), yd.end());
  LinearFitStats stats(h);
  // Three calls of different sizes: the sums are over every token whatever the batching.
  stats.add(nullptr, x.data(), y.data(), 100);
  stats.add(nullptr, x.data() + 100 * h, y.data() + 100 * h, 1);
  stats.add(nullptr, x.data() + 101 * h, y.data() + 101 * h, n - 101);
  EXPECT_EQ(stats.tokens(), n);
  const LinearFit fit = least_squares_linear(stats, 1e-9);
  ASSERT_EQ(fit.weight.size(), w.size());
  for (size_t i = 0; i < w.size(); ++i) EXPECT_NEAR(fit.weight[i], w[i], 1e-4) << "entry " << i;
  EXPECT_LT(fit.nmse, 1e-5);  // f32 products per call bound how exact it gets
}

TEST(PuzzleLeastSquares, ReportedErrorIsTheFitsErrorOnTheData) {
  const int64_t h = 8, n = 64;
  const std::vector<float> w = random_values(static_cast<size_t>(h * h), 3);
  const std::vector<float> x = random_values(static_cast<size_t>(n * h), 4);
  const std::vector<float> noise = random_values(static_cast<size_t>(n * h), 5, 0.3f);
  const std::vector<double> clean = apply(x, w, n, h, h);
  std::vector<float> y(clean.size());
  for (size_t i = 0; i < y.size(); ++i) y[i] = static_cast<float>(clean[i]) + noise[i];
  LinearFitStats stats(h);
  stats.add(nullptr, x.data(), y.data(), n);
  const LinearFit fit = least_squares_linear(stats, 1e-3);
  const std::vector<double> pred = apply(x, fit.weight, n, h, h);
  double err = 0, norm = 0;
  for (size_t i = 0; i < y.size(); ++i) {
    err += (pred[i] - y[i]) * (pred[i] - y[i]);
    norm += static_cast<double>(y[i]) * y[i];
  }
  EXPECT_NEAR(fit.nmse, err / norm, 1e-4 * (err / norm));
  EXPECT_GT(fit.nmse, 0.01);  // the noise cannot be fitted
  EXPECT_LT(fit.nmse, 0.5);
  // A stronger ridge fits the data no better.
  EXPECT_GE(least_squares_linear(stats, 1.0).nmse, fit.nmse);
}

TEST(PuzzleLeastSquares, RefusesEmptyAndSingularSystems) {
  LinearFitStats empty(4);
  EXPECT_NE(error_of([&] { least_squares_linear(empty, 1e-4); }).find("no calibration tokens"),
            std::string::npos)
      << error_of([&] { least_squares_linear(empty, 1e-4); });
  // Inputs with a zero column and no ridge: X^T X is singular.
  const int64_t h = 4, n = 16;
  std::vector<float> x = random_values(static_cast<size_t>(n * h), 6);
  for (int64_t t = 0; t < n; ++t) x[static_cast<size_t>(t * h + 2)] = 0.0f;
  LinearFitStats stats(h);
  stats.add(nullptr, x.data(), x.data(), n);
  EXPECT_NE(error_of([&] { least_squares_linear(stats, 0.0); }).find("positive definite"),
            std::string::npos)
      << error_of([&] { least_squares_linear(stats, 0.0); });
  // The ridge makes it solvable.
  EXPECT_LT(least_squares_linear(stats, 1e-6).nmse, 1e-4);
}

TEST(PuzzleChannels, StatisticsAndContributionsMatchALoopOverTokens) {
  const int64_t h = 6, inter = 10, n = 20;
  const std::vector<float> x = random_values(static_cast<size_t>(n * h), 7);
  const std::vector<float> gate = random_values(static_cast<size_t>(inter * h), 8);
  const std::vector<float> up = random_values(static_cast<size_t>(inter * h), 9);
  const std::vector<float> down = random_values(static_cast<size_t>(h * inter), 10);
  ChannelStats stats(inter);
  stats.add(nullptr, x.data(), 7, h, gate.data(), up.data());
  stats.add(nullptr, x.data() + 7 * h, n - 7, h, gate.data(), up.data());
  ASSERT_EQ(stats.tokens(), n);
  const std::vector<double> g = apply(x, gate, n, h, inter), u = apply(x, up, n, h, inter);
  const std::vector<double> c = channel_contributions(stats, down.data(), h);
  for (int64_t i = 0; i < inter; ++i) {
    double sum = 0;
    for (int64_t t = 0; t < n; ++t)
      sum += std::fabs(silu(g[static_cast<size_t>(t * inter + i)]) *
                       u[static_cast<size_t>(t * inter + i)]);
    EXPECT_NEAR(stats.abs_sum()[static_cast<size_t>(i)], sum, 1e-5 * sum) << "channel " << i;
    double col = 0;
    for (int64_t r = 0; r < h; ++r)
      col += static_cast<double>(down[static_cast<size_t>(r * inter + i)]) *
             down[static_cast<size_t>(r * inter + i)];
    EXPECT_NEAR(c[static_cast<size_t>(i)], sum / n * std::sqrt(col), 1e-5 * sum) << "channel " << i;
  }
}

TEST(PuzzleChannels, TopChannelsKeepTheLargestInIndexOrderAndTheLowerIndexOnTies) {
  const std::vector<double> c = {0.5, 3.0, 1.0, 3.0, 0.0, 2.0};
  EXPECT_EQ(top_channels(c, 1), (std::vector<int32_t>{1}));
  EXPECT_EQ(top_channels(c, 3), (std::vector<int32_t>{1, 3, 5}));
  EXPECT_EQ(top_channels(c, 4), (std::vector<int32_t>{1, 2, 3, 5}));
  EXPECT_EQ(top_channels(c, 6), (std::vector<int32_t>{0, 1, 2, 3, 4, 5}));
  const std::vector<double> tied(5, 1.0);
  EXPECT_EQ(top_channels(tied, 2), (std::vector<int32_t>{0, 1}));
  EXPECT_NE(error_of([&] { top_channels(c, 0); }).find("expected a width in [1, 6]"),
            std::string::npos);
  EXPECT_NE(error_of([&] { top_channels(c, 7); }).find("cannot keep 7 of 6"), std::string::npos);
}

TEST(PuzzlePrune, TheFullChannelListIsTheParentsWeights) {
  const int64_t h = 5, inter = 7;
  const std::vector<float> gate = random_values(static_cast<size_t>(inter * h), 11);
  const std::vector<float> up = random_values(static_cast<size_t>(inter * h), 12);
  const std::vector<float> down = random_values(static_cast<size_t>(h * inter), 13);
  const SwigluWeights p =
      prune_swiglu(gate.data(), up.data(), down.data(), h, inter, {0, 1, 2, 3, 4, 5, 6});
  EXPECT_EQ(p.gate, gate);
  EXPECT_EQ(p.up, up);
  EXPECT_EQ(p.down, down);
}

TEST(PuzzlePrune, APrunedFfnIsTheParentWithoutTheDroppedChannels) {
  const int64_t h = 6, inter = 9, n = 4;
  const std::vector<float> gate = random_values(static_cast<size_t>(inter * h), 14);
  const std::vector<float> up = random_values(static_cast<size_t>(inter * h), 15);
  const std::vector<float> down = random_values(static_cast<size_t>(h * inter), 16);
  const std::vector<float> x = random_values(static_cast<size_t>(n * h), 17);
  const std::vector<int32_t> keep = {1, 4, 5, 8};
  const SwigluWeights p = prune_swiglu(gate.data(), up.data(), down.data(), h, inter, keep);
  const int64_t w = static_cast<int64_t>(keep.size());
  // The pruned block, computed on its own weights.
  const std::vector<double> pg = apply(x, p.gate, n, h, w), pu = apply(x, p.up, n, h, w);
  // The parent, summing only the kept channels.
  const std::vector<double> g = apply(x, gate, n, h, inter), u = apply(x, up, n, h, inter);
  for (int64_t t = 0; t < n; ++t)
    for (int64_t r = 0; r < h; ++r) {
      double pruned = 0, parent = 0;
      for (int64_t k = 0; k < w; ++k) {
        const size_t a = static_cast<size_t>(t * w + k);
        pruned += silu(pg[a]) * pu[a] * p.down[static_cast<size_t>(r * w + k)];
      }
      for (const int32_t c : keep) {
        const size_t a = static_cast<size_t>(t * inter + c);
        parent += silu(g[a]) * u[a] * down[static_cast<size_t>(r * inter + c)];
      }
      EXPECT_NEAR(pruned, parent, 1e-9) << "token " << t << " row " << r;
    }
}

TEST(PuzzlePrune, RefusesChannelListsThatAreNotAscendingDistinctAndInRange) {
  const std::vector<float> g(12), u(12), d(12);
  for (const std::vector<int32_t>& bad : {std::vector<int32_t>{2, 1}, std::vector<int32_t>{1, 1},
                                          std::vector<int32_t>{0, 4}, std::vector<int32_t>{-1}}) {
    const std::string e = error_of([&] { prune_swiglu(g.data(), u.data(), d.data(), 3, 4, bad); });
    EXPECT_NE(e.find("ascending, distinct and below 4"), std::string::npos) << e;
  }
}

TEST(PuzzleKvPooling, PoolsEachGroupToItsMeanAndKeepsTheParentCount) {
  const int64_t kv = 4, hd = 2, h = 3, row = hd * h;
  const std::vector<float> w = random_values(static_cast<size_t>(kv * row), 18);
  EXPECT_EQ(mean_pool_heads(w.data(), kv, hd, h, kv), w);
  const std::vector<float> two = mean_pool_heads(w.data(), kv, hd, h, 2);
  ASSERT_EQ(two.size(), static_cast<size_t>(2 * row));
  for (int64_t j = 0; j < 2; ++j)
    for (int64_t e = 0; e < row; ++e)
      EXPECT_FLOAT_EQ(two[static_cast<size_t>(j * row + e)],
                      0.5f * (w[static_cast<size_t>(2 * j * row + e)] +
                              w[static_cast<size_t>((2 * j + 1) * row + e)]));
  const std::vector<float> one = mean_pool_heads(w.data(), kv, hd, h, 1);
  for (int64_t e = 0; e < row; ++e) {
    double s = 0;
    for (int64_t k = 0; k < kv; ++k) s += w[static_cast<size_t>(k * row + e)];
    EXPECT_NEAR(one[static_cast<size_t>(e)], s / 4, 1e-6);
  }
  EXPECT_NE(error_of([&] {
              mean_pool_heads(w.data(), kv, hd, h, 3);
            }).find("do not divide the parent's 4"),
            std::string::npos);
  EXPECT_NE(error_of([&] { mean_pool_heads(w.data(), kv, hd, h, 0); }).find("do not divide"),
            std::string::npos);
}

}  // namespace
}  // namespace tessera::puzzle
