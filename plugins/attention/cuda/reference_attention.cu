// The naive attention kernel: the definition the fast kernels are tested against, and the
// path for head sizes they do not cover. One thread per (token, query head); f32 throughout.
#include "attention_kernels.hpp"

#include <tessera/cuda/check.hpp>

#include <cmath>

namespace tessera::cuda::attention {
namespace {

__global__ void reference_attention_kernel(AttentionArgs a, const int32_t* token_seq,
                                           const int32_t* tokens, int32_t n_listed,
                                           int32_t max_keys, float* scores) {
  const int64_t item = int64_t{blockIdx.x} * blockDim.x + threadIdx.x;
  if (item >= int64_t{n_listed} * a.n_heads) return;
  const int32_t t = tokens[item / a.n_heads];
  const int32_t h = static_cast<int32_t>(item % a.n_heads);
  const SeqDesc s = a.seqs[token_seq[t]];
  const int32_t i = t - s.first_token;  // new-token index within the sequence
  const int32_t kvh = h / (a.n_heads / a.kv_heads);
  const int32_t keys = s.cached + s.n_new;
  const int64_t row_stride = int64_t{a.kv_heads} * a.head_dim;
  const bf16* k = a.k_cache + int64_t{s.slot} * a.capacity * row_stride + kvh * a.head_dim;
  const bf16* v = a.v_cache + int64_t{s.slot} * a.capacity * row_stride + kvh * a.head_dim;
  const bf16* q = a.q + (int64_t{t} * a.n_heads + h) * a.head_dim;
  float* sc = scores + item * max_keys;

  float max_score = -INFINITY;
  for (int32_t key = 0; key < keys; ++key) {
    float dot = 0;
    for (int32_t d = 0; d < a.head_dim; ++d)
      dot += __bfloat162float(q[d]) * __bfloat162float(k[key * row_stride + d]);
    sc[key] = key_visible(s, a.masks, i, key) ? dot * a.scale : -INFINITY;
    max_score = fmaxf(max_score, sc[key]);
  }
  float sum = 0;
  for (int32_t key = 0; key < keys; ++key) {
    sc[key] = max_score == -INFINITY ? 0.0f : expf(sc[key] - max_score);
    sum += sc[key];
  }
  bf16* out = a.out + (int64_t{t} * a.n_heads + h) * a.head_dim;
  for (int32_t d = 0; d < a.head_dim; ++d) {
    float acc = 0;
    for (int32_t key = 0; key < keys; ++key)
      acc += sc[key] * __bfloat162float(v[key * row_stride + d]);
    out[d] = __float2bfloat16(sum > 0 ? acc / sum : 0.0f);  // no visible key: zeros, like the CPU
  }
}

}  // namespace

void launch_reference_attention(const AttentionArgs& a, const int32_t* token_seq,
                                const int32_t* tokens, int32_t n_listed, int32_t max_keys,
                                float* scores, cudaStream_t stream) {
  const int64_t items = int64_t{n_listed} * a.n_heads;
  if (items == 0) return;
  constexpr int kThreads = 128;
  const auto blocks = static_cast<unsigned>((items + kThreads - 1) / kThreads);
  reference_attention_kernel<<<blocks, kThreads, 0, stream>>>(a, token_seq, tokens, n_listed,
                                                              max_keys, scores);
  check_launch("reference_attention_kernel");
}

}  // namespace tessera::cuda::attention
