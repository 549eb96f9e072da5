// Host operations of a training step and their backward passes.
#include <tessera/cpu/matmul_grad.hpp>
#include <tessera/engine/error.hpp>
#include <tessera/plugin.hpp>
#include <tessera/train/ops.hpp>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

namespace tessera::train {
namespace {

// Rows per parallel chunk: below this a row-wise op is not worth a thread.
constexpr int64_t kRowGrain = 8;

void check_head(const cpu::MatrixView& w, const char* what) {
  if (w.dtype != TS_F32 && w.dtype != TS_BF16 && w.dtype != TS_F16)
    throw Error(std::string(what) + ": the lm head is " + dtype_name(w.dtype) +
                "; expected f32, bf16 or f16");
}

}  // namespace

void rmsnorm_forward(const ts_host* host, const float* x, const float* w, double eps, int64_t rows,
                     int64_t dim, float* y, float* inv_rms) {
  sdk::parallel_for(host, rows, kRowGrain, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* xr = x + r * dim;
      float* yr = y + r * dim;
      double sum = 0;
      for (int64_t i = 0; i < dim; ++i) sum += static_cast<double>(xr[i]) * xr[i];
      const auto scale = static_cast<float>(1.0 / std::sqrt(sum / static_cast<double>(dim) + eps));
      for (int64_t i = 0; i < dim; ++i) yr[i] = xr[i] * scale * w[i];
      if (inv_rms != nullptr) inv_rms[r] = scale;
    }
  });
}

void rmsnorm_backward(const ts_host* host, const float* x, const float* w, const float* inv_rms,
                      const float* grad_y, int64_t rows, int64_t dim, float* grad_x,
                      float* grad_w) {
  // grad_w first: grad_x may overwrite grad_y.
  if (grad_w != nullptr) {
    sdk::parallel_for(host, dim, 64, [&](int64_t c0, int64_t c1) {
      for (int64_t c = c0; c < c1; ++c) {
        double s = 0;
        for (int64_t r = 0; r < rows; ++r)
          s += static_cast<double>(grad_y[r * dim + c]) * x[r * dim + c] * inv_rms[r];
        grad_w[c] += static_cast<float>(s);
      }
    });
  }
  sdk::parallel_for(host, rows, kRowGrain, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* xr = x + r * dim;
      const float* gr = grad_y + r * dim;
      float* out = grad_x + r * dim;
      const double scale = inv_rms[r];
      double dot = 0;  // (grad_y * w) . x
      for (int64_t i = 0; i < dim; ++i) dot += static_cast<double>(gr[i]) * w[i] * xr[i];
      const double k = scale * scale * scale * dot / static_cast<double>(dim);
      for (int64_t i = 0; i < dim; ++i)
        out[i] = static_cast<float>(scale * gr[i] * w[i] - k * xr[i]);
    }
  });
}

void embedding_backward(const int32_t* tokens, int64_t n_tokens, const float* grad_x, int64_t dim,
                        float* grad_table) {
  for (int64_t t = 0; t < n_tokens; ++t) {
    float* row = grad_table + static_cast<int64_t>(tokens[t]) * dim;
    const float* g = grad_x + t * dim;
    for (int64_t i = 0; i < dim; ++i) row[i] += g[i];
  }
}

void lm_head_forward(const ts_host* host, const float* h, int64_t n, const cpu::MatrixView& w,
                     float* logits) {
  check_head(w, "lm head forward");
  cpu::matmul_nt(host, h, n, w.cols, w, logits, w.rows);
}

void lm_head_backward(const ts_host* host, const float* h, const float* grad_logits, int64_t n,
                      const cpu::MatrixView& w, float* grad_h, float* grad_w) {
  check_head(w, "lm head backward");
  const int64_t vocab = w.rows, hidden = w.cols;
  // The two products of y = h W^T on the SDK's register tiles (cpu/matmul_grad.hpp): each
  // element is one sum over its inner dimension in order, independent of the thread count.
  if (grad_h != nullptr) cpu::matmul_nn(host, grad_logits, n, vocab, w, grad_h, hidden, false);
  if (grad_w != nullptr)
    cpu::matmul_tn_add(host, grad_logits, vocab, h, hidden, n, vocab, hidden, grad_w, hidden);
}

void residual_add(float* x, const float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] += y[i];
}

}  // namespace tessera::train
