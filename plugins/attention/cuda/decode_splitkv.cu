// Decode attention: split-KV and GQA-aware, for sequences with few new tokens.
//
// Decode is bound by reading the cache. The query rows of a sequence are packed per KV
// head (row r = token r / group, query head r % group of the group), so one block reads
// each K and V row once for every query head that uses it. The keys are cut into splits so
// that a single long sequence still fills the GPU; each block (split, KV head, work item)
// leaves an unnormalised partial output with its running max and sum, and a combine pass
// merges the splits.
//
// Per chunk of 32 keys a block: loads K and V into shared memory, computes the scores of
// every (row, key) pair, updates each row's running max / sum (one warp per row), then
// accumulates P V, each thread owning up to 16 (row, dim) outputs in registers.
#include "attention_kernels.hpp"

#include <tessera/cuda/check.hpp>

#include <cmath>

namespace tessera::cuda::attention {
namespace {

constexpr int kThreads = 128;
constexpr int kKeys = 32;                              // keys per chunk: one per lane
constexpr int kElemsPerThread = 16;                    // accumulators per thread
constexpr int kMaxElems = kThreads * kElemsPerThread;  // rows * head_dim per block
constexpr int kMaxRows = 32;
constexpr int kMaxDim = 128;
constexpr float kLog2e = 1.4426950408889634f;

__global__ void __launch_bounds__(kThreads)
    decode_kernel(AttentionArgs a, const DecodeWork* work, int32_t keys_per_split,
                  DecodeScratch scratch) {
  // K rows padded by one word so that 32 lanes reading 32 different keys hit 32 banks.
  constexpr int kKStride = kMaxDim + 2;
  __shared__ float q_s[kMaxElems];  // [rows][D], pre-scaled to log2 units
  __shared__ alignas(16) bf16 k_s[kKeys * kKStride];
  __shared__ alignas(16) bf16 v_s[kKeys * kMaxDim];
  __shared__ float p_s[kMaxRows][kKeys];  // scores, then probabilities
  __shared__ float m_s[kMaxRows], l_s[kMaxRows], alpha_s[kMaxRows];

  const int D = a.head_dim;
  const int split = blockIdx.x, kvh = blockIdx.y;
  const DecodeWork w = work[blockIdx.z];
  const SeqDesc s = a.seqs[w.seq];
  const int group = a.n_heads / a.kv_heads;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int keys = s.cached + s.n_new;
  const int split_begin = split * keys_per_split;
  const int split_end = min(keys, split_begin + keys_per_split);
  const int64_t part = (int64_t{blockIdx.z} * a.kv_heads + kvh) * gridDim.x + split;

  // This block's query rows, scaled so that scores come out in log2 units.
  const float scale_log2 = a.scale * kLog2e;
  for (int e = threadIdx.x; e < w.rows * D; e += kThreads) {
    const int r = e / D, d = e % D;
    const int packed = w.row0 + r;
    const int token = s.first_token + packed / group, h = kvh * group + packed % group;
    q_s[e] = __bfloat162float(a.q[(int64_t{token} * a.n_heads + h) * D + d]) * scale_log2;
  }
  for (int r = threadIdx.x; r < w.rows; r += kThreads) {
    m_s[r] = -INFINITY;
    l_s[r] = 0.0f;
  }
  float o[kElemsPerThread];
#pragma unroll
  for (int u = 0; u < kElemsPerThread; ++u) o[u] = 0.0f;

  const int64_t row_stride = int64_t{a.kv_heads} * D;
  const int64_t head_base = int64_t{s.slot} * a.capacity * row_stride + int64_t{kvh} * D;
  for (int key0 = split_begin; key0 < split_end; key0 += kKeys) {
    __syncthreads();  // the previous chunk is fully used (and q_s, m_s are written)
    // K and V rows of this chunk, 16 bytes per load; rows past the split are zeros.
    const int pieces = D / 8;
    for (int c = threadIdx.x; c < kKeys * pieces; c += kThreads) {
      const int j = c / pieces, piece = c % pieces;
      uint4 kv = make_uint4(0, 0, 0, 0), vv = make_uint4(0, 0, 0, 0);
      if (key0 + j < split_end) {
        const int64_t at = head_base + (key0 + j) * row_stride + piece * 8;
        kv = *reinterpret_cast<const uint4*>(a.k_cache + at);
        vv = *reinterpret_cast<const uint4*>(a.v_cache + at);
      }
      // k_s rows are 4-byte aligned only (the padding): store word by word.
      auto* k_words = reinterpret_cast<uint32_t*>(k_s + j * kKStride + piece * 8);
      k_words[0] = kv.x;
      k_words[1] = kv.y;
      k_words[2] = kv.z;
      k_words[3] = kv.w;
      *reinterpret_cast<uint4*>(v_s + j * kMaxDim + piece * 8) = vv;
    }
    __syncthreads();

    // Scores: warp-wide, lane = key, one row after another.
    for (int r = warp; r < w.rows; r += kThreads / 32) {
      const int packed = w.row0 + r, token_index = packed / group;
      const int key = key0 + lane;
      const auto* k2 = reinterpret_cast<const __nv_bfloat162*>(k_s + lane * kKStride);
      const float* q = q_s + r * D;
      float dot = 0.0f;
      for (int d = 0; d < D; d += 2) {
        const float2 kf = __bfloat1622float2(k2[d / 2]);
        dot += q[d] * kf.x + q[d + 1] * kf.y;
      }
      const bool visible = key < split_end && key_visible(s, a.masks, token_index, key);
      float score = visible ? dot : -INFINITY;
      // Online softmax update of row r over this chunk.
      float chunk_max = score;
      for (int x = 16; x >= 1; x /= 2)
        chunk_max = fmaxf(chunk_max, __shfl_xor_sync(0xffffffffu, chunk_max, x));
      const float old_m = m_s[r], new_m = fmaxf(old_m, chunk_max);
      const float base = new_m == -INFINITY ? 0.0f : new_m;
      const float p = exp2f(score - base);
      float sum = p;
      for (int x = 16; x >= 1; x /= 2) sum += __shfl_xor_sync(0xffffffffu, sum, x);
      p_s[r][lane] = p;
      __syncwarp();
      if (lane == 0) {
        const float alpha = exp2f(old_m - base);
        alpha_s[r] = alpha;
        m_s[r] = new_m;
        l_s[r] = l_s[r] * alpha + sum;
      }
    }
    __syncthreads();

    // O = O * alpha + P V for this thread's (row, dim) elements.
#pragma unroll
    for (int u = 0; u < kElemsPerThread; ++u) {
      const int e = threadIdx.x + u * kThreads;
      if (e < w.rows * D) {
        const int r = e / D, d = e % D;
        float acc = o[u] * alpha_s[r];
        for (int j = 0; j < kKeys; ++j) acc += p_s[r][j] * __bfloat162float(v_s[j * kMaxDim + d]);
        o[u] = acc;
      }
    }
  }
  __syncthreads();

  // Partials; a split past the end of this sequence leaves max -inf and sum 0.
  const int rows_per_block = kMaxElems / D < kMaxRows ? kMaxElems / D : kMaxRows;
#pragma unroll
  for (int u = 0; u < kElemsPerThread; ++u) {
    const int e = threadIdx.x + u * kThreads;
    if (e < w.rows * D) {
      const int r = e / D, d = e % D;
      scratch.o[(part * rows_per_block + r) * D + d] = o[u];
    }
  }
  for (int r = threadIdx.x; r < w.rows; r += kThreads) {
    scratch.m[part * rows_per_block + r] = m_s[r];
    scratch.l[part * rows_per_block + r] = l_s[r];
  }
}

// out[row] = sum_s 2^(m_s - M) o_s / sum_s 2^(m_s - M) l_s over the splits s, M = max m_s.
__global__ void decode_combine_kernel(AttentionArgs a, const DecodeWork* work, int32_t n_splits,
                                      DecodeScratch scratch) {
  const int D = a.head_dim;
  const int kvh = blockIdx.y;
  const DecodeWork w = work[blockIdx.x];
  const SeqDesc s = a.seqs[w.seq];
  const int group = a.n_heads / a.kv_heads;
  const int rows_per_block = kMaxElems / D < kMaxRows ? kMaxElems / D : kMaxRows;
  const int64_t first_part = (int64_t{blockIdx.x} * a.kv_heads + kvh) * n_splits;
  for (int e = threadIdx.x; e < w.rows * D; e += blockDim.x) {
    const int r = e / D, d = e % D;
    float max_m = -INFINITY;
    for (int sp = 0; sp < n_splits; ++sp)
      max_m = fmaxf(max_m, scratch.m[(first_part + sp) * rows_per_block + r]);
    float num = 0.0f, den = 0.0f;
    if (max_m != -INFINITY) {
      for (int sp = 0; sp < n_splits; ++sp) {
        const int64_t at = (first_part + sp) * rows_per_block + r;
        const float weight = exp2f(scratch.m[at] - max_m);
        num += weight * scratch.o[at * D + d];
        den += weight * scratch.l[at];
      }
    }
    const int packed = w.row0 + r;
    const int token = s.first_token + packed / group, h = kvh * group + packed % group;
    a.out[(int64_t{token} * a.n_heads + h) * D + d] = __float2bfloat16(den > 0 ? num / den : 0.0f);
  }
}

}  // namespace

bool decode_supported(int32_t head_dim) {
  return head_dim >= 8 && head_dim <= kMaxDim && head_dim % 8 == 0;
}

int32_t decode_rows_per_block(int32_t head_dim) {
  return kMaxElems / head_dim < kMaxRows ? kMaxElems / head_dim : kMaxRows;
}

size_t decode_scratch_floats(int32_t n_work, int32_t kv_heads, int32_t n_splits, int32_t head_dim) {
  const size_t parts = static_cast<size_t>(n_work) * kv_heads * n_splits *
                       static_cast<size_t>(decode_rows_per_block(head_dim));
  return parts * (static_cast<size_t>(head_dim) + 2);
}

DecodeScratch decode_scratch_view(float* base, int32_t n_work, int32_t kv_heads, int32_t n_splits,
                                  int32_t head_dim) {
  const size_t parts = static_cast<size_t>(n_work) * kv_heads * n_splits *
                       static_cast<size_t>(decode_rows_per_block(head_dim));
  return DecodeScratch{base, base + parts * head_dim, base + parts * (head_dim + 1)};
}

void launch_decode(const AttentionArgs& a, const DecodeWork* work, int32_t n_work, int32_t n_splits,
                   int32_t keys_per_split, const DecodeScratch& scratch, cudaStream_t stream) {
  if (n_work == 0) return;
  if (!decode_supported(a.head_dim))
    throw std::invalid_argument("launch_decode: head_dim " + std::to_string(a.head_dim) +
                                " has no decode kernel (a multiple of 8 up to 128)");
  const dim3 grid(static_cast<unsigned>(n_splits), static_cast<unsigned>(a.kv_heads),
                  static_cast<unsigned>(n_work));
  decode_kernel<<<grid, kThreads, 0, stream>>>(a, work, keys_per_split, scratch);
  check_launch("decode_kernel");
  const dim3 combine_grid(static_cast<unsigned>(n_work), static_cast<unsigned>(a.kv_heads));
  decode_combine_kernel<<<combine_grid, kThreads, 0, stream>>>(a, work, n_splits, scratch);
  check_launch("decode_combine_kernel");
}

}  // namespace tessera::cuda::attention
