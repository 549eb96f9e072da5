// Kernels of the CUDA backend: dtype conversion, RMSNorm, residual add, embedding gather,
// argmax and sampling. Each is a plain pass over memory; the reductions use one block per
// row. Naive references sit beside the two with a reduction (RMSNorm and argmax).
#include "backend_kernels.hpp"

#include <tessera/abi.h>
#include <tessera/cuda/check.hpp>

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cfloat>
#include <cmath>

namespace tessera::cuda::backend {
namespace {

constexpr int kThreads = 256;

__device__ __forceinline__ float load(const void* p, int32_t dtype, int64_t i) {
  switch (dtype) {
    case TS_BF16:
      return __bfloat162float(static_cast<const __nv_bfloat16*>(p)[i]);
    case TS_F16:
      return __half2float(static_cast<const __half*>(p)[i]);
    default:
      return static_cast<const float*>(p)[i];
  }
}

__device__ __forceinline__ void store(void* p, int32_t dtype, int64_t i, float v) {
  switch (dtype) {
    case TS_BF16:
      static_cast<__nv_bfloat16*>(p)[i] = __float2bfloat16(v);
      break;
    case TS_F16:
      static_cast<__half*>(p)[i] = __float2half(v);
      break;
    default:
      static_cast<float*>(p)[i] = v;
  }
}

// Sum over the block; every thread gets the total. `scratch` holds one float per warp.
__device__ float block_sum(float v, float* scratch) {
  for (int x = 16; x >= 1; x /= 2) v += __shfl_xor_sync(0xffffffffu, v, x);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  __syncthreads();  // scratch may still be read by a previous call
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  float total = 0.0f;
  for (int w = 0; w < static_cast<int>(blockDim.x / 32); ++w) total += scratch[w];
  return total;
}

__device__ float block_max(float v, float* scratch) {
  for (int x = 16; x >= 1; x /= 2) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, x));
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  float m = -INFINITY;
  for (int w = 0; w < static_cast<int>(blockDim.x / 32); ++w) m = fmaxf(m, scratch[w]);
  return m;
}

__global__ void convert_kernel(const void* src, int32_t src_dtype, void* dst, int32_t dst_dtype,
                               int64_t n) {
  for (int64_t i = int64_t{blockIdx.x} * blockDim.x + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x)
    store(dst, dst_dtype, i, load(src, src_dtype, i));
}

__global__ void rmsnorm_kernel(const void* x, int32_t x_dtype, const void* w, int32_t w_dtype,
                               void* y, int32_t y_dtype, int64_t dim, float eps) {
  __shared__ float scratch[kThreads / 32];
  const int64_t base = int64_t{blockIdx.x} * dim;
  float squares = 0.0f;
  for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) {
    const float v = load(x, x_dtype, base + i);
    squares += v * v;
  }
  const float inv = rsqrtf(block_sum(squares, scratch) / static_cast<float>(dim) + eps);
  for (int64_t i = threadIdx.x; i < dim; i += blockDim.x)
    store(y, y_dtype, base + i, load(x, x_dtype, base + i) * inv * load(w, w_dtype, i));
}

__global__ void rmsnorm_reference_kernel(const void* x, int32_t x_dtype, const void* w,
                                         int32_t w_dtype, void* y, int32_t y_dtype, int64_t rows,
                                         int64_t dim, float eps) {
  const int64_t r = int64_t{blockIdx.x} * blockDim.x + threadIdx.x;
  if (r >= rows) return;
  double squares = 0.0;
  for (int64_t i = 0; i < dim; ++i) {
    const double v = load(x, x_dtype, r * dim + i);
    squares += v * v;
  }
  const double inv = 1.0 / sqrt(squares / static_cast<double>(dim) + eps);
  for (int64_t i = 0; i < dim; ++i)
    store(y, y_dtype, r * dim + i,
          static_cast<float>(load(x, x_dtype, r * dim + i) * inv * load(w, w_dtype, i)));
}

__global__ void add_kernel(void* inout, int32_t inout_dtype, const void* addend,
                           int32_t addend_dtype, int64_t n) {
  for (int64_t i = int64_t{blockIdx.x} * blockDim.x + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x)
    store(inout, inout_dtype, i, load(inout, inout_dtype, i) + load(addend, addend_dtype, i));
}

