// The host's operations of a training step with their backward passes: RMSNorm, the token
// embedding (a gather; its backward a scatter-add), the lm head (tied or untied: the same
// product, the tied one's gradient going to the embedding) and the residual add. f32 in and
// out, sums in the orders stated so that results depend on the thread count only where said.
// Their f64 definitions are in train/reference.hpp.
#pragma once

#include <tessera/abi.h>
#include <tessera/cpu/matmul.hpp>

#include <cstdint>

namespace tessera::train {

// y[r] = x[r] * inv_rms[r] * w, inv_rms[r] = 1 / sqrt(mean(x[r]^2) + eps): exactly what the
// model's forward computes (sum of squares in double, the scale rounded to f32). inv_rms
// (NULL: not kept) receives the scale of each row. Rows are split over the host's threads.
void rmsnorm_forward(const ts_host* host, const float* x, const float* w, double eps, int64_t rows,
                     int64_t dim, float* y, float* inv_rms);

// Given grad_y = d loss / d y: grad_x = d loss / d x (written), and grad_w (NULL: frozen)
// += d loss / d w. inv_rms as rmsnorm_forward kept it. With r = inv_rms and g = grad_y * w,
//   grad_x = r g - r^3 x (g . x) / dim,   grad_w += sum over rows of grad_y x r.
// grad_x may alias grad_y. Row sums in double; grad_w column by column, rows in order.
void rmsnorm_backward(const ts_host* host, const float* x, const float* w, const float* inv_rms,
                      const float* grad_y, int64_t rows, int64_t dim, float* grad_x, float* grad_w);

// grad_table[tokens[t]] += grad_x[t] for t < n_tokens (the backward of the embedding gather),
// tokens in order.
void embedding_backward(const int32_t* tokens, int64_t n_tokens, const float* grad_x, int64_t dim,
                        float* grad_table);

// logits[n, vocab] = h[n, hidden] W^T, W [vocab, hidden] (f32, bf16 or f16): the model's own
// product (cpu::matmul_nt).
void lm_head_forward(const ts_host* host, const float* h, int64_t n, const cpu::MatrixView& w,
                     float* logits);

// Given grad_logits [n, vocab]: grad_h (NULL: not needed) = grad_logits W (written, [n, hidden])
// and grad_w
// (NULL: frozen; [vocab, hidden] f32) += grad_logits^T h. Tied embeddings pass the
// embedding's gradient as grad_w. Each output element sums in a fixed order (vocab rows in
// order for grad_h, tokens in order for grad_w) whatever the thread count.
void lm_head_backward(const ts_host* host, const float* h, const float* grad_logits, int64_t n,
                      const cpu::MatrixView& w, float* grad_h, float* grad_w);

// The residual add, x += y. Its backward is the identity on both inputs: the gradient of the
// sum flows unchanged to x and to the block's output y.
void residual_add(float* x, const float* y, int64_t n);

}  // namespace tessera::train
