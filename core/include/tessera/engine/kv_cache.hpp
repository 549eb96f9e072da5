// The KV cache: one tensor pair per layer, sized from that layer's own KV-head
// count; layers whose attention needs no cache (linear, no-op) get none.
#pragma once

#include <tessera/abi.h>
#include <tessera/engine/tensor.hpp>

#include <cstdint>
#include <vector>

namespace tessera {

struct KvLayerShape {
  int32_t kv_heads = 0;  // 0: no cache for this layer
  int32_t head_dim = 0;
  ts_dtype dtype = TS_F32;
};

class KvCache {
 public:
  KvCache() = default;
  // Room for `slots` sequences of up to `capacity` tokens each.
  KvCache(const std::vector<KvLayerShape>& layers, int32_t slots, int32_t capacity,
          Allocator& alloc = cpu_allocator());

  int32_t slots() const { return slots_; }
  int32_t capacity() const { return capacity_; }
  int32_t length(int32_t slot) const { return lengths_.at(static_cast<size_t>(slot)); }
  void set_length(int32_t slot, int32_t length);

  bool has_layer(int32_t layer) const;
  // The ABI view of one layer (lengths point at this cache's table).
  ts_kv_layer layer_view(int32_t layer);
  const KvLayerShape& layer_shape(int32_t layer) const {
    return shapes_.at(static_cast<size_t>(layer));
  }

  // Moves rows first_row + keep[i] to first_row + i in every layer (used when a
  // plugin has no compact_kv of its own) and sets the length to first_row + n_keep.
  void compact(int32_t slot, int32_t first_row, const int32_t* keep, int32_t n_keep);

  size_t bytes() const;
  size_t bytes_per_token() const;  // over all layers, one sequence

 private:
  std::vector<KvLayerShape> shapes_;
  std::vector<Tensor> k_, v_;
  std::vector<int32_t> lengths_;
  int32_t slots_ = 0;
  int32_t capacity_ = 0;
};

}  // namespace tessera
