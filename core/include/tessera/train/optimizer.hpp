// AdamW, gradient clipping by global norm and the learning-rate schedule (linear warm-up,
// then cosine decay), as free functions over f32 buffers so that each is tested on its own.
#pragma once

#include <tessera/abi.h>

#include <cstdint>
#include <string>
#include <vector>

namespace tessera::train {

struct AdamWConfig {
  double lr = 1e-3;  // the peak learning rate; the schedule scales it
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;  // decoupled: p -= lr * weight_decay * p
  // Decay vectors too (norm scales); by default only tensors of 2 or more dimensions decay.
  bool decay_vectors = false;
};

// One AdamW step (PyTorch's AdamW) on n elements, step = 1 for the first, on the gradient
// g = grad * grad_scale (an f32 product; grad_scale carries the clipping factor, so that
// clipping costs no pass of its own and leaves `grad` as it was):
//   p -= lr * weight_decay * p                       (when `decay`)
//   m = beta1 m + (1 - beta1) g,  v = beta2 v + (1 - beta2) g^2
//   p -= (lr / (1 - beta1^step)) m / (sqrt(v) / sqrt(1 - beta2^step) + eps)
// Computed in double per element from the moments as stored (f32), which a resumed run reads
// back exactly. Element-wise: split over the host's threads without changing any result; the
// AVX2 path gives the same bits as adamw_update_reference (each operation rounded as there).
void adamw_update(const ts_host* host, const AdamWConfig& config, double lr, int64_t step,
                  bool decay, float* param, const float* grad, float* m, float* v, int64_t n,
                  float grad_scale = 1.0f);
// The same update, one element at a time: the fast path's reference.
void adamw_update_reference(const AdamWConfig& config, double lr, int64_t step, bool decay,
                            float* param, const float* grad, float* m, float* v, int64_t n,
                            float grad_scale = 1.0f);

// Warm-up then decay. For step s (1 for the first update):
//   s <= warmup_steps:     lr * s / warmup_steps
//   after, with progress = (s - warmup_steps) / (total_steps - warmup_steps), clamped to [0, 1]
//   and min_lr = lr * min_lr_ratio:
//     cosine    min_lr + (lr - min_lr) (1 + cos(pi progress)) / 2
//     linear    min_lr + (lr - min_lr) (1 - progress)
//     constant  lr
//   total_steps 0 (or <= warmup_steps): lr, constant after the warm-up.
enum class DecayShape { kCosine, kLinear, kConstant };
struct ScheduleConfig {
  int64_t warmup_steps = 0;
  int64_t total_steps = 0;
  double min_lr_ratio = 0.0;
  DecayShape shape = DecayShape::kCosine;
};
double scheduled_lr(double peak_lr, const ScheduleConfig& schedule, int64_t step);

// One gradient buffer of the set the global norm is taken over.
struct GradSpan {
  float* data = nullptr;
  int64_t n = 0;
};
// sqrt(sum of every element squared): per buffer in chunks of a fixed size, the partial sums
// added in order (the same value whatever the thread count).
double global_norm(const ts_host* host, const std::vector<GradSpan>& grads);
// The factor clipping by global norm scales every gradient by: max_norm / norm when
// norm > max_norm (max_norm > 0), else 1. adamw_update applies it (grad_scale).
double clip_factor(double norm, double max_norm);

}  // namespace tessera::train
