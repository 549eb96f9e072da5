// AdamW against steps computed by hand, clipping by global norm, and the learning-rate
// schedule's values.
#include "model_fixtures.hpp"

#include <tessera/train/optimizer.hpp>

#include <gtest/gtest.h>

#include <cmath>
#include <numbers>
#include <vector>

namespace tessera::test {
namespace {

// PyTorch's AdamW written out for one element, in double.
struct HandAdamW {
  double p, m = 0, v = 0;
  void step(double g, double lr, int t, double b1, double b2, double eps, double wd) {
    p *= 1 - lr * wd;
    m = b1 * m + (1 - b1) * g;
    v = b2 * v + (1 - b2) * g * g;
    const double m_hat = m / (1 - std::pow(b1, t));
    const double v_hat = v / (1 - std::pow(b2, t));
    p -= lr * m_hat / (std::sqrt(v_hat) + eps);
  }
};

TEST(TrainAdamW, MatchesStepsComputedByHand) {
  train::AdamWConfig config;
  config.beta1 = 0.9;
  config.beta2 = 0.95;
  config.eps = 1e-8;
  config.weight_decay = 0.1;
  std::vector<float> p = {0.5f, -1.0f, 2.0f, 0.0f}, m(4, 0.0f), v(4, 0.0f);
  std::vector<HandAdamW> hand;
  for (float x : p) hand.push_back({x});
  const std::vector<std::vector<float>> grads = {
      {0.1f, -0.2f, 0.3f, 0.0f}, {-0.05f, 0.4f, 0.3f, 1e-3f}, {0.2f, 0.0f, -0.1f, 2.0f}};
  const double lrs[] = {0.01, 0.02, 0.005};
  for (int t = 1; t <= 3; ++t) {
    const std::vector<float>& g = grads[static_cast<size_t>(t - 1)];
    train::adamw_update(test_pool().host(), config, lrs[t - 1], t, true, p.data(), g.data(),
                        m.data(), v.data(), 4);
    for (size_t i = 0; i < 4; ++i) {
      hand[i].step(g[i], lrs[t - 1], t, config.beta1, config.beta2, config.eps,
                   config.weight_decay);
      EXPECT_NEAR(p[i], hand[i].p, 1e-6) << "step " << t << " element " << i;
      EXPECT_NEAR(m[i], hand[i].m, 1e-7);
      EXPECT_NEAR(v[i], hand[i].v, 1e-9);
    }
  }
  // The first step moves each weight by about lr (m_hat / sqrt(v_hat) = sign g), plus decay.
  std::vector<float> q = {1.0f}, mq(1, 0.0f), vq(1, 0.0f);
  const float g = 0.3f;
  train::adamw_update(nullptr, config, 0.01, 1, true, q.data(), &g, mq.data(), vq.data(), 1);
  EXPECT_NEAR(q[0], 1.0 * (1 - 0.01 * 0.1) - 0.01, 1e-7);
}

TEST(TrainAdamW, WithoutDecayOnlyTheAdamTermMoves) {
  train::AdamWConfig config;
  config.weight_decay = 0.5;
  std::vector<float> p = {3.0f}, m(1, 0.0f), v(1, 0.0f);
  const float g = -2.0f;
  train::adamw_update(nullptr, config, 0.1, 1, false, p.data(), &g, m.data(), v.data(), 1);
  EXPECT_NEAR(p[0], 3.0 + 0.1, 1e-6);  // -lr * sign(g), no decay
  // A zero gradient at step 1 leaves the weight (m = v = 0: 0 / (0 + eps)).
  std::vector<float> z = {1.5f}, mz(1, 0.0f), vz(1, 0.0f);
  const float zero = 0.0f;
  train::adamw_update(nullptr, config, 0.1, 1, false, z.data(), &zero, mz.data(), vz.data(), 1);
  EXPECT_EQ(z[0], 1.5f);
}

TEST(TrainAdamW, TheFastPathGivesTheReferencesBits) {
  // Odd length (a tail past the vector width), several steps, moments of both signs, and a
  // pool whose chunks cut the buffer.
  const int64_t n = 50003;
  Rng rng(11);
  std::vector<float> p(n), g(n);
  for (float& x : p) x = rng.normal();
  std::vector<float> q = p, m(n, 0.0f), v(n, 0.0f), mq = m, vq = v;
  train::AdamWConfig config;
  config.weight_decay = 0.1;
  ThreadPool three(3);
  for (int t = 1; t <= 3; ++t) {
    for (float& x : g) x = 0.01f * rng.normal();
    train::adamw_update(three.host(), config, 1e-3, t, t != 2, p.data(), g.data(), m.data(),
                        v.data(), n, 0.75f);
    train::adamw_update_reference(config, 1e-3, t, t != 2, q.data(), g.data(), mq.data(), vq.data(),
                                  n, 0.75f);
  }
  for (int64_t i = 0; i < n; ++i) {
    ASSERT_EQ(p[i], q[i]) << "weight " << i;
    ASSERT_EQ(m[i], mq[i]) << "m " << i;
    ASSERT_EQ(v[i], vq[i]) << "v " << i;
  }
}

TEST(TrainClip, TheFactorScalesByTheGlobalNorm) {
  std::vector<float> a = {3.0f, 0.0f}, b = {0.0f, 4.0f, 0.0f};
  const std::vector<train::GradSpan> spans = {{a.data(), 2}, {b.data(), 3}};
  const double norm = train::global_norm(test_pool().host(), spans);
  EXPECT_DOUBLE_EQ(norm, 5.0);
  EXPECT_DOUBLE_EQ(train::clip_factor(norm, 10.0), 1.0);  // below the limit
  EXPECT_DOUBLE_EQ(train::clip_factor(norm, 5.0), 1.0);   // at it
  EXPECT_DOUBLE_EQ(train::clip_factor(norm, 0.0), 1.0);   // 0: no clipping
  EXPECT_DOUBLE_EQ(train::clip_factor(norm, 1.0), 0.2);
  EXPECT_DOUBLE_EQ(train::clip_factor(std::nan(""), 1.0), 1.0);
}

TEST(TrainClip, AScaledUpdateIsTheUpdateOfTheScaledGradient) {
  // Clipping through grad_scale = clipping the buffer in place, then the plain update.
  std::vector<float> g = {0.3f, -1.7f, 2.5f, 0.0f, 1e-3f};
  const float f = 0.37f;
  std::vector<float> clipped = g;
  for (float& x : clipped) x *= f;
  std::vector<float> p = {0.5f, -1.0f, 2.0f, 0.0f, 3.0f}, q = p, m(5, 0.1f), v(5, 0.2f), mq = m,
                     vq = v;
  train::AdamWConfig config;
  config.weight_decay = 0.01;
  train::adamw_update(test_pool().host(), config, 0.01, 4, true, p.data(), g.data(), m.data(),
                      v.data(), 5, f);
  train::adamw_update(test_pool().host(), config, 0.01, 4, true, q.data(), clipped.data(),
                      mq.data(), vq.data(), 5);
  EXPECT_EQ(p, q);
  EXPECT_EQ(m, mq);
  EXPECT_EQ(v, vq);
  EXPECT_EQ(g[1], -1.7f);  // the gradient itself is left as it was
}

TEST(TrainClip, TheNormDoesNotDependOnTheThreadCount) {
  std::vector<float> big(100003);
  Rng rng(5);
  for (float& x : big) x = rng.normal();
  ThreadPool one(1), three(3);
  const std::vector<train::GradSpan> spans = {{big.data(), static_cast<int64_t>(big.size())}};
  EXPECT_EQ(train::global_norm(one.host(), spans), train::global_norm(three.host(), spans));
}

TEST(TrainSchedule, WarmsUpLinearlyThenDecaysAlongACosine) {
  train::ScheduleConfig s;
  s.warmup_steps = 10;
  s.total_steps = 110;
  s.min_lr_ratio = 0.1;
  const double peak = 2.0;
  EXPECT_DOUBLE_EQ(train::scheduled_lr(peak, s, 1), 0.2);
  EXPECT_DOUBLE_EQ(train::scheduled_lr(peak, s, 5), 1.0);
  EXPECT_DOUBLE_EQ(train::scheduled_lr(peak, s, 10), 2.0);
  // Halfway through the decay: the mean of peak and floor.
  EXPECT_NEAR(train::scheduled_lr(peak, s, 60), (2.0 + 0.2) / 2, 1e-12);
  // A quarter of the way: floor + (peak - floor) (1 + cos(pi / 4)) / 2.
  EXPECT_NEAR(train::scheduled_lr(peak, s, 35),
              0.2 + 1.8 * (1 + std::cos(std::numbers::pi / 4)) / 2, 1e-12);
  EXPECT_NEAR(train::scheduled_lr(peak, s, 110), 0.2, 1e-12);
  EXPECT_NEAR(train::scheduled_lr(peak, s, 500), 0.2, 1e-12);  // stays at the floor
  // Monotone after the warm-up.
  for (int64_t t = 11; t < 110; ++t)
    EXPECT_LE(train::scheduled_lr(peak, s, t + 1), train::scheduled_lr(peak, s, t));

  train::ScheduleConfig constant;
  constant.warmup_steps = 4;
  EXPECT_DOUBLE_EQ(train::scheduled_lr(1.0, constant, 2), 0.5);
  EXPECT_DOUBLE_EQ(train::scheduled_lr(1.0, constant, 4), 1.0);
  EXPECT_DOUBLE_EQ(train::scheduled_lr(1.0, constant, 1000), 1.0);
  train::ScheduleConfig no_warmup;
  no_warmup.total_steps = 4;
  EXPECT_NEAR(train::scheduled_lr(1.0, no_warmup, 2), 0.5, 1e-12);  // cos(pi/2): halfway
  EXPECT_NEAR(train::scheduled_lr(1.0, no_warmup, 4), 0.0, 1e-12);
}

TEST(TrainSchedule, LinearAndConstantShapes) {
  train::ScheduleConfig s;
  s.warmup_steps = 10;
  s.total_steps = 110;
  s.min_lr_ratio = 0.1;
  s.shape = train::DecayShape::kLinear;
  EXPECT_DOUBLE_EQ(train::scheduled_lr(2.0, s, 5), 1.0);  // the same warm-up
  EXPECT_NEAR(train::scheduled_lr(2.0, s, 35), 0.2 + 1.8 * 0.75, 1e-12);
  EXPECT_NEAR(train::scheduled_lr(2.0, s, 60), 0.2 + 1.8 * 0.5, 1e-12);
  EXPECT_NEAR(train::scheduled_lr(2.0, s, 110), 0.2, 1e-12);
  EXPECT_NEAR(train::scheduled_lr(2.0, s, 400), 0.2, 1e-12);
  s.shape = train::DecayShape::kConstant;
  EXPECT_DOUBLE_EQ(train::scheduled_lr(2.0, s, 5), 1.0);
  EXPECT_DOUBLE_EQ(train::scheduled_lr(2.0, s, 60), 2.0);
  EXPECT_DOUBLE_EQ(train::scheduled_lr(2.0, s, 400), 2.0);
}

}  // namespace
}  // namespace tessera::test
