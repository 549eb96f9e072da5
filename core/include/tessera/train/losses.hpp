// Training losses with their gradients, f32 inputs, sums in double.
//
// Each returns the SUM of its per-row terms (the caller divides by the count it normalises
// by, so that micro-batches of one step share one denominator) and, when `grad` is not NULL,
// writes grad = scale * d(sum) / d(input): scale = 1 / count gives the gradient of the mean.
// Rows are split over the host's threads; per-row terms are summed in row order, so values do
// not depend on the thread count. The f64 definitions are in train/reference.hpp.
//
//   cross_entropy      -log softmax(logits[r])[target[r]] over rows whose target is not
//                      ignore_index (counted: how many).
//   kl_divergence      KL(teacher || student) = sum_v p_v (log p_v - log q_v) with
//                      p = softmax(teacher / T), q = softmax(student / T), times T^2 (Hinton's
//                      convention: the gradient, T (q - p), keeps its size as T changes).
//   cosine_distance    1 - cos(a[r], b[r]), norms floored at 1e-12; the gradient is w.r.t. a
//                      (the student's hidden state), b is the teacher's.
//   squared_error      sum (child - parent)^2, gradient w.r.t. child; with squared_norm,
//                      Puzzle's normalised MSE = MSE(parent, child) / MSE(parent, 0)
//                      = squared_error / squared_norm(parent) (normalised_mse does both).
#pragma once

#include <tessera/abi.h>

#include <cstdint>

namespace tessera::train {

inline constexpr int32_t kIgnoreIndex = -1;

// grad may alias logits (the gradient replaces the logits in place). Throws Error for a
// target outside [0, vocab) that is not ignore_index.
double cross_entropy(const ts_host* host, const float* logits, int64_t rows, int64_t vocab,
                     const int32_t* targets, int32_t ignore_index, float* grad, double scale,
                     int64_t* counted);

// grad (w.r.t. student) may alias student. temperature > 0.
double kl_divergence(const ts_host* host, const float* student, const float* teacher, int64_t rows,
                     int64_t vocab, double temperature, float* grad, double scale);

// grad (w.r.t. a) is ADDED to (several losses may feed one hidden state).
double cosine_distance(const ts_host* host, const float* a, const float* b, int64_t rows,
                       int64_t dim, float* grad_a, double scale);

// sum (child - parent)^2; grad (w.r.t. child) = scale * 2 (child - parent), written.
double squared_error(const float* child, const float* parent, int64_t n, float* grad, double scale);
// sum parent^2.
double squared_norm(const float* parent, int64_t n);
// squared_error / squared_norm, and its gradient times scale. Throws Error when parent is
// all zeros (the normaliser would be 0).
double normalised_mse(const float* child, const float* parent, int64_t n, float* grad,
                      double scale);

}  // namespace tessera::train
