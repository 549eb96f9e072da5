// Prefill attention in the flash-attention style on bf16 tensor cores (mma.m16n8k16).
//
// One block of 4 warps per (64-token tile of one sequence, query head); each warp owns 16
// query rows, held as A fragments in registers for the whole kernel. The block walks the
// visible keys of the cache in tiles of 64 rows: S = Q K^T (f32), mask (causal or tree),
// online softmax (running max and sum per row, the output rescaled when the max grows),
// then O += P V with P turned from S's accumulator layout into an A fragment without
// leaving registers. K and V tiles arrive by cp.async: V(t) loads while S(t) is computed,
// K(t+1) while P V(t) is.
//
// The naive reference_attention_kernel computes the same thing; tests compare the two.
#include "attention_kernels.hpp"
#include "mma.cuh"

#include <tessera/cuda/check.hpp>

#include <cmath>

namespace tessera::cuda::attention {
namespace {

constexpr int kWarps = 4;
constexpr int kThreads = kWarps * 32;
constexpr int kRows = kPrefillTileRows;  // 16 per warp
constexpr int kKeys = 64;                // keys per tile
constexpr float kLog2e = 1.4426950408889634f;
static_assert(kRows == 16 * kWarps, "each warp holds 16 query rows");

// Shared-memory row stride in elements: 16 bytes of padding put the 8 rows of each
// ldmatrix phase and of each 32-bit fragment load in different banks.
template <int D>
constexpr int kStride = D + 8;

// Rows key0 .. key0 + 63 of one KV head (row_stride elements apart) into a tile; rows at or
// past `keys` are zero-filled.
template <int D>
__device__ void load_tile(bf16* tile, const bf16* rows, int64_t row_stride, int32_t key0,
                          int32_t keys) {
  constexpr int kChunks = D / 8;  // 16-byte pieces of a row
  for (int c = threadIdx.x; c < kKeys * kChunks; c += kThreads) {
    const int r = c / kChunks, piece = c % kChunks;
    const bool valid = key0 + r < keys;
    const bf16* src = rows + (valid ? (key0 + r) * row_stride : 0) + piece * 8;
    cp_async_16(tile + r * kStride<D> + piece * 8, src, valid);
  }
}

template <int D>
__global__ void __launch_bounds__(kThreads)
    prefill_kernel(AttentionArgs a, const PrefillTile* tiles) {
  constexpr int S = kStride<D>;
  __shared__ alignas(16) bf16 k_tile[kKeys * S];
  __shared__ alignas(16) bf16 v_tile[kKeys * S];

  const PrefillTile tile = tiles[blockIdx.x];
  const SeqDesc s = a.seqs[tile.seq];
  const int h = blockIdx.y;
  const int kvh = h / (a.n_heads / a.kv_heads);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int g = lane / 4, t = lane % 4;
  // This thread's two query rows (new-token indices within the sequence).
  const int i0 = tile.first + warp * 16 + g, i1 = i0 + 8;
  const bool valid0 = i0 < s.n_new, valid1 = i1 < s.n_new;

  const int64_t row_stride = int64_t{a.kv_heads} * D;
  const int64_t head_base = int64_t{s.slot} * a.capacity * row_stride + int64_t{kvh} * D;
  const bf16* k_rows = a.k_cache + head_base;
  const bf16* v_rows = a.v_cache + head_base;
  const int keys = s.cached + s.n_new;
  // Causal: nothing past the tile's last row is visible. A tree mask may look anywhere.
  const int last = min(tile.first + kRows, s.n_new) - 1;
  const int key_end = s.mask_offset < 0 ? min(keys, s.cached + last + 1) : keys;
  const int n_key_tiles = (key_end + kKeys - 1) / kKeys;

  // Q as A fragments, straight from global memory (read once).
  uint32_t qf[D / 16][4];
  const bf16* q0 = a.q + (int64_t{s.first_token + i0} * a.n_heads + h) * D;
  const bf16* q1 = a.q + (int64_t{s.first_token + i1} * a.n_heads + h) * D;
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk) {
    qf[kk][0] = valid0 ? load_u32(q0 + kk * 16 + 2 * t) : 0u;
    qf[kk][1] = valid1 ? load_u32(q1 + kk * 16 + 2 * t) : 0u;
    qf[kk][2] = valid0 ? load_u32(q0 + kk * 16 + 8 + 2 * t) : 0u;
    qf[kk][3] = valid1 ? load_u32(q1 + kk * 16 + 8 + 2 * t) : 0u;
  }

