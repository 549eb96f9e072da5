#include <tessera/cpu/matmul.hpp>
#include <tessera/cpu/matmul_grad.hpp>
#include <tessera/cpu/ops.hpp>
#include <tessera/engine/error.hpp>
#include <tessera/puzzle/block_init.hpp>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>

namespace tessera::puzzle {

namespace {

size_t sz(int64_t n) {
  return static_cast<size_t>(n);
}

// In place: the lower triangle of the symmetric positive definite a [n, n] becomes L with
// a = L L^T. Returns false at the first pivot that is not positive.
bool cholesky(std::vector<double>& a, int64_t n) {
  for (int64_t j = 0; j < n; ++j) {
    double d = a[sz(j * n + j)];
    for (int64_t k = 0; k < j; ++k) d -= a[sz(j * n + k)] * a[sz(j * n + k)];
    if (!(d > 0.0) || !std::isfinite(d)) return false;
    const double l = std::sqrt(d);
    a[sz(j * n + j)] = l;
    for (int64_t i = j + 1; i < n; ++i) {
      double s = a[sz(i * n + j)];
      for (int64_t k = 0; k < j; ++k) s -= a[sz(i * n + k)] * a[sz(j * n + k)];
      a[sz(i * n + j)] = s / l;
    }
  }
  return true;
}

// Solves L L^T z = b in place (L from cholesky).
void cholesky_solve(const std::vector<double>& l, int64_t n, double* b) {
  for (int64_t i = 0; i < n; ++i) {
    double s = b[i];
    for (int64_t k = 0; k < i; ++k) s -= l[sz(i * n + k)] * b[k];
    b[i] = s / l[sz(i * n + i)];
  }
  for (int64_t i = n - 1; i >= 0; --i) {
    double s = b[i];
    for (int64_t k = i + 1; k < n; ++k) s -= l[sz(k * n + i)] * b[k];
    b[i] = s / l[sz(i * n + i)];
  }
}

}  // namespace

LinearFitStats::LinearFitStats(int64_t hidden)
    : hidden_(hidden), xx_(sz(hidden * hidden)), yx_(sz(hidden * hidden)) {}

void LinearFitStats::add(const ts_host* host, const float* x, const float* y, int64_t n) {
  if (n <= 0) return;
  const int64_t h = hidden_;
  // The products of this call in f32 (the register-tile kernels), summed into the double
  // totals: a call is at most a batch of tokens, so f32 holds its sums well.
  scratch_.assign(sz(2 * h * h), 0.0f);
  cpu::matmul_tn_add(host, x, h, x, h, n, h, h, scratch_.data(), h);
  cpu::matmul_tn_add(host, y, h, x, h, n, h, h, scratch_.data() + h * h, h);
  for (int64_t i = 0; i < h * h; ++i) {
    xx_[sz(i)] += scratch_[sz(i)];
    yx_[sz(i)] += scratch_[sz(h * h + i)];
  }
  double yy = 0;
  for (int64_t i = 0; i < n * h; ++i) yy += static_cast<double>(y[i]) * y[i];
  yy_ += yy;
  tokens_ += n;
}

LinearFit least_squares_linear(const LinearFitStats& stats, double ridge) {
  const int64_t h = stats.hidden();
  if (stats.tokens() <= 0 || h <= 0)
    throw Error("least squares: no calibration tokens to fit the linear block on");
  std::vector<double> g = stats.xx();
  double trace = 0;
  for (int64_t i = 0; i < h; ++i) trace += g[sz(i * h + i)];
  const double lambda = ridge * trace / static_cast<double>(h);
  for (int64_t i = 0; i < h; ++i) g[sz(i * h + i)] += lambda;
  if (!cholesky(g, h)) {
    throw Error("least squares: the calibration inputs' Gram matrix (" +
                std::to_string(stats.tokens()) + " tokens, hidden " + std::to_string(h) +
                ") is not positive definite even with ridge " + std::to_string(ridge) +
                "; use more calibration tokens or a larger ridge");
  }
  // G W^T = (Y^T X)^T: row r of W solves G w_r = (Y^T X)[r, :] (G symmetric).
  LinearFit fit;
  fit.weight.resize(sz(h * h));
  std::vector<double> w(sz(h * h));
  for (int64_t r = 0; r < h; ++r) {
    double* row = w.data() + r * h;
    std::copy_n(stats.yx().data() + r * h, h, row);
    cholesky_solve(g, h, row);
    for (int64_t c = 0; c < h; ++c) fit.weight[sz(r * h + c)] = static_cast<float>(row[c]);
  }
  // sum |W x - y|^2 = tr(W X^T X W^T) - 2 tr(W (Y^T X)^T) + sum |y|^2, with the f32 weights.
  const std::vector<double>& xx = stats.xx();
  const std::vector<double>& yx = stats.yx();
  double quad = 0, cross = 0;
  std::vector<double> wg(sz(h));
  for (int64_t r = 0; r < h; ++r) {
    const float* wr = fit.weight.data() + r * h;
    std::fill(wg.begin(), wg.end(), 0.0);
    for (int64_t k = 0; k < h; ++k) {
      const double a = wr[k];
      const double* xk = xx.data() + k * h;
      for (int64_t c = 0; c < h; ++c) wg[sz(c)] += a * xk[c];
    }
    for (int64_t c = 0; c < h; ++c) {
      quad += wg[sz(c)] * wr[c];
      cross += static_cast<double>(wr[c]) * yx[sz(r * h + c)];
    }
  }
  const double residual = std::max(0.0, quad - 2.0 * cross + stats.yy());
  fit.nmse = stats.yy() > 0 ? residual / stats.yy() : 0.0;
  return fit;
}

ChannelStats::ChannelStats(int64_t intermediate) : abs_sum_(sz(intermediate)) {}

void ChannelStats::add(const ts_host* host, const float* x, int64_t n, int64_t hidden,
                       const float* gate, const float* up) {
  if (n <= 0) return;
  const int64_t inter = static_cast<int64_t>(abs_sum_.size());
  g_.resize(sz(n * inter));
  u_.resize(sz(n * inter));
  const cpu::MatrixView wg{gate, TS_F32, inter, hidden, hidden};
  const cpu::MatrixView wu{up, TS_F32, inter, hidden, hidden};
  cpu::matmul_nt(host, x, n, hidden, wg, g_.data(), inter);
  cpu::matmul_nt(host, x, n, hidden, wu, u_.data(), inter);
  for (int64_t t = 0; t < n; ++t) {
    const float* gt = g_.data() + t * inter;
    const float* ut = u_.data() + t * inter;
    for (int64_t i = 0; i < inter; ++i) {
      abs_sum_[sz(i)] += std::fabs(static_cast<double>(cpu::silu(gt[i]) * ut[i]));
    }
  }
  tokens_ += n;
}

std::vector<double> channel_contributions(const ChannelStats& stats, const float* down,
                                          int64_t hidden) {
  const int64_t inter = static_cast<int64_t>(stats.abs_sum().size());
  if (stats.tokens() <= 0) throw Error("channel contributions: no calibration tokens were seen");
  std::vector<double> norm2(sz(inter), 0.0);
  for (int64_t r = 0; r < hidden; ++r) {
    const float* row = down + r * inter;
    for (int64_t i = 0; i < inter; ++i) norm2[sz(i)] += static_cast<double>(row[i]) * row[i];
  }
  std::vector<double> c(sz(inter));
  for (int64_t i = 0; i < inter; ++i) {
    c[sz(i)] =
        stats.abs_sum()[sz(i)] / static_cast<double>(stats.tokens()) * std::sqrt(norm2[sz(i)]);
  }
  return c;
}

std::vector<int32_t> top_channels(const std::vector<double>& contributions, int64_t width) {
  const int64_t n = static_cast<int64_t>(contributions.size());
  if (width <= 0 || width > n) {
    throw Error("pruning: cannot keep " + std::to_string(width) + " of " + std::to_string(n) +
                " channels; expected a width in [1, " + std::to_string(n) + "]");
  }
  std::vector<int32_t> order(sz(n));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) {
    return contributions[sz(a)] > contributions[sz(b)];
  });
  order.resize(sz(width));
  std::sort(order.begin(), order.end());
  return order;
}

