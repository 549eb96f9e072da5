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

}  // namespace tessera::reference
