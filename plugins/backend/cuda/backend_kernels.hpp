// The CUDA backend's kernels (the forward pass outside the blocks) and their launchers,
// shared by the plugin (backend_cuda.cpp) and the kernel tests (tests/cuda). Tensors are
// contiguous; float dtypes are ts_dtype values (TS_F32, TS_F16, TS_BF16) chosen at run
// time: these passes are bound by memory, not by the branch on the dtype.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace tessera::cuda::backend {

// dst[i] = src[i] for n elements, converting between float dtypes.
void launch_convert(const void* src, int32_t src_dtype, void* dst, int32_t dst_dtype, int64_t n,
                    cudaStream_t stream);

// y[r] = x[r] / sqrt(mean(x[r]^2) + eps) * w, one block per row, f32 sums.
void launch_rmsnorm(const void* x, int32_t x_dtype, const void* w, int32_t w_dtype, void* y,
                    int32_t y_dtype, int64_t rows, int64_t dim, float eps, cudaStream_t stream);
// The same, one thread per row: the reference.
void launch_rmsnorm_reference(const void* x, int32_t x_dtype, const void* w, int32_t w_dtype,
                              void* y, int32_t y_dtype, int64_t rows, int64_t dim, float eps,
                              cudaStream_t stream);

// inout[i] += addend[i] for n elements.
void launch_add(void* inout, int32_t inout_dtype, const void* addend, int32_t addend_dtype,
                int64_t n, cudaStream_t stream);

// out[i] = table[tokens[i]] for n_tokens rows of `hidden`; tokens are device memory,
// already checked against the vocabulary.
void launch_embed(const void* table, int32_t table_dtype, const int32_t* tokens, int64_t n_tokens,
                  int64_t hidden, void* out, int32_t out_dtype, cudaStream_t stream);

// out[r] = the first index of the largest of logits[r] (f32 [rows, vocab]); one block per
// row, and the one-thread-per-row reference.
void launch_argmax(const float* logits, int64_t rows, int64_t vocab, int32_t* out,
                   cudaStream_t stream);
void launch_argmax_reference(const float* logits, int64_t rows, int64_t vocab, int32_t* out,
                             cudaStream_t stream);

// out[r] = the first index i with cumsum(p)[i] > uniforms[r] * sum(p), where
// p = exp((logits[r] - max) / temperature): sampling by inverting the distribution. One
// block per row. uniforms: device [rows].
void launch_sample(const float* logits, int64_t rows, int64_t vocab, float temperature,
                   const float* uniforms, int32_t* out, cudaStream_t stream);

}  // namespace tessera::cuda::backend
