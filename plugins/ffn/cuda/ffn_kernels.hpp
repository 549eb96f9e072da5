// The CUDA FFN kernels and their launchers, shared by the plugin (ffn_cuda.cpp) and the
// kernel tests (tests/cuda). Plain host declarations: includable from .cpp files.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace tessera::cuda::ffn {

using bf16 = __nv_bfloat16;

// act[t, i] = silu(gate_up[t, i]) * gate_up[t, inter + i] for the rows of gate_up
// ([n_tokens, 2 * inter]: the gate GEMM's output, then the up GEMM's), in f32, rounded once
// to bf16 ([n_tokens, inter]). Eight elements per thread when inter is a multiple of 8.
void launch_swiglu(const bf16* gate_up, int64_t n_tokens, int64_t inter, bf16* act,
                   cudaStream_t stream);

// The same, one element per thread: the reference for launch_swiglu.
void launch_swiglu_reference(const bf16* gate_up, int64_t n_tokens, int64_t inter, bf16* act,
                             cudaStream_t stream);

// y[m, n] = sum_k x[m, k] w[n, k] in f32, one thread per output: the reference for the
// cuBLASLt GEMMs (tessera/cuda/cublaslt.hpp).
void launch_matmul_nt_reference(const bf16* x, const bf16* w, int64_t m, int64_t n, int64_t k,
                                float* y, cudaStream_t stream);

}  // namespace tessera::cuda::ffn
