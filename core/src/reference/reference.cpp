// Naive reference implementations (see reference.hpp): plain loops, double
// accumulation, no threads. Clarity over speed; these define the semantics.
#include <tessera/reference/reference.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

namespace tessera::reference {

namespace {

size_t idx(int64_t i) {
  return static_cast<size_t>(i);
}

}  // namespace

void rmsnorm(const float* x, const float* w, double eps, int64_t n_rows, int64_t dim, float* y) {
  for (int64_t r = 0; r < n_rows; ++r) {
    const float* xr = x + r * dim;
    double sum_sq = 0.0;
    for (int64_t i = 0; i < dim; ++i) sum_sq += static_cast<double>(xr[i]) * xr[i];
    const double inv = 1.0 / std::sqrt(sum_sq / static_cast<double>(dim) + eps);
    for (int64_t i = 0; i < dim; ++i)
      y[r * dim + i] = static_cast<float>(static_cast<double>(xr[i]) * inv * w[i]);
  }
}

void matmul_nt(const float* x, const float* w, int64_t m, int64_t n, int64_t k, float* y) {
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      double acc = 0.0;
      for (int64_t c = 0; c < k; ++c)
        acc += static_cast<double>(x[i * k + c]) * static_cast<double>(w[j * k + c]);
      y[i * n + j] = static_cast<float>(acc);
    }
  }
}

void rope(float* v, int64_t n_heads, int64_t head_dim, int64_t position, double theta) {
  const int64_t half = head_dim / 2;
  for (int64_t h = 0; h < n_heads; ++h) {
    float* head = v + h * head_dim;
    for (int64_t i = 0; i < half; ++i) {
      const double angle =
          static_cast<double>(position) *
          std::pow(theta, -2.0 * static_cast<double>(i) / static_cast<double>(head_dim));
      const double c = std::cos(angle), s = std::sin(angle);
      const double a = head[i], b = head[i + half];
      head[i] = static_cast<float>(a * c - b * s);
      head[i + half] = static_cast<float>(b * c + a * s);
    }
  }
}

std::vector<double> rope_inv_freq(int64_t head_dim, double theta, const RopeScaling& scaling) {
  if (scaling.enabled() && scaling.type != "llama3")
    throw std::invalid_argument("reference::rope_inv_freq: rope scaling type '" + scaling.type +
                                "' is not known; expected \"llama3\"");
  std::vector<double> inv_freq(idx(head_dim / 2));
  const double pi = std::acos(-1.0);
  const double context = scaling.original_max_position_embeddings;
  for (int64_t i = 0; i < head_dim / 2; ++i) {
    double f = std::pow(theta, -2.0 * static_cast<double>(i) / static_cast<double>(head_dim));
    if (scaling.enabled()) {
      const double wavelength = 2.0 * pi / f;
      if (wavelength > context / scaling.low_freq_factor) {
        f = f / scaling.factor;
      } else if (wavelength >= context / scaling.high_freq_factor) {
        const double smooth = (context / wavelength - scaling.low_freq_factor) /
                              (scaling.high_freq_factor - scaling.low_freq_factor);
        f = (1.0 - smooth) * (f / scaling.factor) + smooth * f;
      }
    }
    inv_freq[idx(i)] = f;
  }
  return inv_freq;
}

void rope(float* v, int64_t n_heads, int64_t head_dim, int64_t position,
          const std::vector<double>& inv_freq) {
  const int64_t half = head_dim / 2;
  for (int64_t h = 0; h < n_heads; ++h) {
    float* head = v + h * head_dim;
    for (int64_t i = 0; i < half; ++i) {
      const double angle = static_cast<double>(position) * inv_freq[idx(i)];
      const double c = std::cos(angle), s = std::sin(angle);
      const double a = head[i], b = head[i + half];
      head[i] = static_cast<float>(a * c - b * s);
      head[i + half] = static_cast<float>(b * c + a * s);
    }
  }
}