  float o[D / 8][4];
#pragma unroll
  for (int nt = 0; nt < D / 8; ++nt) o[nt][0] = o[nt][1] = o[nt][2] = o[nt][3] = 0.0f;
  float m0 = -INFINITY, m1 = -INFINITY;  // running max per row, log2 units
  float l0 = 0.0f, l1 = 0.0f;            // this thread's share of the running sums
  const float scale_log2 = a.scale * kLog2e;

  load_tile<D>(k_tile, k_rows, row_stride, 0, keys);
  cp_async_commit();
  for (int kt = 0; kt < n_key_tiles; ++kt) {
    const int key0 = kt * kKeys;
    load_tile<D>(v_tile, v_rows, row_stride, key0, keys);
    cp_async_commit();
    cp_async_wait<1>();  // K(kt) has landed (V(kt) may still be in flight)
    __syncthreads();

    // S = Q K^T for 16 rows x 64 keys per warp: 8 fragments of 16 x 8.
    float sc[kKeys / 8][4];
#pragma unroll
    for (int j = 0; j < kKeys / 8; ++j) {
      sc[j][0] = sc[j][1] = sc[j][2] = sc[j][3] = 0.0f;
      const bf16* krow = k_tile + (8 * j + g) * S + 2 * t;
#pragma unroll
      for (int kk = 0; kk < D / 16; ++kk)
        mma_16816(sc[j], qf[kk], load_u32(krow + kk * 16), load_u32(krow + kk * 16 + 8));
    }

    // Scale into log2 units and mask; every row gets its running max and sums updated.
#pragma unroll
    for (int j = 0; j < kKeys / 8; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int row = e < 2 ? i0 : i1;
        const int key = key0 + 8 * j + 2 * t + (e & 1);
        const bool visible = row < s.n_new && key_visible(s, a.masks, row, key);
        sc[j][e] = visible ? sc[j][e] * scale_log2 : -INFINITY;
      }
    float tile_max0 = -INFINITY, tile_max1 = -INFINITY;
#pragma unroll
    for (int j = 0; j < kKeys / 8; ++j) {
      tile_max0 = fmaxf(tile_max0, fmaxf(sc[j][0], sc[j][1]));
      tile_max1 = fmaxf(tile_max1, fmaxf(sc[j][2], sc[j][3]));
    }
    // The four threads of a quad hold the same two rows.
#pragma unroll
    for (int x = 1; x <= 2; x *= 2) {
      tile_max0 = fmaxf(tile_max0, __shfl_xor_sync(0xffffffffu, tile_max0, x));
      tile_max1 = fmaxf(tile_max1, __shfl_xor_sync(0xffffffffu, tile_max1, x));
    }
    const float new_m0 = fmaxf(m0, tile_max0), new_m1 = fmaxf(m1, tile_max1);
    // A row that has seen no visible key yet keeps base 0, so exp2(-inf - base) = 0.
    const float base0 = new_m0 == -INFINITY ? 0.0f : new_m0;
    const float base1 = new_m1 == -INFINITY ? 0.0f : new_m1;
    const float alpha0 = exp2f(m0 - base0), alpha1 = exp2f(m1 - base1);
    m0 = new_m0;
    m1 = new_m1;
    float sum0 = 0.0f, sum1 = 0.0f;
#pragma unroll
    for (int j = 0; j < kKeys / 8; ++j) {
      sc[j][0] = exp2f(sc[j][0] - base0);
      sc[j][1] = exp2f(sc[j][1] - base0);
      sc[j][2] = exp2f(sc[j][2] - base1);
      sc[j][3] = exp2f(sc[j][3] - base1);
      sum0 += sc[j][0] + sc[j][1];
      sum1 += sc[j][2] + sc[j][3];
    }
    l0 = l0 * alpha0 + sum0;
    l1 = l1 * alpha1 + sum1;
#pragma unroll
    for (int nt = 0; nt < D / 8; ++nt) {
      o[nt][0] *= alpha0;
      o[nt][1] *= alpha0;
      o[nt][2] *= alpha1;
      o[nt][3] *= alpha1;
    }

    __syncthreads();  // every warp is done with k_tile
    if (kt + 1 < n_key_tiles) load_tile<D>(k_tile, k_rows, row_stride, key0 + kKeys, keys);
    cp_async_commit();   // possibly empty: keeps the group count uniform
    cp_async_wait<1>();  // V(kt) has landed
    __syncthreads();

    // O += P V: two S fragments (16 keys) form one A fragment of P.
#pragma unroll
    for (int kk = 0; kk < kKeys / 16; ++kk) {
      const uint32_t p[4] = {pack_bf16x2(sc[2 * kk][0], sc[2 * kk][1]),
                             pack_bf16x2(sc[2 * kk][2], sc[2 * kk][3]),
                             pack_bf16x2(sc[2 * kk + 1][0], sc[2 * kk + 1][1]),
                             pack_bf16x2(sc[2 * kk + 1][2], sc[2 * kk + 1][3])};
      // Lanes 0-15 address keys 16kk .. 16kk+15 at dims 8nt; lanes 16-31 the same keys at
      // dims 8(nt+1): one ldmatrix gives the B fragments of two 8-dim output tiles.
      const bf16* vrow = v_tile + (16 * kk + (lane & 15)) * S + 8 * (lane >> 4);
#pragma unroll
      for (int nt = 0; nt < D / 8; nt += 2) {
        uint32_t vb[4];
        ldmatrix_x4_trans(vb, vrow + 8 * nt);
        mma_16816(o[nt], p, vb[0], vb[1]);
        mma_16816(o[nt + 1], p, vb[2], vb[3]);
      }
    }
    __syncthreads();  // every warp is done with v_tile
  }

#pragma unroll
  for (int x = 1; x <= 2; x *= 2) {
    l0 += __shfl_xor_sync(0xffffffffu, l0, x);
    l1 += __shfl_xor_sync(0xffffffffu, l1, x);
  }
  // No visible key at all (a tree row that sees nothing): zeros, like the CPU plugin.
  const float inv0 = l0 > 0.0f ? 1.0f / l0 : 0.0f, inv1 = l1 > 0.0f ? 1.0f / l1 : 0.0f;
  bf16* out0 = a.out + (int64_t{s.first_token + i0} * a.n_heads + h) * D + 2 * t;
  bf16* out1 = a.out + (int64_t{s.first_token + i1} * a.n_heads + h) * D + 2 * t;
#pragma unroll
  for (int nt = 0; nt < D / 8; ++nt) {
    if (valid0)
      *reinterpret_cast<uint32_t*>(out0 + 8 * nt) = pack_bf16x2(o[nt][0] * inv0, o[nt][1] * inv0);
    if (valid1)
      *reinterpret_cast<uint32_t*>(out1 + 8 * nt) = pack_bf16x2(o[nt][2] * inv1, o[nt][3] * inv1);
  }
}

}  // namespace

bool prefill_supported(int32_t head_dim) {
  return head_dim == 64 || head_dim == 128;
}

void launch_prefill(const AttentionArgs& a, const PrefillTile* tiles, int32_t n_tiles,
                    cudaStream_t stream) {
  if (n_tiles == 0) return;
  const dim3 grid(static_cast<unsigned>(n_tiles), static_cast<unsigned>(a.n_heads));
  if (a.head_dim == 64)
    prefill_kernel<64><<<grid, kThreads, 0, stream>>>(a, tiles);
  else if (a.head_dim == 128)
    prefill_kernel<128><<<grid, kThreads, 0, stream>>>(a, tiles);
  else
    throw std::invalid_argument("launch_prefill: head_dim " + std::to_string(a.head_dim) +
                                " has no prefill kernel (64 or 128)");
  check_launch("prefill_kernel");
}

}  // namespace tessera::cuda::attention
