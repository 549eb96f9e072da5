// f64 definitions of the trainer's host operations and losses (train/ops.hpp, losses.hpp):
// plain loops, no threads, nothing clever. The tests hold the f32 implementations to these,
// and these to finite differences of their own forward passes.
#pragma once

#include <cstdint>
#include <vector>

namespace tessera::train::reference {

using Vec = std::vector<double>;

// y[r] = x[r] / sqrt(mean(x[r]^2) + eps) * w; x, y [rows, dim].
Vec rmsnorm(const Vec& x, const Vec& w, double eps, int64_t rows, int64_t dim);
// grad_x (written) and grad_w (written) of sum(grad_y * rmsnorm(x, w)).
void rmsnorm_backward(const Vec& x, const Vec& w, double eps, const Vec& grad_y, int64_t rows,
                      int64_t dim, Vec& grad_x, Vec& grad_w);

// grad_table [vocab, dim] (written) of sum(grad_x * table[tokens]).
Vec embedding_backward(const std::vector<int32_t>& tokens, const Vec& grad_x, int64_t vocab,
                       int64_t dim);

// logits [n, vocab] = h [n, hidden] w^T, w [vocab, hidden].
Vec lm_head(const Vec& h, const Vec& w, int64_t n, int64_t vocab, int64_t hidden);
// grad_h = grad_logits w, grad_w = grad_logits^T h (both written).
void lm_head_backward(const Vec& h, const Vec& w, const Vec& grad_logits, int64_t n, int64_t vocab,
                      int64_t hidden, Vec& grad_h, Vec& grad_w);

// The losses as train/losses.hpp defines them: each returns the sum over rows and, when grad
// is not NULL, writes the gradient of that sum (not scaled).
double cross_entropy(const Vec& logits, int64_t rows, int64_t vocab,
                     const std::vector<int32_t>& targets, int32_t ignore_index, Vec* grad);
double kl_divergence(const Vec& student, const Vec& teacher, int64_t rows, int64_t vocab,
                     double temperature, Vec* grad);
double cosine_distance(const Vec& a, const Vec& b, int64_t rows, int64_t dim, Vec* grad);
double normalised_mse(const Vec& child, const Vec& parent, Vec* grad);

}  // namespace tessera::train::reference
