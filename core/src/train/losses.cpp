// Training losses and their gradients.
#include <tessera/cpu/simd.hpp>
#include <tessera/engine/error.hpp>
#include <tessera/plugin.hpp>
#include <tessera/train/losses.hpp>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

namespace tessera::train {
namespace {

constexpr int64_t kRowGrain = 4;
// Elements per partial sum of the element-wise losses: fixed, so that the sum does not
// depend on the thread count.
constexpr int64_t kChunk = 4096;

// log sum_v exp(z_v / t) of one row, with the max taken out; also returns the max.
double log_sum_exp(const float* z, int64_t n, double t, double* max_out) {
  double mx = -INFINITY;
  for (int64_t v = 0; v < n; ++v) mx = std::max(mx, static_cast<double>(z[v]) / t);
  double s = 0;
  for (int64_t v = 0; v < n; ++v) s += std::exp(static_cast<double>(z[v]) / t - mx);
  *max_out = mx;
  return mx + std::log(s);
}

// g[v] = scale * exp(z[v] - lse) over a row: the softmax times scale, in f32 (the gradient's
// precision). The exponent is taken in double and rounded once; the exponential is the SDK's
// vector exp (relative error about 2e-7) where AVX2 is there, libm's elsewhere and in the tail.
void scaled_softmax(const float* z, int64_t n, double lse, double scale, float* g) {
  int64_t v = 0;
#if TESSERA_CPU_AVX2
  const __m256d lse_v = _mm256_set1_pd(lse);
  const __m256 scale_v = _mm256_set1_ps(static_cast<float>(scale));
  for (; v + 8 <= n; v += 8) {
    const __m128 lo = _mm256_cvtpd_ps(_mm256_sub_pd(_mm256_cvtps_pd(_mm_loadu_ps(z + v)), lse_v));
    const __m128 hi =
        _mm256_cvtpd_ps(_mm256_sub_pd(_mm256_cvtps_pd(_mm_loadu_ps(z + v + 4)), lse_v));
    const __m256 x = _mm256_insertf128_ps(_mm256_castps128_ps256(lo), hi, 1);
    _mm256_storeu_ps(g + v, _mm256_mul_ps(scale_v, cpu::exp8(x)));
  }
#endif
  for (; v < n; ++v) g[v] = static_cast<float>(scale * std::exp(static_cast<double>(z[v]) - lse));
}

double sum_in_order(const std::vector<double>& parts) {
  double s = 0;
  for (double p : parts) s += p;
  return s;
}

}  // namespace

double cross_entropy(const ts_host* host, const float* logits, int64_t rows, int64_t vocab,
                     const int32_t* targets, int32_t ignore_index, float* grad, double scale,
                     int64_t* counted) {
  for (int64_t r = 0; r < rows; ++r)
    if (targets[r] != ignore_index && (targets[r] < 0 || targets[r] >= vocab))
      throw Error("cross_entropy: target " + std::to_string(targets[r]) + " of row " +
                  std::to_string(r) + " is outside [0, " + std::to_string(vocab) +
                  ") and is not the ignore index " + std::to_string(ignore_index));
  std::vector<double> terms(static_cast<size_t>(rows), 0.0);
  sdk::parallel_for(host, rows, kRowGrain, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* z = logits + r * vocab;
      float* g = grad == nullptr ? nullptr : grad + r * vocab;
      const int32_t target = targets[r];
      if (target == ignore_index) {
        if (g != nullptr) std::fill(g, g + vocab, 0.0f);
        continue;
      }
      double mx = 0;
      const double lse = log_sum_exp(z, vocab, 1.0, &mx);
      terms[static_cast<size_t>(r)] = lse - z[target];
      if (g == nullptr) continue;
      scaled_softmax(z, vocab, lse, scale, g);
      g[target] = static_cast<float>(g[target] - scale);
    }
  });
  if (counted != nullptr) {
    *counted = 0;
    for (int64_t r = 0; r < rows; ++r) *counted += targets[r] != ignore_index ? 1 : 0;
  }
  return sum_in_order(terms);
}

