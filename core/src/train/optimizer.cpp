// AdamW, clipping by global norm and the learning-rate schedule.
#include <tessera/plugin.hpp>
#include <tessera/train/optimizer.hpp>

#include <algorithm>
#include <cmath>
#include <numbers>
#include <vector>

#if defined(__AVX2__)
#include <immintrin.h>
#endif

namespace tessera::train {
namespace {

constexpr int64_t kChunk = 1 << 14;

// The constants of one step, shared by the fast path and the reference.
struct AdamWStep {
  double b1, b2, one_minus_b1, one_minus_b2, eps;
  double keep;         // 1 - lr * weight_decay, or 1
  double step_size;    // lr / (1 - beta1^step)
  double inv_sqrt_c2;  // 1 / sqrt(1 - beta2^step)
  AdamWStep(const AdamWConfig& config, double lr, int64_t step, bool decay)
      : b1(config.beta1),
        b2(config.beta2),
        one_minus_b1(1.0 - config.beta1),
        one_minus_b2(1.0 - config.beta2),
        eps(config.eps),
        keep(decay ? 1.0 - lr * config.weight_decay : 1.0),
        step_size(lr / (1.0 - std::pow(config.beta1, static_cast<double>(step)))),
        inv_sqrt_c2(1.0 / std::sqrt(1.0 - std::pow(config.beta2, static_cast<double>(step)))) {}
};

// Each a * b + c is an explicit fma, so that the compiler's contraction cannot make the two
// paths round differently.
void adamw_scalar(const AdamWStep& k, float scale, float* param, const float* grad, float* m,
                  float* v, int64_t i0, int64_t i1) {
  for (int64_t i = i0; i < i1; ++i) {
    const double g = static_cast<double>(grad[i] * scale);
    m[i] = static_cast<float>(std::fma(k.b1, static_cast<double>(m[i]), k.one_minus_b1 * g));
    v[i] = static_cast<float>(std::fma(k.b2, static_cast<double>(v[i]), k.one_minus_b2 * g * g));
    // From the moments as stored (f32).
    const double denom = std::fma(std::sqrt(static_cast<double>(v[i])), k.inv_sqrt_c2, k.eps);
    const double step = k.step_size * static_cast<double>(m[i]) / denom;
    param[i] = static_cast<float>(std::fma(static_cast<double>(param[i]), k.keep, -step));
  }
}

#if defined(__AVX2__) && defined(__FMA__)
// adamw_scalar four elements at a time: the same operations in the same order, each rounded
// as there.
void adamw_avx2(const AdamWStep& k, float scale, float* param, const float* grad, float* m,
                float* v, int64_t i0, int64_t i1) {
  const __m256d b1 = _mm256_set1_pd(k.b1), b2 = _mm256_set1_pd(k.b2);
  const __m256d c1 = _mm256_set1_pd(k.one_minus_b1), c2 = _mm256_set1_pd(k.one_minus_b2);
  const __m256d eps = _mm256_set1_pd(k.eps), keep = _mm256_set1_pd(k.keep);
  const __m256d step = _mm256_set1_pd(k.step_size), inv_c2 = _mm256_set1_pd(k.inv_sqrt_c2);
  const __m128 s = _mm_set1_ps(scale);
  int64_t i = i0;
  for (; i + 4 <= i1; i += 4) {
    const __m256d g = _mm256_cvtps_pd(_mm_mul_ps(_mm_loadu_ps(grad + i), s));
    const __m128 m32 = _mm256_cvtpd_ps(
        _mm256_fmadd_pd(b1, _mm256_cvtps_pd(_mm_loadu_ps(m + i)), _mm256_mul_pd(c1, g)));
    const __m128 v32 = _mm256_cvtpd_ps(_mm256_fmadd_pd(b2, _mm256_cvtps_pd(_mm_loadu_ps(v + i)),
                                                       _mm256_mul_pd(_mm256_mul_pd(c2, g), g)));
    _mm_storeu_ps(m + i, m32);
    _mm_storeu_ps(v + i, v32);
    const __m256d denom = _mm256_fmadd_pd(_mm256_sqrt_pd(_mm256_cvtps_pd(v32)), inv_c2, eps);
    const __m256d update = _mm256_div_pd(_mm256_mul_pd(step, _mm256_cvtps_pd(m32)), denom);
    const __m256d p = _mm256_fmsub_pd(_mm256_cvtps_pd(_mm_loadu_ps(param + i)), keep, update);
    _mm_storeu_ps(param + i, _mm256_cvtpd_ps(p));
  }
  adamw_scalar(k, scale, param, grad, m, v, i, i1);
}
#endif

}  // namespace

void adamw_update(const ts_host* host, const AdamWConfig& config, double lr, int64_t step,
                  bool decay, float* param, const float* grad, float* m, float* v, int64_t n,
                  float grad_scale) {
  const AdamWStep k(config, lr, step, decay);
  sdk::parallel_for(host, n, kChunk, [&](int64_t i0, int64_t i1) {
#if defined(__AVX2__) && defined(__FMA__)
    adamw_avx2(k, grad_scale, param, grad, m, v, i0, i1);
#else
    adamw_scalar(k, grad_scale, param, grad, m, v, i0, i1);
#endif
  });
}

void adamw_update_reference(const AdamWConfig& config, double lr, int64_t step, bool decay,
                            float* param, const float* grad, float* m, float* v, int64_t n,
                            float grad_scale) {
  adamw_scalar(AdamWStep(config, lr, step, decay), grad_scale, param, grad, m, v, 0, n);
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
        // Four running sums (element i into sum i % 4), added at the end: the order is fixed
        // by the chunk alone.
        double s[4] = {0, 0, 0, 0};
        const int64_t begin = c * kChunk, end = std::min(g.n, (c + 1) * kChunk);
        int64_t i = begin;
        for (; i + 4 <= end; i += 4)
          for (int j = 0; j < 4; ++j) s[j] += static_cast<double>(g.data[i + j]) * g.data[i + j];
        for (int j = 0; i < end; ++i, ++j) s[j] += static_cast<double>(g.data[i]) * g.data[i];
        parts[static_cast<size_t>(c)] = (s[0] + s[1]) + (s[2] + s[3]);
      }
    });
    for (double p : parts) total += p;
  }
  return std::sqrt(total);
}

double clip_factor(double norm, double max_norm) {
  if (!(max_norm > 0) || !(norm > max_norm)) return 1.0;
  return max_norm / norm;
}

}  // namespace tessera::train
