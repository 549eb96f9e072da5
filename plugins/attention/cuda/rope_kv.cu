// RoPE on the projected q and k, and the new K/V rows into the cache; KV-cache compaction.
#include "attention_kernels.hpp"

#include <tessera/cuda/check.hpp>

namespace tessera::cuda::attention {
namespace {

constexpr int kRopeThreads = 128;

// One block per token. The token's cos/sin table (head_dim / 2 pairs) is formed once in
// shared memory, in double like the CPU plugin (positions up to 2^31 keep their angle),
// then every thread rotates pairs (i, i + half) of q and k heads and copies v.
__global__ void rope_store_kv_kernel(RopeArgs a) {
  extern __shared__ float cos_sin[];  // [half] cos, then [half] sin
  const int32_t t = blockIdx.x;
  const int32_t half = a.head_dim / 2;
  const double position = static_cast<double>(a.positions[t]);
  for (int32_t i = threadIdx.x; i < half; i += blockDim.x) {
    double s, c;
    sincos(position * a.inv_freq[i], &s, &c);
    cos_sin[i] = static_cast<float>(c);
    cos_sin[half + i] = static_cast<float>(s);
  }
  __syncthreads();

  const int64_t q_width = int64_t{a.n_heads} * a.head_dim;
  const int64_t kv_width = int64_t{a.kv_heads} * a.head_dim;
  const int64_t cache_base = a.cache_row[t] * kv_width;
  // Pairs of q heads, then of k heads, then of v heads (v is copied, not rotated).
  const int32_t pairs = (a.n_heads + 2 * a.kv_heads) * half;
  for (int32_t p = threadIdx.x; p < pairs; p += blockDim.x) {
    const int32_t head = p / half, i = p % half;
    if (head < a.n_heads + a.kv_heads) {
      const bool is_q = head < a.n_heads;
      const int32_t h = is_q ? head : head - a.n_heads;
      const float* in = (is_q ? a.q_in + t * q_width : a.k_in + t * kv_width) + h * a.head_dim;
      const float x0 = in[i], x1 = in[i + half];
      const float c = cos_sin[i], s = cos_sin[half + i];
      bf16* out =
          is_q ? a.q_out + t * q_width + h * a.head_dim : a.k_cache + cache_base + h * a.head_dim;
      out[i] = __float2bfloat16(x0 * c - x1 * s);
      out[i + half] = __float2bfloat16(x1 * c + x0 * s);
    } else {
      const int32_t h = head - a.n_heads - a.kv_heads;
      const float* in = a.v_in + t * kv_width + h * a.head_dim;
      bf16* out = a.v_cache + cache_base + h * a.head_dim;
      out[i] = __float2bfloat16(in[i]);
      out[i + half] = __float2bfloat16(in[i + half]);
    }
  }
}

// Copies n_keep rows of row_elems elements: from rows base + keep[i] into scratch (gather,
// to_scratch) or from scratch into rows base + i (scatter). One block per kept row.
__global__ void compact_rows_kernel(bf16* cache, int64_t base_row, const int32_t* keep,
                                    int32_t row_elems, bf16* scratch, bool to_scratch) {
  const int32_t i = blockIdx.x;
  bf16* row_src = cache + (base_row + keep[i]) * row_elems;
  bf16* row_dst = cache + (base_row + i) * row_elems;
  bf16* tmp = scratch + int64_t{i} * row_elems;
  for (int32_t e = threadIdx.x; e < row_elems; e += blockDim.x) {
    if (to_scratch)
      tmp[e] = row_src[e];
    else
      row_dst[e] = tmp[e];
  }
}

}  // namespace

void launch_rope_store_kv(const RopeArgs& a, cudaStream_t stream) {
  if (a.n_tokens == 0) return;
  const size_t smem = sizeof(float) * static_cast<size_t>(a.head_dim);
  rope_store_kv_kernel<<<a.n_tokens, kRopeThreads, smem, stream>>>(a);
  check_launch("rope_store_kv_kernel");
}

void launch_compact_kv(bf16* k_cache, bf16* v_cache, int64_t slot_base_row, const int32_t* keep,
                       int32_t n_keep, int32_t row_elems, bf16* scratch, cudaStream_t stream) {
  if (n_keep == 0) return;
  bf16* k_tmp = scratch;
  bf16* v_tmp = scratch + int64_t{n_keep} * row_elems;
  compact_rows_kernel<<<n_keep, 128, 0, stream>>>(k_cache, slot_base_row, keep, row_elems, k_tmp,
                                                  true);
  compact_rows_kernel<<<n_keep, 128, 0, stream>>>(v_cache, slot_base_row, keep, row_elems, v_tmp,
                                                  true);
  compact_rows_kernel<<<n_keep, 128, 0, stream>>>(k_cache, slot_base_row, keep, row_elems, k_tmp,
                                                  false);
  compact_rows_kernel<<<n_keep, 128, 0, stream>>>(v_cache, slot_base_row, keep, row_elems, v_tmp,
                                                  false);
  check_launch("compact_rows_kernel");
}

}  // namespace tessera::cuda::attention
