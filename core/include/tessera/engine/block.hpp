// A block instance made by a plugin: owns the plugin object, keeps its library
// loaded, and turns error codes into exceptions.
#pragma once

#include <tessera/abi.h>
#include <tessera/engine/params.hpp>
#include <tessera/engine/plugin_registry.hpp>

#include <memory>
#include <string>

namespace tessera {

class Block {
 public:
  // Calls the provider's create. `config.params` must stay valid during the call only.
  Block(ProviderRef provider, const ts_block_config& config, std::string label);
  ~Block();
  Block(const Block&) = delete;
  Block& operator=(const Block&) = delete;

  const ts_block_info& info() const { return info_; }
  bool identity() const { return (info_.flags & TS_BLOCK_IDENTITY) != 0; }
  bool has_compact_kv() const;
  const ProviderRef& provider() const { return provider_; }
  const std::string& label() const {
    return label_;
  }  // "layer 3 attention gqa (tessera-attention-cpu)"

  // Throw tessera::Error prefixed with the label.
  void forward(const ts_block_io& io);
  void compact_kv(ts_kv_layer& kv, int32_t slot, int32_t first_row, const int32_t* keep,
                  int32_t n_keep);

 private:
  const ts_block_vtable* vt_ = nullptr;
  ProviderRef provider_;
  void* self_ = nullptr;
  ts_block_info info_{};
  std::string label_;
};

}  // namespace tessera
