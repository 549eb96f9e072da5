// f64 definitions of the trainer's host operations and losses.
#include <tessera/train/reference.hpp>

#include <algorithm>
#include <cmath>

namespace tessera::train::reference {

Vec rmsnorm(const Vec& x, const Vec& w, double eps, int64_t rows, int64_t dim) {
  Vec y(x.size());
  for (int64_t r = 0; r < rows; ++r) {
    double ss = 0;
    for (int64_t i = 0; i < dim; ++i) ss += x[r * dim + i] * x[r * dim + i];
    const double inv = 1.0 / std::sqrt(ss / static_cast<double>(dim) + eps);
    for (int64_t i = 0; i < dim; ++i) y[r * dim + i] = x[r * dim + i] * inv * w[i];
  }
  return y;
}

void rmsnorm_backward(const Vec& x, const Vec& w, double eps, const Vec& grad_y, int64_t rows,
                      int64_t dim, Vec& grad_x, Vec& grad_w) {
  grad_x.assign(x.size(), 0.0);
  grad_w.assign(static_cast<size_t>(dim), 0.0);
  for (int64_t r = 0; r < rows; ++r) {
    double ss = 0;
    for (int64_t i = 0; i < dim; ++i) ss += x[r * dim + i] * x[r * dim + i];
    const double inv = 1.0 / std::sqrt(ss / static_cast<double>(dim) + eps);
    // d inv / d x_j = -inv^3 x_j / dim
    double dot = 0;
    for (int64_t i = 0; i < dim; ++i) dot += grad_y[r * dim + i] * w[i] * x[r * dim + i];
    for (int64_t j = 0; j < dim; ++j) {
      grad_x[r * dim + j] = grad_y[r * dim + j] * w[j] * inv -
                            dot * inv * inv * inv * x[r * dim + j] / static_cast<double>(dim);
      grad_w[j] += grad_y[r * dim + j] * x[r * dim + j] * inv;
    }
  }
}

Vec embedding_backward(const std::vector<int32_t>& tokens, const Vec& grad_x, int64_t vocab,
                       int64_t dim) {
  Vec g(static_cast<size_t>(vocab * dim), 0.0);
  for (size_t t = 0; t < tokens.size(); ++t)
    for (int64_t i = 0; i < dim; ++i)
      g[tokens[t] * dim + i] += grad_x[static_cast<int64_t>(t) * dim + i];
  return g;
}

Vec lm_head(const Vec& h, const Vec& w, int64_t n, int64_t vocab, int64_t hidden) {
  Vec logits(static_cast<size_t>(n * vocab), 0.0);
  for (int64_t t = 0; t < n; ++t)
    for (int64_t v = 0; v < vocab; ++v) {
      double s = 0;
      for (int64_t c = 0; c < hidden; ++c) s += h[t * hidden + c] * w[v * hidden + c];
      logits[t * vocab + v] = s;
    }
  return logits;
}

void lm_head_backward(const Vec& h, const Vec& w, const Vec& grad_logits, int64_t n, int64_t vocab,
                      int64_t hidden, Vec& grad_h, Vec& grad_w) {
  grad_h.assign(static_cast<size_t>(n * hidden), 0.0);
  grad_w.assign(static_cast<size_t>(vocab * hidden), 0.0);
  for (int64_t t = 0; t < n; ++t)
    for (int64_t v = 0; v < vocab; ++v) {
      const double g = grad_logits[t * vocab + v];
      for (int64_t c = 0; c < hidden; ++c) {
        grad_h[t * hidden + c] += g * w[v * hidden + c];
        grad_w[v * hidden + c] += g * h[t * hidden + c];
      }
    }
}

namespace {

// softmax(z / t) of one row.
Vec softmax(const double* z, int64_t n, double t) {
  double mx = -INFINITY;
  for (int64_t i = 0; i < n; ++i) mx = std::max(mx, z[i] / t);
  Vec p(static_cast<size_t>(n));
  double s = 0;
  for (int64_t i = 0; i < n; ++i) s += (p[i] = std::exp(z[i] / t - mx));
  for (double& v : p) v /= s;
  return p;
}

}  // namespace

double cross_entropy(const Vec& logits, int64_t rows, int64_t vocab,
                     const std::vector<int32_t>& targets, int32_t ignore_index, Vec* grad) {
  if (grad != nullptr) grad->assign(logits.size(), 0.0);
  double total = 0;
  for (int64_t r = 0; r < rows; ++r) {
    if (targets[r] == ignore_index) continue;
    const Vec p = softmax(logits.data() + r * vocab, vocab, 1.0);
    total -= std::log(p[targets[r]]);
    if (grad == nullptr) continue;
    for (int64_t v = 0; v < vocab; ++v) (*grad)[r * vocab + v] = p[v] - (v == targets[r] ? 1 : 0);
  }
  return total;
}

double kl_divergence(const Vec& student, const Vec& teacher, int64_t rows, int64_t vocab,
                     double temperature, Vec* grad) {
  const double t = temperature;
  if (grad != nullptr) grad->assign(student.size(), 0.0);
  double total = 0;
  for (int64_t r = 0; r < rows; ++r) {
    const Vec p = softmax(teacher.data() + r * vocab, vocab, t);
    const Vec q = softmax(student.data() + r * vocab, vocab, t);
    double kl = 0;
    for (int64_t v = 0; v < vocab; ++v) kl += p[v] * (std::log(p[v]) - std::log(q[v]));
    total += t * t * kl;
    if (grad == nullptr) continue;
    for (int64_t v = 0; v < vocab; ++v) (*grad)[r * vocab + v] = t * (q[v] - p[v]);
  }
  return total;
}

double cosine_distance(const Vec& a, const Vec& b, int64_t rows, int64_t dim, Vec* grad) {
  if (grad != nullptr) grad->assign(a.size(), 0.0);
  double total = 0;
  for (int64_t r = 0; r < rows; ++r) {
    double aa = 0, bb = 0, ab = 0;
    for (int64_t i = 0; i < dim; ++i) {
      aa += a[r * dim + i] * a[r * dim + i];
      bb += b[r * dim + i] * b[r * dim + i];
      ab += a[r * dim + i] * b[r * dim + i];
    }
    const double na = std::sqrt(aa), nb = std::sqrt(bb), cos = ab / (na * nb);
    total += 1.0 - cos;
    if (grad == nullptr) continue;
    for (int64_t i = 0; i < dim; ++i)
      (*grad)[r * dim + i] = -(b[r * dim + i] / (na * nb) - cos * a[r * dim + i] / (na * na));
  }
  return total;
}

double normalised_mse(const Vec& child, const Vec& parent, Vec* grad) {
  double num = 0, den = 0;
  for (size_t i = 0; i < child.size(); ++i) {
    num += (child[i] - parent[i]) * (child[i] - parent[i]);
    den += parent[i] * parent[i];
  }
  if (grad != nullptr) {
    grad->resize(child.size());
    for (size_t i = 0; i < child.size(); ++i) (*grad)[i] = 2.0 * (child[i] - parent[i]) / den;
  }
  return num / den;
}

}  // namespace tessera::train::reference