void swiglu(const float* x, const float* gate, const float* up, const float* down, int64_t n_tokens,
            int64_t hidden, int64_t inter, float* y) {
  std::vector<float> g(idx(n_tokens * inter)), u(idx(n_tokens * inter));
  matmul_nt(x, gate, n_tokens, inter, hidden, g.data());
  matmul_nt(x, up, n_tokens, inter, hidden, u.data());
  for (size_t i = 0; i < g.size(); ++i) {
    const double gv = g[i];
    g[i] = static_cast<float>(gv / (1.0 + std::exp(-gv)) * u[i]);
  }
  matmul_nt(g.data(), down, n_tokens, hidden, inter, y);
}

void gqa_attention(const GqaShape& shape, const GqaWeights& w, const float* x, int64_t n_new,
                   const int32_t* positions, const uint8_t* tree_mask, SequenceKv& kv, float* y) {
  gqa_attention(shape, RopeScaling{}, w, x, n_new, positions, tree_mask, kv, y);
}

void gqa_attention(const GqaShape& shape, const RopeScaling& rope_scaling, const GqaWeights& w,
                   const float* x, int64_t n_new, const int32_t* positions,
                   const uint8_t* tree_mask, SequenceKv& kv, float* y) {
  const int64_t hidden = shape.hidden, n_heads = shape.n_heads, kv_heads = shape.kv_heads,
                hd = shape.head_dim;
  if (n_heads <= 0 || kv_heads <= 0 || hd <= 0 || n_heads % kv_heads != 0 || hd % 2 != 0)
    throw std::invalid_argument(
        "reference::gqa_attention: bad shape (num_heads, kv_heads, "
        "head_dim) = (" +
        std::to_string(n_heads) + ", " + std::to_string(kv_heads) + ", " + std::to_string(hd) +
        ")");
  const int64_t q_width = n_heads * hd, kv_width = kv_heads * hd;
  const int64_t group = n_heads / kv_heads;

  std::vector<float> q(idx(n_new * q_width)), k(idx(n_new * kv_width)), v(idx(n_new * kv_width));
  matmul_nt(x, w.q, n_new, q_width, hidden, q.data());
  matmul_nt(x, w.k, n_new, kv_width, hidden, k.data());
  matmul_nt(x, w.v, n_new, kv_width, hidden, v.data());
  const std::vector<double> inv_freq = rope_inv_freq(hd, shape.rope_theta, rope_scaling);
  for (int64_t t = 0; t < n_new; ++t) {
    rope(q.data() + t * q_width, n_heads, hd, positions[t], inv_freq);
    rope(k.data() + t * kv_width, kv_heads, hd, positions[t], inv_freq);
  }

  // Append the new rows to the sequence's cache.
  const int64_t cached = kv.rows;
  kv.k.resize(idx((cached + n_new) * kv_width));
  kv.v.resize(idx((cached + n_new) * kv_width));
  for (int64_t i = 0; i < n_new * kv_width; ++i) {
    kv.k[idx(cached * kv_width + i)] = k[idx(i)];
    kv.v[idx(cached * kv_width + i)] = v[idx(i)];
  }
  kv.rows = cached + n_new;

  const double scale = 1.0 / std::sqrt(static_cast<double>(hd));
  std::vector<float> attn(idx(n_new * q_width), 0.0f);
  std::vector<double> scores(idx(cached + n_new));
  std::vector<char> visible(idx(cached + n_new));
  for (int64_t i = 0; i < n_new; ++i) {
    for (int64_t h = 0; h < n_heads; ++h) {
      const int64_t kvh = h / group;
      const float* qi = q.data() + i * q_width + h * hd;
      double max_score = -std::numeric_limits<double>::infinity();
      for (int64_t r = 0; r < cached + n_new; ++r) {
        const int64_t j = r - cached;  // index among the new tokens, < 0 for cached rows
        bool vis = true;
        if (j >= 0) vis = tree_mask != nullptr ? tree_mask[i * n_new + j] != 0 : j <= i;
        visible[idx(r)] = vis;
        if (!vis) continue;
        double s = 0.0;
        for (int64_t d = 0; d < hd; ++d)
          s += static_cast<double>(qi[d]) * kv.k[idx(r * kv_width + kvh * hd + d)];
        scores[idx(r)] = s * scale;
        if (scores[idx(r)] > max_score) max_score = scores[idx(r)];
      }
      double total = 0.0;
      for (int64_t r = 0; r < cached + n_new; ++r) {
        if (!visible[idx(r)]) continue;
        scores[idx(r)] = std::exp(scores[idx(r)] - max_score);
        total += scores[idx(r)];
      }
      if (total == 0.0) continue;  // nothing visible: the head contributes zeros
      for (int64_t d = 0; d < hd; ++d) {
        double acc = 0.0;
        for (int64_t r = 0; r < cached + n_new; ++r)
          if (visible[idx(r)]) acc += scores[idx(r)] * kv.v[idx(r * kv_width + kvh * hd + d)];
        attn[idx(i * q_width + h * hd + d)] = static_cast<float>(acc / total);
      }
    }
  }
  matmul_nt(attn.data(), w.o, n_new, hidden, q_width, y);
}