SwigluWeights prune_swiglu(const float* gate, const float* up, const float* down, int64_t hidden,
                           int64_t intermediate, const std::vector<int32_t>& channels) {
  const int64_t w = static_cast<int64_t>(channels.size());
  for (size_t k = 0; k < channels.size(); ++k) {
    if (channels[k] < 0 || channels[k] >= intermediate || (k > 0 && channels[k] <= channels[k - 1]))
      throw Error("pruning: channel list must be ascending, distinct and below " +
                  std::to_string(intermediate) + "; entry " + std::to_string(k) + " is " +
                  std::to_string(channels[k]));
  }
  SwigluWeights out;
  out.gate.resize(sz(w * hidden));
  out.up.resize(sz(w * hidden));
  out.down.resize(sz(hidden * w));
  for (int64_t k = 0; k < w; ++k) {
    const int64_t c = channels[sz(k)];
    std::copy_n(gate + c * hidden, hidden, out.gate.data() + k * hidden);
    std::copy_n(up + c * hidden, hidden, out.up.data() + k * hidden);
  }
  for (int64_t r = 0; r < hidden; ++r) {
    for (int64_t k = 0; k < w; ++k)
      out.down[sz(r * w + k)] = down[r * intermediate + channels[sz(k)]];
  }
  return out;
}

std::vector<float> mean_pool_heads(const float* w, int64_t kv_heads, int64_t head_dim,
                                   int64_t hidden, int64_t new_kv_heads) {
  if (new_kv_heads <= 0 || kv_heads % new_kv_heads != 0) {
    throw Error("mean-pooling KV heads: " + std::to_string(new_kv_heads) +
                " heads do not divide the parent's " + std::to_string(kv_heads));
  }
  const int64_t group = kv_heads / new_kv_heads;
  const int64_t row = head_dim * hidden;  // one head's block of rows
  std::vector<float> out(sz(new_kv_heads * row));
  for (int64_t j = 0; j < new_kv_heads; ++j) {
    for (int64_t e = 0; e < row; ++e) {
      double s = 0;
      for (int64_t g = 0; g < group; ++g) s += w[(j * group + g) * row + e];
      out[sz(j * row + e)] = static_cast<float>(s / static_cast<double>(group));
    }
  }
  return out;
}

}  // namespace tessera::puzzle
