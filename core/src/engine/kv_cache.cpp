#include <string>
#include <tessera/engine/error.hpp>
#include <tessera/engine/kv_cache.hpp>
#include <tessera/kv_rows.hpp>

namespace tessera {

KvCache::KvCache(const std::vector<KvLayerShape>& layers, int32_t slots, int32_t capacity,
                 Allocator& alloc)
    : shapes_(layers), slots_(slots), capacity_(capacity) {
  if (slots < 0 || capacity < 0) {
    throw Error("KV cache needs slots >= 0 and capacity >= 0; got slots " + std::to_string(slots) +
                ", capacity " + std::to_string(capacity));
  }
  k_.resize(layers.size());
  v_.resize(layers.size());
  for (size_t i = 0; i < layers.size(); ++i) {
    const KvLayerShape& s = layers[i];
    if (s.kv_heads < 0 || (s.kv_heads > 0 && s.head_dim <= 0)) {
      throw Error("KV cache layer " + std::to_string(i) + ": kv_heads " +
                  std::to_string(s.kv_heads) + ", head_dim " + std::to_string(s.head_dim) +
                  "; expected kv_heads >= 0 and head_dim > 0 when kv_heads > 0");
    }
    if (s.kv_heads == 0) continue;
    const std::vector<int64_t> shape = {slots, capacity, s.kv_heads, s.head_dim};
    k_[i] = Tensor(shape, s.dtype, alloc);
    v_[i] = Tensor(shape, s.dtype, alloc);
  }
  lengths_.assign(static_cast<size_t>(slots), 0);
}

void KvCache::set_length(int32_t slot, int32_t length) {
  if (slot < 0 || slot >= slots_) {
    throw Error("KV cache slot " + std::to_string(slot) + " is out of range [0, " +
                std::to_string(slots_) + ")");
  }
  if (length < 0 || length > capacity_) {
    throw Error("KV cache slot " + std::to_string(slot) + ": length " + std::to_string(length) +
                " is outside [0, " + std::to_string(capacity_) + "] (the capacity)");
  }
  lengths_[static_cast<size_t>(slot)] = length;
}

bool KvCache::has_layer(int32_t layer) const {
  return layer >= 0 && static_cast<size_t>(layer) < shapes_.size() &&
         shapes_[static_cast<size_t>(layer)].kv_heads > 0;
}

ts_kv_layer KvCache::layer_view(int32_t layer) {
  if (!has_layer(layer)) {
    throw Error("KV cache has no storage for layer " + std::to_string(layer) + " (" +
                std::to_string(shapes_.size()) + " layers; a layer without KV heads has no cache)");
  }
  ts_kv_layer view{};
  view.k = k_[static_cast<size_t>(layer)].view();
  view.v = v_[static_cast<size_t>(layer)].view();
  view.lengths = lengths_.data();
  return view;
}

void KvCache::compact(int32_t slot, int32_t first_row, const int32_t* keep, int32_t n_keep) {
  if (slot < 0 || slot >= slots_) {
    throw Error("KV cache compact: slot " + std::to_string(slot) + " is out of range [0, " +
                std::to_string(slots_) + ")");
  }
  if (first_row < 0 || n_keep < 0 || first_row > capacity_ || n_keep > capacity_ - first_row) {
    throw Error("KV cache compact: first_row " + std::to_string(first_row) + " + n_keep " +
                std::to_string(n_keep) + " does not fit the capacity " + std::to_string(capacity_));
  }
  if (n_keep > 0 && keep == nullptr) throw Error("KV cache compact: keep is null");
  for (int32_t i = 0; i < n_keep; ++i) {
    if (keep[i] < 0 || keep[i] >= capacity_ - first_row) {
      throw Error("KV cache compact: keep[" + std::to_string(i) + "] = " + std::to_string(keep[i]) +
                  " is out of range; first_row " + std::to_string(first_row) +
                  " + keep must stay below the capacity " + std::to_string(capacity_));
    }
    if (i > 0 && keep[i] <= keep[i - 1]) {
      throw Error("KV cache compact: keep must be strictly ascending; keep[" +
                  std::to_string(i - 1) + "] = " + std::to_string(keep[i - 1]) + ", keep[" +
                  std::to_string(i) + "] = " + std::to_string(keep[i]));
    }
  }
  for (size_t layer = 0; layer < shapes_.size(); ++layer) {
    if (shapes_[layer].kv_heads == 0) continue;
    for (const Tensor* t : {&k_[layer], &v_[layer]}) {
      if (t->device() != TS_DEVICE_CPU) {
        throw Error("KV cache compact: layer " + std::to_string(layer) + " lives on " +
                    device_name(t->device()) +
                    "; the host moves CPU rows only (the block must provide compact_kv)");
      }
      sdk::move_kv_rows(t->view(), slot, first_row, keep, n_keep);
    }
  }
  lengths_[static_cast<size_t>(slot)] = first_row + n_keep;
}

size_t KvCache::bytes() const {
  size_t total = 0;
  for (size_t i = 0; i < k_.size(); ++i) {
    if (!k_[i].empty()) total += k_[i].bytes() + v_[i].bytes();
  }
  return total;
}

size_t KvCache::bytes_per_token() const {
  size_t total = 0;
  for (const KvLayerShape& s : shapes_) {
    total +=
        2 * static_cast<size_t>(s.kv_heads) * static_cast<size_t>(s.head_dim) * dtype_size(s.dtype);
  }
  return total;
}

}  // namespace tessera
