// An attention provider whose vtable reports a struct_size that stops after
// forward. The bytes that would be compact_kv in the host's struct hold a
// poison pointer: a host that ignored struct_size and called it would crash.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <tessera/plugin.hpp>

namespace {

struct NoCacheAttention {
  explicit NoCacheAttention(const ts_block_config& config) : hidden(config.hidden) {}
  ts_block_info info() const {
    ts_block_info out{};
    out.flags = TS_BLOCK_IDENTITY;
    return out;
  }
  void forward(const ts_block_io& io) {
    std::memset(io.y->data, 0,
                static_cast<size_t>(io.y->shape[0]) * static_cast<size_t>(hidden) * sizeof(float));
  }
  int32_t hidden;
};

// The 1.0-era vtable: struct_size ends after forward, and the word where a newer
// host would look for compact_kv holds poison instead of NULL.
ts_block_vtable make_vtable() {
  ts_block_vtable v = tessera::sdk::block_vtable<NoCacheAttention>();
  v.struct_size = static_cast<uint32_t>(offsetof(ts_block_vtable, forward) + sizeof(v.forward));
  const std::uintptr_t poison = 0x1;
  std::memcpy(&v.compact_kv, &poison, sizeof(poison));
  return v;
}

const ts_block_vtable kVtable = make_vtable();

const ts_provider kProviders[] = {
    tessera::sdk::provider(TS_KIND_ATTENTION, "fixture-small-attention", TS_DEVICE_CPU, &kVtable)};

}  // namespace

TESSERA_PLUGIN("fixture-small-structs", "1.0.0", kProviders)