double kl_divergence(const ts_host* host, const float* student, const float* teacher, int64_t rows,
                     int64_t vocab, double temperature, float* grad, double scale) {
  if (!(temperature > 0))
    throw Error("kl_divergence: temperature " + std::to_string(temperature) +
                "; expected a positive temperature");
  const double t = temperature;
  std::vector<double> terms(static_cast<size_t>(rows), 0.0);
  sdk::parallel_for(host, rows, kRowGrain, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* s = student + r * vocab;
      const float* p_logits = teacher + r * vocab;
      double mx = 0;
      const double lse_p = log_sum_exp(p_logits, vocab, t, &mx);
      const double lse_q = log_sum_exp(s, vocab, t, &mx);
      double kl = 0;
      for (int64_t v = 0; v < vocab; ++v) {
        const double log_p = static_cast<double>(p_logits[v]) / t - lse_p;
        const double log_q = static_cast<double>(s[v]) / t - lse_q;
        kl += std::exp(log_p) * (log_p - log_q);
      }
      terms[static_cast<size_t>(r)] = t * t * kl;
      if (grad == nullptr) continue;
      float* g = grad + r * vocab;
      for (int64_t v = 0; v < vocab; ++v) {
        const double p = std::exp(static_cast<double>(p_logits[v]) / t - lse_p);
        const double q = std::exp(static_cast<double>(s[v]) / t - lse_q);
        g[v] = static_cast<float>(scale * t * (q - p));
      }
    }
  });
  return sum_in_order(terms);
}

double cosine_distance(const ts_host* host, const float* a, const float* b, int64_t rows,
                       int64_t dim, float* grad_a, double scale) {
  constexpr double kFloor = 1e-12;
  std::vector<double> terms(static_cast<size_t>(rows), 0.0);
  sdk::parallel_for(host, rows, kRowGrain, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* ar = a + r * dim;
      const float* br = b + r * dim;
      double aa = 0, bb = 0, ab = 0;
      for (int64_t i = 0; i < dim; ++i) {
        aa += static_cast<double>(ar[i]) * ar[i];
        bb += static_cast<double>(br[i]) * br[i];
        ab += static_cast<double>(ar[i]) * br[i];
      }
      const double raw_na = std::sqrt(aa);
      const double na = std::max(raw_na, kFloor), nb = std::max(std::sqrt(bb), kFloor);
      const double cos = ab / (na * nb);
      terms[static_cast<size_t>(r)] = 1.0 - cos;
      if (grad_a == nullptr) continue;
      // d(1 - cos)/da = -(b / (na nb) - cos a / na^2); the second term vanishes where the
      // norm of a is floored (constant there).
      const double k_a = raw_na > kFloor ? cos / (na * na) : 0.0;
      float* g = grad_a + r * dim;
      for (int64_t i = 0; i < dim; ++i)
        g[i] += static_cast<float>(scale * (k_a * ar[i] - br[i] / (na * nb)));
    }
  });
  return sum_in_order(terms);
}

double squared_error(const float* child, const float* parent, int64_t n, float* grad,
                     double scale) {
  std::vector<double> parts(static_cast<size_t>((n + kChunk - 1) / kChunk), 0.0);
  for (int64_t c = 0; c < n; c += kChunk) {
    double s = 0;
    for (int64_t i = c; i < std::min(n, c + kChunk); ++i) {
      const double d = static_cast<double>(child[i]) - parent[i];
      s += d * d;
      if (grad != nullptr) grad[i] = static_cast<float>(scale * 2.0 * d);
    }
    parts[static_cast<size_t>(c / kChunk)] = s;
  }
  return sum_in_order(parts);
}

double squared_norm(const float* parent, int64_t n) {
  double s = 0;
  for (int64_t i = 0; i < n; ++i) s += static_cast<double>(parent[i]) * parent[i];
  return s;
}

double normalised_mse(const float* child, const float* parent, int64_t n, float* grad,
                      double scale) {
  const double norm = squared_norm(parent, n);
  if (!(norm > 0))
    throw Error(
        "normalised_mse: the parent's output is all zeros; MSE(parent, 0) is 0 and "
        "cannot normalise");
  return squared_error(child, parent, n, grad, scale / norm) / norm;
}

}  // namespace tessera::train
