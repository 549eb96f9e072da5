// AdamW, clipping by global norm and the learning-rate schedule.
#include <tessera/plugin.hpp>
#include <tessera/train/optimizer.hpp>

#include <algorithm>
#include <cmath>
#include <numbers>

namespace tessera::train {
namespace {

constexpr int64_t kChunk = 1 << 14;

}  // namespace

void adamw_update(const ts_host* host, const AdamWConfig& config, double lr, int64_t step,
                  bool decay, float* param, const float* grad, float* m, float* v, int64_t n) {
  const double b1 = config.beta1, b2 = config.beta2;
  const double correction1 = 1.0 - std::pow(b1, static_cast<double>(step));
  const double correction2 = 1.0 - std::pow(b2, static_cast<double>(step));
  const double keep = decay ? 1.0 - lr * config.weight_decay : 1.0;
  sdk::parallel_for(host, n, kChunk, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const double g = grad[i];
      const double mi = b1 * m[i] + (1.0 - b1) * g;
      const double vi = b2 * v[i] + (1.0 - b2) * g * g;
      m[i] = static_cast<float>(mi);
      v[i] = static_cast<float>(vi);
      // The moments as stored (f32): a resumed run reads back exactly these.
      const double m_hat = static_cast<double>(m[i]) / correction1;
      const double v_hat = static_cast<double>(v[i]) / correction2;
      const double p = static_cast<double>(param[i]) * keep;
      param[i] = static_cast<float>(p - lr * m_hat / (std::sqrt(v_hat) + config.eps));
    }
  });
}

double scheduled_lr(double peak_lr, const ScheduleConfig& schedule, int64_t step) {
  const int64_t warmup = std::max<int64_t>(schedule.warmup_steps, 0);
  if (warmup > 0 && step <= warmup)
    return peak_lr * static_cast<double>(step) / static_cast<double>(warmup);
  if (schedule.total_steps <= warmup || schedule.shape == DecayShape::kConstant) return peak_lr;
  const double progress = std::clamp(
      static_cast<double>(step - warmup) / static_cast<double>(schedule.total_steps - warmup), 0.0,
      1.0);
  const double min_lr = peak_lr * schedule.min_lr_ratio;
  if (schedule.shape == DecayShape::kLinear) return min_lr + (peak_lr - min_lr) * (1.0 - progress);
  return min_lr + (peak_lr - min_lr) * 0.5 * (1.0 + std::cos(std::numbers::pi * progress));
}

double global_norm(const ts_host* host, const std::vector<GradSpan>& grads) {
  double total = 0;
  for (const GradSpan& g : grads) {
    const int64_t chunks = (g.n + kChunk - 1) / kChunk;
    std::vector<double> parts(static_cast<size_t>(chunks), 0.0);
    sdk::parallel_for(host, chunks, 1, [&](int64_t c0, int64_t c1) {
      for (int64_t c = c0; c < c1; ++c) {
        double s = 0;
        for (int64_t i = c * kChunk; i < std::min(g.n, (c + 1) * kChunk); ++i)
          s += static_cast<double>(g.data[i]) * g.data[i];
        parts[static_cast<size_t>(c)] = s;
      }
    });
    for (double p : parts) total += p;
  }
  return std::sqrt(total);
}

double clip_by_global_norm(const ts_host* host, const std::vector<GradSpan>& grads, double norm,
                           double max_norm) {
  if (!(max_norm > 0) || !(norm > max_norm)) return 1.0;
  const double factor = max_norm / norm;
  const auto f = static_cast<float>(factor);
  for (const GradSpan& g : grads)
    sdk::parallel_for(host, g.n, kChunk, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) g.data[i] *= f;
    });
  return factor;
}

}  // namespace tessera::train
