// SwiGLU gating on the gate/up GEMM output, and the naive GEMM the cuBLASLt path is
// tested against.
#include "ffn_kernels.hpp"

#include <tessera/cuda/check.hpp>

namespace tessera::cuda::ffn {
namespace {

__device__ __forceinline__ float silu(float x) {
  return x / (1.0f + __expf(-x));
}

// Eight outputs per thread: 16-byte loads of gate and up, one 16-byte store.
__global__ void swiglu_kernel(const bf16* gate_up, int64_t n_tokens, int64_t inter, bf16* act) {
  const int64_t vectors_per_row = inter / 8;
  const int64_t v = int64_t{blockIdx.x} * blockDim.x + threadIdx.x;
  if (v >= n_tokens * vectors_per_row) return;
  const int64_t t = v / vectors_per_row, i = (v % vectors_per_row) * 8;
  const uint4 g = *reinterpret_cast<const uint4*>(gate_up + t * 2 * inter + i);
  const uint4 u = *reinterpret_cast<const uint4*>(gate_up + t * 2 * inter + inter + i);
  const auto* g2 = reinterpret_cast<const __nv_bfloat162*>(&g);
  const auto* u2 = reinterpret_cast<const __nv_bfloat162*>(&u);
  uint4 out;
  auto* o2 = reinterpret_cast<__nv_bfloat162*>(&out);
#pragma unroll
  for (int p = 0; p < 4; ++p) {
    const float2 gf = __bfloat1622float2(g2[p]), uf = __bfloat1622float2(u2[p]);
    o2[p] = __floats2bfloat162_rn(silu(gf.x) * uf.x, silu(gf.y) * uf.y);
  }
  *reinterpret_cast<uint4*>(act + t * inter + i) = out;
}

__global__ void swiglu_reference_kernel(const bf16* gate_up, int64_t n_tokens, int64_t inter,
                                        bf16* act) {
  const int64_t e = int64_t{blockIdx.x} * blockDim.x + threadIdx.x;
  if (e >= n_tokens * inter) return;
  const int64_t t = e / inter, i = e % inter;
  const float g = __bfloat162float(gate_up[t * 2 * inter + i]);
  const float u = __bfloat162float(gate_up[t * 2 * inter + inter + i]);
  act[e] = __float2bfloat16(g / (1.0f + expf(-g)) * u);
}

__global__ void matmul_nt_reference_kernel(const bf16* x, const bf16* w, int64_t m, int64_t n,
                                           int64_t k, float* y) {
  const int64_t e = int64_t{blockIdx.x} * blockDim.x + threadIdx.x;
  if (e >= m * n) return;
  const int64_t row = e / n, col = e % n;
  float acc = 0.0f;
  for (int64_t i = 0; i < k; ++i)
    acc += __bfloat162float(x[row * k + i]) * __bfloat162float(w[col * k + i]);
  y[e] = acc;
}

unsigned blocks_for(int64_t items, int threads) {
  return static_cast<unsigned>((items + threads - 1) / threads);
}

}  // namespace

void launch_swiglu(const bf16* gate_up, int64_t n_tokens, int64_t inter, bf16* act,
                   cudaStream_t stream) {
  if (n_tokens * inter == 0) return;
  if (inter % 8 != 0) {  // rows not 16-byte aligned: the scalar kernel
    launch_swiglu_reference(gate_up, n_tokens, inter, act, stream);
    return;
  }
  swiglu_kernel<<<blocks_for(n_tokens * inter / 8, 256), 256, 0, stream>>>(gate_up, n_tokens, inter,
                                                                           act);
  check_launch("swiglu_kernel");
}

void launch_swiglu_reference(const bf16* gate_up, int64_t n_tokens, int64_t inter, bf16* act,
                             cudaStream_t stream) {
  if (n_tokens * inter == 0) return;
  swiglu_reference_kernel<<<blocks_for(n_tokens * inter, 256), 256, 0, stream>>>(gate_up, n_tokens,
                                                                                 inter, act);
  check_launch("swiglu_reference_kernel");
}

void launch_matmul_nt_reference(const bf16* x, const bf16* w, int64_t m, int64_t n, int64_t k,
                                float* y, cudaStream_t stream) {
  if (m * n == 0) return;
  matmul_nt_reference_kernel<<<blocks_for(m * n, 256), 256, 0, stream>>>(x, w, m, n, k, y);
  check_launch("matmul_nt_reference_kernel");
}

}  // namespace tessera::cuda::ffn
