// The CUDA attention kernels and their launchers, shared by the plugin (attention_cuda.cpp)
// and the kernel tests (tests/cuda). Plain host declarations: includable from .cpp files.
//
// Layouts (row-major, bf16 unless stated):
//   q        [n_tokens, n_heads, head_dim]        after RoPE
//   k/v cache [slots, capacity, kv_heads, head_dim] keys after RoPE
//   out      [n_tokens, n_heads, head_dim]
// Query head h reads KV head h / (n_heads / kv_heads).
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace tessera::cuda::attention {

using bf16 = __nv_bfloat16;

// One sequence of the batch, as the kernels see it (device memory).
struct SeqDesc {
  int32_t slot;         // cache slot
  int32_t cached;       // cache rows before this call; new keys start here
  int32_t first_token;  // row of its first new token in q and out
  int32_t n_new;        // new tokens
  int32_t mask_offset;  // byte offset of its n_new x n_new tree mask, or -1: causal
};

// Key row `key` (0 .. cached + n_new - 1) is visible to new token `i`: cached rows always,
// new rows causally or by the tree mask (nonzero where row i may attend new token j).
__host__ __device__ inline bool key_visible(const SeqDesc& s, const uint8_t* masks, int32_t i,
                                            int32_t key) {
  if (key < s.cached) return true;
  const int32_t j = key - s.cached;
  if (j >= s.n_new) return false;
  if (s.mask_offset < 0) return j <= i;
  return masks[s.mask_offset + i * s.n_new + j] != 0;
}

struct AttentionArgs {
  const bf16* q = nullptr;
  const bf16* k_cache = nullptr;
  const bf16* v_cache = nullptr;
  bf16* out = nullptr;
  const SeqDesc* seqs = nullptr;   // device, [n_seqs]
  const uint8_t* masks = nullptr;  // device, tree masks by mask_offset
  int32_t n_seqs = 0;
  int32_t n_heads = 0;
  int32_t kv_heads = 0;
  int32_t head_dim = 0;
  int32_t capacity = 0;  // cache rows per slot
  float scale = 0;       // 1 / sqrt(head_dim)
};

// ------------------------------------------------------------------ RoPE + cache

struct RopeArgs {
  const float* q_in = nullptr;  // [n_tokens, n_heads * head_dim], projection output
  const float* k_in = nullptr;  // [n_tokens, kv_heads * head_dim]
  const float* v_in = nullptr;  // [n_tokens, kv_heads * head_dim]
  bf16* q_out = nullptr;        // [n_tokens, n_heads, head_dim]
  bf16* k_cache = nullptr;      // cache rows are indexed by cache_row
  bf16* v_cache = nullptr;
  const int32_t* positions = nullptr;  // device [n_tokens]
  const int64_t* cache_row = nullptr;  // device [n_tokens]: slot * capacity + row
  const double* inv_freq = nullptr;    // device [head_dim / 2]
  int32_t n_tokens = 0, n_heads = 0, kv_heads = 0, head_dim = 0;
};

// Rotate-half RoPE on q and k (angles in double, like the CPU plugin), q to bf16, and the
// new K/V rows into the cache.
void launch_rope_store_kv(const RopeArgs& a, cudaStream_t stream);

// Moves cache rows first_row + keep[i] to first_row + i of one slot (via `scratch`, which
// holds n_keep rows of K and of V: rows may overlap). keep is device memory.
void launch_compact_kv(bf16* k_cache, bf16* v_cache, int64_t slot_base_row, const int32_t* keep,
                       int32_t n_keep, int32_t row_elems, bf16* scratch, cudaStream_t stream);

// ------------------------------------------------------------------ prefill

// One tile of 64 new tokens of one sequence (device memory).
struct PrefillTile {
  int32_t seq;
  int32_t first;  // index of the tile's first new token within the sequence
};
constexpr int kPrefillTileRows = 64;

// Flash-attention-style prefill on tensor cores: for each tile and query head, online
// softmax over 64-key tiles of the cache. head_dim 64 or 128 (prefill_supported).
bool prefill_supported(int32_t head_dim);
void launch_prefill(const AttentionArgs& a, const PrefillTile* tiles, int32_t n_tiles,
                    cudaStream_t stream);

// ------------------------------------------------------------------ decode

// One block of packed query rows of one sequence: row r = (token r / group, head-in-group
// r % group), so every query head of a KV group shares each K/V load (device memory).
struct DecodeWork {
  int32_t seq;
  int32_t row0;  // first packed row
  int32_t rows;  // <= decode_rows_per_block(head_dim)
};

bool decode_supported(int32_t head_dim);
int32_t decode_rows_per_block(int32_t head_dim);

// Partial results of each split, combined by launch_decode_combine.
struct DecodeScratch {
  float* o = nullptr;  // [n_work, kv_heads, n_splits, rows_per_block, head_dim]
  float* m = nullptr;  // [n_work, kv_heads, n_splits, rows_per_block], running max (log2 units)
  float* l = nullptr;  // same shape: running sum of exponentials
};
size_t decode_scratch_floats(int32_t n_work, int32_t kv_heads, int32_t n_splits, int32_t head_dim);
DecodeScratch decode_scratch_view(float* base, int32_t n_work, int32_t kv_heads, int32_t n_splits,
                                  int32_t head_dim);

// Split-KV attention: the keys of each sequence are cut into n_splits ranges of
// keys_per_split rows (a multiple of 64); one block per (split, KV head, work item) reads
// its range of K and V once for all the rows it holds; then a combine pass merges the
// splits and writes out.
void launch_decode(const AttentionArgs& a, const DecodeWork* work, int32_t n_work, int32_t n_splits,
                   int32_t keys_per_split, const DecodeScratch& scratch, cudaStream_t stream);

// How to cut max_keys keys: about two blocks per multiprocessor over `blocks` (work items x
// KV heads) blocks, at least 64 keys per split; `forced` > 0 asks for that many splits.
struct DecodeSplits {
  int32_t n_splits = 1;
  int32_t keys_per_split = 64;
};
inline DecodeSplits choose_decode_splits(int64_t blocks, int32_t max_keys, int32_t multiprocessors,
                                         int64_t forced = 0) {
  const int64_t most = max_keys > 0 ? (max_keys + 63) / 64 : 1;
  int64_t splits = forced > 0 ? forced : (2 * int64_t{multiprocessors} + blocks - 1) / blocks;
  splits = splits < 1 ? 1 : (splits > most ? most : splits);
  const int64_t per_split = ((max_keys + splits - 1) / splits + 63) / 64 * 64;
  DecodeSplits out;
  out.keys_per_split = static_cast<int32_t>(per_split < 64 ? 64 : per_split);
  out.n_splits = static_cast<int32_t>((max_keys + out.keys_per_split - 1) / out.keys_per_split);
  if (out.n_splits < 1) out.n_splits = 1;
  return out;
}

// ------------------------------------------------------------------ reference

// The definition, one thread per (listed token, query head), two passes over the keys
// with the scores in `scores` ([n_listed * n_heads * max_keys] floats). tokens: device
// [n_listed], the token rows to compute; token_seq: device [all tokens], the sequence of
// each token. Slow; for tests and for head sizes the fast kernels do not cover.
void launch_reference_attention(const AttentionArgs& a, const int32_t* token_seq,
                                const int32_t* tokens, int32_t n_listed, int32_t max_keys,
                                float* scores, cudaStream_t stream);

}  // namespace tessera::cuda::attention
