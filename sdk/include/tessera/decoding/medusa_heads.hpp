// Medusa heads: head k reads the base model's last hidden state h (the final norm's output) and
// predicts the token k + 2 positions ahead (the base lm head predicts + 1):
//   x_0 = h,  x_{j+1} = x_j + SiLU(W_kj x_j + b_kj)  (j < layers),  logits_k = P_k x_layers.
// Tensor names are those of the public Medusa checkpoints: W_kj and b_kj are
// "medusa_head.{k}.{j}.linear.weight" [hidden, hidden] and ".bias" [hidden], P_k is
// "medusa_head.{k}.{layers}.weight" [vocab, hidden]. A head without its own P_k uses the base
// model's lm head (heads trained with a shared, frozen projection). Header-only: the decoder
// plugin and the trainer compute the same thing.
#pragma once

#include <tessera/cpu/matmul.hpp>
#include <tessera/cpu/ops.hpp>

#include <cstdint>
#include <string>

namespace tessera::decoding {

inline std::string medusa_linear_name(int32_t head, int32_t layer, const char* what) {
  return "medusa_head." + std::to_string(head) + "." + std::to_string(layer) + ".linear." + what;
}
inline std::string medusa_projection_name(int32_t head, int32_t layers) {
  return "medusa_head." + std::to_string(head) + "." + std::to_string(layers) + ".weight";
}

// One ResBlock over `rows` rows: y = x + SiLU(x W^T + b); pre (NULL: not kept) receives
// x W^T + b, which the backward needs. y may not alias x.
inline void medusa_resblock_forward(const ts_host* host, const cpu::MatrixView& w, const float* b,
                                    const float* x, int64_t rows, float* y, float* pre,
                                    cpu::RowReduction reduction = cpu::RowReduction::fastest) {
  const int64_t n = w.rows;
  cpu::matmul_nt(host, x, rows, n, w, y, n, reduction);
  for (int64_t r = 0; r < rows; ++r) {
    float* yr = y + r * n;
    const float* xr = x + r * n;
    for (int64_t i = 0; i < n; ++i) {
      const float a = yr[i] + b[i];
      if (pre != nullptr) pre[r * n + i] = a;
      yr[i] = xr[i] + cpu::silu(a);
    }
  }
}

}  // namespace tessera::decoding