// ------------------------------------------------------------- training (f64)

void linear_f64(const double* x, const double* w, int64_t m, int64_t n, int64_t k, double* y) {
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double acc = 0.0;
      for (int64_t c = 0; c < k; ++c) acc += x[i * k + c] * w[j * k + c];
      y[i * n + j] = acc;
    }
}

void linear_backward(const double* x, const double* w, const double* dy, int64_t m, int64_t n,
                     int64_t k, double* dx, double* dw) {
  if (dx != nullptr)
    for (int64_t i = 0; i < m; ++i)
      for (int64_t c = 0; c < k; ++c) {
        double acc = 0.0;
        for (int64_t j = 0; j < n; ++j) acc += dy[i * n + j] * w[j * k + c];
        dx[i * k + c] = acc;
      }
  if (dw != nullptr)
    for (int64_t j = 0; j < n; ++j)
      for (int64_t c = 0; c < k; ++c) {
        double acc = 0.0;
        for (int64_t i = 0; i < m; ++i) acc += dy[i * n + j] * x[i * k + c];
        dw[j * k + c] = acc;
      }
}

namespace {

double sigmoid(double v) {
  return 1.0 / (1.0 + std::exp(-v));
}

}  // namespace

void swiglu_f64(const double* x, const double* gate, const double* up, const double* down,
                int64_t n_tokens, int64_t hidden, int64_t inter, double* y) {
  std::vector<double> g(idx(n_tokens * inter)), u(idx(n_tokens * inter));
  linear_f64(x, gate, n_tokens, inter, hidden, g.data());
  linear_f64(x, up, n_tokens, inter, hidden, u.data());
  for (size_t i = 0; i < g.size(); ++i) g[i] = g[i] * sigmoid(g[i]) * u[i];
  linear_f64(g.data(), down, n_tokens, hidden, inter, y);
}

void swiglu_backward(const double* x, const double* gate, const double* up, const double* down,
                     const double* dy, int64_t n_tokens, int64_t hidden, int64_t inter,
                     const SwigluGrads& grads) {
  const auto size = idx(n_tokens * inter);
  std::vector<double> g(size), u(size), h(size), dh(size), dg(size), du(size);
  linear_f64(x, gate, n_tokens, inter, hidden, g.data());
  linear_f64(x, up, n_tokens, inter, hidden, u.data());
  for (size_t i = 0; i < size; ++i) h[i] = g[i] * sigmoid(g[i]) * u[i];
  // y = h down^T: dh = dy down, d down = dy^T h.
  linear_backward(h.data(), down, dy, n_tokens, hidden, inter, dh.data(), grads.down);
  for (size_t i = 0; i < size; ++i) {
    const double sg = sigmoid(g[i]);
    du[i] = dh[i] * g[i] * sg;
    dg[i] = dh[i] * u[i] * sg * (1.0 + g[i] * (1.0 - sg));
  }
  // g = x gate^T and u = x up^T: dx = dg gate + du up.
  std::vector<double> dx_gate(idx(n_tokens * hidden)), dx_up(idx(n_tokens * hidden));
  linear_backward(x, gate, dg.data(), n_tokens, inter, hidden, dx_gate.data(), grads.gate);
  linear_backward(x, up, du.data(), n_tokens, inter, hidden, dx_up.data(), grads.up);
  if (grads.x != nullptr)
    for (size_t i = 0; i < dx_gate.size(); ++i) grads.x[i] = dx_gate[i] + dx_up[i];
}