__global__ void embed_kernel(const void* table, int32_t table_dtype, const int32_t* tokens,
                             int64_t hidden, void* out, int32_t out_dtype) {
  const int64_t row = int64_t{tokens[blockIdx.x]} * hidden;
  const int64_t dst = int64_t{blockIdx.x} * hidden;
  for (int64_t i = threadIdx.x; i < hidden; i += blockDim.x)
    store(out, out_dtype, dst + i, load(table, table_dtype, row + i));
}

// Larger value wins; on a tie the smaller index (the CPU greedy decoder's rule).
__device__ __forceinline__ bool better(float v, int32_t i, float best, int32_t best_i) {
  return v > best || (v == best && i < best_i);
}

__global__ void argmax_kernel(const float* logits, int64_t vocab, int32_t* out) {
  __shared__ float best_s[kThreads];
  __shared__ int32_t index_s[kThreads];
  const float* row = logits + int64_t{blockIdx.x} * vocab;
  float best = -INFINITY;
  int32_t best_i = INT32_MAX;
  for (int64_t i = threadIdx.x; i < vocab; i += blockDim.x)
    if (better(row[i], static_cast<int32_t>(i), best, best_i)) {
      best = row[i];
      best_i = static_cast<int32_t>(i);
    }
  best_s[threadIdx.x] = best;
  index_s[threadIdx.x] = best_i;
  __syncthreads();
  for (int half = blockDim.x / 2; half > 0; half /= 2) {
    if (threadIdx.x < half && better(best_s[threadIdx.x + half], index_s[threadIdx.x + half],
                                     best_s[threadIdx.x], index_s[threadIdx.x])) {
      best_s[threadIdx.x] = best_s[threadIdx.x + half];
      index_s[threadIdx.x] = index_s[threadIdx.x + half];
    }
    __syncthreads();
  }
  // A row of NaN or -inf only: index 0.
  if (threadIdx.x == 0) out[blockIdx.x] = index_s[0] == INT32_MAX ? 0 : index_s[0];
}

__global__ void argmax_reference_kernel(const float* logits, int64_t rows, int64_t vocab,
                                        int32_t* out) {
  const int64_t r = int64_t{blockIdx.x} * blockDim.x + threadIdx.x;
  if (r >= rows) return;
  int32_t best = 0;
  for (int64_t i = 1; i < vocab; ++i)
    if (logits[r * vocab + i] > logits[r * vocab + best]) best = static_cast<int32_t>(i);
  out[r] = best;
}

// One block per row: the max, the sum of exp((l - max) / T) over each thread's contiguous
// chunk, then thread 0 walks the chunk sums and the one chunk that holds the target.
__global__ void sample_kernel(const float* logits, int64_t vocab, float temperature,
                              const float* uniforms, int32_t* out) {
  __shared__ float scratch[kThreads / 32];
  __shared__ float chunk_sum[kThreads];
  const float* row = logits + int64_t{blockIdx.x} * vocab;
  const int64_t chunk = (vocab + blockDim.x - 1) / blockDim.x;
  const int64_t begin = threadIdx.x * chunk, end = begin + chunk < vocab ? begin + chunk : vocab;
  float local_max = -INFINITY;
  for (int64_t i = begin; i < end; ++i) local_max = fmaxf(local_max, row[i]);
  const float max_logit = block_max(local_max, scratch);
  const float inv_t = 1.0f / temperature;
  auto weight = [&](int64_t i) { return expf((row[i] - max_logit) * inv_t); };
  float sum = 0.0f;
  for (int64_t i = begin; i < end; ++i) sum += weight(i);
  chunk_sum[threadIdx.x] = sum;
  __syncthreads();
  if (threadIdx.x != 0) return;
  float total = 0.0f;
  for (int c = 0; c < static_cast<int>(blockDim.x); ++c) total += chunk_sum[c];
  const float target = uniforms[blockIdx.x] * total;
  // The chunk whose running sum passes the target; rounding can leave the target at the
  // very end, where the last chunk with any weight takes it.
  float before = 0.0f;
  int c = 0, last_nonzero = 0;
  for (; c < static_cast<int>(blockDim.x); ++c) {
    if (chunk_sum[c] > 0.0f) last_nonzero = c;
    if (before + chunk_sum[c] > target) break;
    before += chunk_sum[c];
  }
  if (c == static_cast<int>(blockDim.x)) {
    c = last_nonzero;
    before = total - chunk_sum[c];
  }
  const int64_t c_begin = c * chunk, c_end = c_begin + chunk < vocab ? c_begin + chunk : vocab;
  int64_t pick = c_begin, last_positive = c_begin;
  float running = before;
  for (pick = c_begin; pick < c_end; ++pick) {
    const float p = weight(pick);
    if (p > 0.0f) last_positive = pick;
    running += p;
    if (running > target) break;
  }
  out[blockIdx.x] = static_cast<int32_t>(pick < c_end ? pick : last_positive);
}

