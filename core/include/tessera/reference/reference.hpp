// Naive reference implementations: the definition of what every block computes.
// Plain loops in f32/f64, no threads, no tricks. Tests and `tessera plugin-check`
// compare plugins against these; nothing on a hot path uses them.
#pragma once

#include <tessera/engine/rope_scaling.hpp>

#include <cstdint>
#include <vector>

namespace tessera::reference {

// y[r] = x[r] / sqrt(mean(x[r]^2) + eps) * w, for n_rows rows of length dim.
void rmsnorm(const float* x, const float* w, double eps, int64_t n_rows, int64_t dim, float* y);

// y[m, n] = sum_k x[m, k] * w[n, k]   (w stored as [out, in], like nn.Linear).
void matmul_nt(const float* x, const float* w, int64_t m, int64_t n, int64_t k, float* y);

// Rotary embedding, Llama's "rotate half" layout: element i pairs with
// i + head_dim/2, angle = position * theta^(-2i/head_dim). In place on n_heads heads.
void rope(float* v, int64_t n_heads, int64_t head_dim, int64_t position, double theta);

// inv_freq[i] = theta^(-2i/head_dim) for i < head_dim/2, then adjusted by the scaling
// (rope_scaling.hpp; for "llama3" each frequency is classified by its wavelength 2 pi / f).
std::vector<double> rope_inv_freq(int64_t head_dim, double theta, const RopeScaling& scaling);

// The same rotation with explicit inverse frequencies: angle = position * inv_freq[i].
void rope(float* v, int64_t n_heads, int64_t head_dim, int64_t position,
          const std::vector<double>& inv_freq);

// y = down(silu(gate(x)) * up(x)); gate, up [inter, hidden]; down [hidden, inter].
void swiglu(const float* x, const float* gate, const float* up, const float* down, int64_t n_tokens,
            int64_t hidden, int64_t inter, float* y);

// One sequence's grouped-query attention, including the q/k/v/o projections.
struct GqaShape {
  int64_t hidden = 0;
  int64_t n_heads = 0;
  int64_t kv_heads = 0;
  int64_t head_dim = 0;
  double rope_theta = 10000.0;
};
struct GqaWeights {
  const float* q = nullptr;  // [n_heads * head_dim, hidden]
  const float* k = nullptr;  // [kv_heads * head_dim, hidden]
  const float* v = nullptr;  // [kv_heads * head_dim, hidden]
  const float* o = nullptr;  // [hidden, n_heads * head_dim]
};
// Cache of one sequence: rows of kv_heads * head_dim, keys after RoPE.
struct SequenceKv {
  std::vector<float> k;
  std::vector<float> v;
  int64_t rows = 0;
};
// x: [n_new, hidden] (already normalised); positions: [n_new]. Appends the new
// K/V rows to kv. tree_mask: NULL for causal among the new tokens, else n_new x
// n_new row-major, nonzero where row i may attend new token j. Cached rows are
// always visible. y: [n_new, hidden].
void gqa_attention(const GqaShape& shape, const GqaWeights& w, const float* x, int64_t n_new,
                   const int32_t* positions, const uint8_t* tree_mask, SequenceKv& kv, float* y);
// The same with RoPE frequencies adjusted by `rope_scaling` (see rope_inv_freq).
void gqa_attention(const GqaShape& shape, const RopeScaling& rope_scaling, const GqaWeights& w,
                   const float* x, int64_t n_new, const int32_t* positions,
                   const uint8_t* tree_mask, SequenceKv& kv, float* y);

// ------------------------------------------------------------- training (f64)
// f64 forwards of whole sequences (no cache) and their backwards, for the gradient checks:
// inputs, outputs and gradients in double, plain loops. Each backward takes dy = d loss / d y
// and writes (does not add) d loss / d x and the weights' gradients; a NULL output is skipped.

// y[m, n] = sum_k x[m, k] * w[n, k].
void linear_f64(const double* x, const double* w, int64_t m, int64_t n, int64_t k, double* y);
// dx[m, k] = dy w and dw[n, k] = dy^T x.
void linear_backward(const double* x, const double* w, const double* dy, int64_t m, int64_t n,
                     int64_t k, double* dx, double* dw);

// y = down(silu(gate(x)) * up(x)), as swiglu.
void swiglu_f64(const double* x, const double* gate, const double* up, const double* down,
                int64_t n_tokens, int64_t hidden, int64_t inter, double* y);
struct SwigluGrads {
  double* x = nullptr;     // [n_tokens, hidden]
  double* gate = nullptr;  // [inter, hidden]
  double* up = nullptr;    // [inter, hidden]
  double* down = nullptr;  // [hidden, inter]
};
void swiglu_backward(const double* x, const double* gate, const double* up, const double* down,
                     const double* dy, int64_t n_tokens, int64_t hidden, int64_t inter,
                     const SwigluGrads& grads);

struct GqaWeightsF64 {
  const double* q = nullptr;  // [n_heads * head_dim, hidden]
  const double* k = nullptr;  // [kv_heads * head_dim, hidden]
  const double* v = nullptr;  // [kv_heads * head_dim, hidden]
  const double* o = nullptr;  // [hidden, n_heads * head_dim]
};
struct GqaGrads {
  double* x = nullptr;  // [n, hidden]
  double* q = nullptr;  // shaped as the weights
  double* k = nullptr;
  double* v = nullptr;
  double* o = nullptr;
};
// One whole sequence of n tokens (no cache): gqa_attention's computation in double, the
// tokens attending causally among themselves, or by tree_mask (n x n) when it is not NULL.
void gqa_attention_f64(const GqaShape& shape, const RopeScaling& rope_scaling,
                       const GqaWeightsF64& w, const double* x, int64_t n, const int32_t* positions,
                       const uint8_t* tree_mask, double* y);
void gqa_attention_backward(const GqaShape& shape, const RopeScaling& rope_scaling,
                            const GqaWeightsF64& w, const double* x, int64_t n,
                            const int32_t* positions, const uint8_t* tree_mask, const double* dy,
                            const GqaGrads& grads);

}  // namespace tessera::reference