namespace {

// Rotates every head of every token by `sign` times its RoPE angles (-1: the inverse).
void rope_rows_f64(double* v, int64_t n, int64_t n_heads, int64_t hd, const int32_t* positions,
                   const std::vector<double>& inv_freq, double sign) {
  const int64_t half = hd / 2;
  for (int64_t t = 0; t < n; ++t)
    for (int64_t h = 0; h < n_heads; ++h) {
      double* head = v + (t * n_heads + h) * hd;
      for (int64_t i = 0; i < half; ++i) {
        const double angle = sign * static_cast<double>(positions[t]) * inv_freq[idx(i)];
        const double c = std::cos(angle), s = std::sin(angle), a = head[i], b = head[i + half];
        head[i] = a * c - b * s;
        head[i + half] = b * c + a * s;
      }
    }
}

// What gqa_attention_f64 computes before o_proj: q, k, v (after RoPE), the probabilities
// p[(h * n + i) * n + j] and the output o [n, n_heads * head_dim].
struct GqaCore {
  std::vector<double> q, k, v, p, o;
};

GqaCore gqa_core_f64(const GqaShape& shape, const RopeScaling& rope_scaling, const GqaWeightsF64& w,
                     const double* x, int64_t n, const int32_t* positions,
                     const uint8_t* tree_mask) {
  const int64_t hd = shape.head_dim, nh = shape.n_heads, kvh = shape.kv_heads;
  if (nh <= 0 || kvh <= 0 || hd <= 0 || nh % kvh != 0 || hd % 2 != 0)
    throw std::invalid_argument("reference::gqa_attention_f64: bad shape");
  const int64_t qw = nh * hd, kvw = kvh * hd, group = nh / kvh;
  GqaCore c;
  c.q.resize(idx(n * qw));
  c.k.resize(idx(n * kvw));
  c.v.resize(idx(n * kvw));
  c.p.assign(idx(nh * n * n), 0.0);
  c.o.assign(idx(n * qw), 0.0);
  linear_f64(x, w.q, n, qw, shape.hidden, c.q.data());
  linear_f64(x, w.k, n, kvw, shape.hidden, c.k.data());
  linear_f64(x, w.v, n, kvw, shape.hidden, c.v.data());
  const std::vector<double> inv_freq = rope_inv_freq(hd, shape.rope_theta, rope_scaling);
  rope_rows_f64(c.q.data(), n, nh, hd, positions, inv_freq, 1.0);
  rope_rows_f64(c.k.data(), n, kvh, hd, positions, inv_freq, 1.0);
  const double scale = 1.0 / std::sqrt(static_cast<double>(hd));
  for (int64_t h = 0; h < nh; ++h)
    for (int64_t i = 0; i < n; ++i) {
      double* p = c.p.data() + (h * n + i) * n;
      double max_s = -std::numeric_limits<double>::infinity(), total = 0.0;
      auto visible = [&](int64_t j) { return tree_mask ? tree_mask[i * n + j] != 0 : j <= i; };
      for (int64_t j = 0; j < n; ++j) {
        if (!visible(j)) continue;
        for (int64_t d = 0; d < hd; ++d)
          p[j] += c.q[idx(i * qw + h * hd + d)] * c.k[idx(j * kvw + h / group * hd + d)];
        p[j] *= scale;
        max_s = std::max(max_s, p[j]);
      }
      for (int64_t j = 0; j < n; ++j) {
        p[j] = visible(j) ? std::exp(p[j] - max_s) : 0.0;
        total += p[j];
      }
      for (int64_t j = 0; j < n; ++j) {
        p[j] = total > 0.0 ? p[j] / total : 0.0;
        for (int64_t d = 0; d < hd; ++d)
          c.o[idx(i * qw + h * hd + d)] += p[j] * c.v[idx(j * kvw + h / group * hd + d)];
      }
    }
  return c;
}

}  // namespace