unsigned grid_for(int64_t n) {
  const int64_t blocks = (n + kThreads - 1) / kThreads;
  return static_cast<unsigned>(blocks < 65535 * 16 ? (blocks > 0 ? blocks : 1) : 65535 * 16);
}

}  // namespace

void launch_convert(const void* src, int32_t src_dtype, void* dst, int32_t dst_dtype, int64_t n,
                    cudaStream_t stream) {
  if (n == 0) return;
  convert_kernel<<<grid_for(n), kThreads, 0, stream>>>(src, src_dtype, dst, dst_dtype, n);
  check_launch("convert_kernel");
}

void launch_rmsnorm(const void* x, int32_t x_dtype, const void* w, int32_t w_dtype, void* y,
                    int32_t y_dtype, int64_t rows, int64_t dim, float eps, cudaStream_t stream) {
  if (rows == 0) return;
  rmsnorm_kernel<<<static_cast<unsigned>(rows), kThreads, 0, stream>>>(x, x_dtype, w, w_dtype, y,
                                                                       y_dtype, dim, eps);
  check_launch("rmsnorm_kernel");
}

void launch_rmsnorm_reference(const void* x, int32_t x_dtype, const void* w, int32_t w_dtype,
                              void* y, int32_t y_dtype, int64_t rows, int64_t dim, float eps,
                              cudaStream_t stream) {
  if (rows == 0) return;
  rmsnorm_reference_kernel<<<grid_for(rows), kThreads, 0, stream>>>(x, x_dtype, w, w_dtype, y,
                                                                    y_dtype, rows, dim, eps);
  check_launch("rmsnorm_reference_kernel");
}

void launch_add(void* inout, int32_t inout_dtype, const void* addend, int32_t addend_dtype,
                int64_t n, cudaStream_t stream) {
  if (n == 0) return;
  add_kernel<<<grid_for(n), kThreads, 0, stream>>>(inout, inout_dtype, addend, addend_dtype, n);
  check_launch("add_kernel");
}

void launch_embed(const void* table, int32_t table_dtype, const int32_t* tokens, int64_t n_tokens,
                  int64_t hidden, void* out, int32_t out_dtype, cudaStream_t stream) {
  if (n_tokens == 0) return;
  embed_kernel<<<static_cast<unsigned>(n_tokens), kThreads, 0, stream>>>(table, table_dtype, tokens,
                                                                         hidden, out, out_dtype);
  check_launch("embed_kernel");
}

void launch_argmax(const float* logits, int64_t rows, int64_t vocab, int32_t* out,
                   cudaStream_t stream) {
  if (rows == 0) return;
  argmax_kernel<<<static_cast<unsigned>(rows), kThreads, 0, stream>>>(logits, vocab, out);
  check_launch("argmax_kernel");
}

void launch_argmax_reference(const float* logits, int64_t rows, int64_t vocab, int32_t* out,
                             cudaStream_t stream) {
  if (rows == 0) return;
  argmax_reference_kernel<<<grid_for(rows), kThreads, 0, stream>>>(logits, rows, vocab, out);
  check_launch("argmax_reference_kernel");
}

void launch_sample(const float* logits, int64_t rows, int64_t vocab, float temperature,
                   const float* uniforms, int32_t* out, cudaStream_t stream) {
  if (rows == 0) return;
  sample_kernel<<<static_cast<unsigned>(rows), kThreads, 0, stream>>>(logits, vocab, temperature,
                                                                      uniforms, out);
  check_launch("sample_kernel");
}

}  // namespace tessera::cuda::backend
