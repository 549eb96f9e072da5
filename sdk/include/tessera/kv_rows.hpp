// Moving KV-cache rows within one slot: the one implementation the host (for blocks
// without compact_kv) and the CPU attention plugin share.
#pragma once

#include <tessera/abi.h>
#include <tessera/dtype.hpp>

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace tessera::sdk {

// In a CPU cache tensor [slots, capacity, kv_heads, head_dim] (any strides in elements),
// moves row first_row + keep[i] of `slot` to row first_row + i, for i < n_keep. keep
// must be ascending (keep[i] >= i), so moving front to back never overwrites a row that
// is still to be read. The caller checks the bounds.
inline void move_kv_rows(const ts_tensor& t, int32_t slot, int32_t first_row, const int32_t* keep,
                         int32_t n_keep) {
  const size_t esize = dtype_size(t.dtype);
  const size_t row_bytes = static_cast<size_t>(t.shape[2] * t.shape[3]) * esize;
  char* base = static_cast<char*>(t.data) + static_cast<size_t>(slot * t.stride[0]) * esize;
  for (int32_t i = 0; i < n_keep; ++i) {
    const int64_t src = first_row + keep[i];
    const int64_t dst = first_row + i;
    if (src == dst) continue;
    std::memmove(base + static_cast<size_t>(dst * t.stride[1]) * esize,
                 base + static_cast<size_t>(src * t.stride[1]) * esize, row_bytes);
  }
}

}  // namespace tessera::sdk