void gqa_attention_f64(const GqaShape& shape, const RopeScaling& rope_scaling,
                       const GqaWeightsF64& w, const double* x, int64_t n, const int32_t* positions,
                       const uint8_t* tree_mask, double* y) {
  const GqaCore c = gqa_core_f64(shape, rope_scaling, w, x, n, positions, tree_mask);
  linear_f64(c.o.data(), w.o, n, shape.hidden, shape.n_heads * shape.head_dim, y);
}

void gqa_attention_backward(const GqaShape& shape, const RopeScaling& rope_scaling,
                            const GqaWeightsF64& w, const double* x, int64_t n,
                            const int32_t* positions, const uint8_t* tree_mask, const double* dy,
                            const GqaGrads& grads) {
  const GqaCore c = gqa_core_f64(shape, rope_scaling, w, x, n, positions, tree_mask);
  const int64_t hd = shape.head_dim, nh = shape.n_heads, kvh = shape.kv_heads,
                hidden = shape.hidden;
  const int64_t qw = nh * hd, kvw = kvh * hd, group = nh / kvh;
  const double scale = 1.0 / std::sqrt(static_cast<double>(hd));
  // y = o W_o^T.
  std::vector<double> d_o(idx(n * qw)), dq(idx(n * qw), 0.0), dk(idx(n * kvw), 0.0),
      dv(idx(n * kvw), 0.0);
  linear_backward(c.o.data(), w.o, dy, n, hidden, qw, d_o.data(), grads.o);
  // o_i = sum_j p_ij v_j, p_i = softmax(s_i), s_ij = scale q_i . k_j.
  for (int64_t h = 0; h < nh; ++h)
    for (int64_t i = 0; i < n; ++i) {
      const double* p = c.p.data() + (h * n + i) * n;
      const size_t qi = idx(i * qw + h * hd);
      double d_i = 0.0;  // do_i . o_i
      for (int64_t d = 0; d < hd; ++d) d_i += d_o[qi + idx(d)] * c.o[qi + idx(d)];
      for (int64_t j = 0; j < n; ++j) {
        const size_t kj = idx(j * kvw + h / group * hd);
        double dp = 0.0;
        for (int64_t d = 0; d < hd; ++d) dp += d_o[qi + idx(d)] * c.v[kj + idx(d)];
        const double ds = p[j] * (dp - d_i);
        for (int64_t d = 0; d < hd; ++d) {
          dv[kj + idx(d)] += p[j] * d_o[qi + idx(d)];
          dq[qi + idx(d)] += scale * ds * c.k[kj + idx(d)];
          dk[kj + idx(d)] += scale * ds * c.q[qi + idx(d)];
        }
      }
    }
  // RoPE is a rotation: its gradient rotates back.
  const std::vector<double> inv_freq = rope_inv_freq(hd, shape.rope_theta, rope_scaling);
  rope_rows_f64(dq.data(), n, nh, hd, positions, inv_freq, -1.0);
  rope_rows_f64(dk.data(), n, kvh, hd, positions, inv_freq, -1.0);
  // q = x W_q^T, k = x W_k^T, v = x W_v^T: dx sums the three.
  std::vector<double> dx_q(idx(n * hidden)), dx_k(idx(n * hidden)), dx_v(idx(n * hidden));
  linear_backward(x, w.q, dq.data(), n, qw, hidden, dx_q.data(), grads.q);
  linear_backward(x, w.k, dk.data(), n, kvw, hidden, dx_k.data(), grads.k);
  linear_backward(x, w.v, dv.data(), n, kvw, hidden, dx_v.data(), grads.v);
  if (grads.x != nullptr)
    for (size_t i = 0; i < dx_q.size(); ++i) grads.x[i] = dx_q[i] + dx_k[i] + dx_v[i];
}

}  // namespace tessera::reference
