// A block instance made by a plugin (an attention or FFN sub-block of one layer),
// and what a block provider says before any block is made: its layout (weights and
// KV cache, ts_block_vtable.describe) and whether it can build a configuration
// (ts_block_vtable.supports).
#pragma once

#include <tessera/abi.h>
#include <tessera/engine/kv_cache.hpp>
#include <tessera/engine/plugin_object.hpp>
#include <tessera/engine/plugin_registry.hpp>

#include <optional>
#include <string>
#include <vector>

namespace tessera {

// One weight as a block declares it (ts_weight_decl).
struct DeclaredWeight {
  std::string name;            // block-local: "q_proj.weight"
  std::vector<int64_t> shape;  // unsharded
  uint32_t dtypes = 0;         // mask of 1u << ts_dtype; 0: f32, f16 and bf16
  ts_split split = TS_SPLIT_REPLICATED;
  ts_init init = TS_INIT_LINEAR;
  float init_scale = 0.0f;
};

// What a block of one configuration needs (ts_block_layout).
struct BlockLayout {
  uint32_t flags = 0;  // ts_block_flags
  KvLayerShape kv;     // kv_heads 0: no cache
  std::vector<DeclaredWeight> weights;
  bool identity() const { return (flags & TS_BLOCK_IDENTITY) != 0; }
};

// The provider's describe for `config` (weights NULL), or nullopt when the provider
// has none. Throws Error "<label>: describe: ..." when it refuses the configuration.
std::optional<BlockLayout> describe_block(const ProviderRef& provider,
                                          const ts_block_config& config, const std::string& label);

// Empty when the provider can build `config` here (or has no capability query);
// else its reason. Throws Error when the query itself fails with TS_ERROR.
std::string block_unsupported_reason(const ProviderRef& provider, const ts_block_config& config,
                                     const std::string& label);

class Block {
 public:
  // Calls the provider's create. `config.params` must stay valid during the call only.
  // Throws PluginUnsupported when create returns TS_UNSUPPORTED.
  Block(ProviderRef provider, const ts_block_config& config, std::string label);

  const ts_block_info& info() const { return info_; }
  bool identity() const { return (info_.flags & TS_BLOCK_IDENTITY) != 0; }
  // The block honours TS_BATCH_ROW_INVARIANT passes (ABI 2.2).
  bool row_invariant() const { return (info_.flags & TS_BLOCK_ROW_INVARIANT) != 0; }
  bool has_compact_kv() const { return object_.has(&ts_block_vtable::compact_kv); }
  const ProviderRef& provider() const { return object_.provider(); }
  // "layer 3 attention gqa (tessera-attention-cpu)"
  const std::string& label() const { return object_.label(); }

  // Throw tessera::Error prefixed with the label.
  void forward(const ts_block_io& io);
  void compact_kv(ts_kv_layer& kv, int32_t slot, int32_t first_row, const int32_t* keep,
                  int32_t n_keep);

  // Training (ABI 2.1). A block can be trained when its plugin has all three entries,
  // train_workspace, forward_train and backward.
  bool can_train() const;
  // Throws Error "<label>: cannot be trained: ..." naming the layer, the kind, the plugin and
  // the entries it lacks, unless can_train().
  void require_training() const;
  // Bytes of workspace forward_train keeps for `batch` under `policy`.
  uint64_t train_workspace(const ts_batch& batch, ts_recompute policy);
  // A cache-free forward (io.kv must be NULL: whole causal sequences) that keeps what
  // backward needs in `workspace` (host-owned, train_workspace bytes, 64-byte aligned).
  void forward_train(const ts_block_io& io, ts_recompute policy, void* workspace);
  // d loss / d x into io.grad_x (unless NULL) and the weights' gradients added into io.grads.
  void backward(const ts_backward_io& io);

 private:
  PluginObject<ts_block_vtable> object_;
  ts_block_info info_{};
};

}  // namespace tessera
