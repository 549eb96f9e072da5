// The weight plan of a model: every tensor it reads and every block's KV cache, derived from
// what the blocks' providers declare (ts_block_vtable.describe) instead of from a list of
// kinds the core knows. Random weights, the shape checks at load, the KV cache and
// `tessera info` all come from it.
//
// A block's weights are named <prefix><local name>: the prefix is the block's own (a
// manifest's `prefix` key, for variants of one layer) or model.layers.N.self_attn. /
// model.layers.N.mlp.; the local name is the one the block declares ("q_proj.weight").
// The host owns the rest: model.embed_tokens.weight, model.norm.weight, lm_head.weight
// (absent when the embeddings are tied) and, before every block that is not an identity,
// model.layers.N.input_layernorm.weight / model.layers.N.post_attention_layernorm.weight.
// A provider without describe leaves its block undeclared: its tensors are unknown (no
// random init, no shape check for them), only its norm is planned.
#pragma once

#include <tessera/abi.h>
#include <tessera/engine/block.hpp>
#include <tessera/engine/kv_cache.hpp>
#include <tessera/engine/manifest.hpp>
#include <tessera/engine/plugin_registry.hpp>
#include <tessera/engine/weights.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace tessera {

// One tensor of the model.
struct PlannedTensor {
  std::string name;            // full: "model.layers.3.self_attn.q_proj.weight"
  std::string local;           // as the block declares it ("q_proj.weight"); empty: host-owned
  std::vector<int64_t> shape;  // unsharded
  uint32_t dtypes = 0;         // mask of 1u << ts_dtype; 0: f32, f16 and bf16
  ts_split split = TS_SPLIT_REPLICATED;
  ts_init init = TS_INIT_LINEAR;
  float init_scale = 0.0f;  // TS_INIT_NORMAL
  int32_t layer = -1;       // -1: model-wide
  int32_t kind = -1;        // TS_KIND_ATTENTION or TS_KIND_FFN (its block, or the block its
                            // norm is for); -1: model-wide
  // What reads it: "layer 3 attention gqa (tessera-attention-cpu)", "layer 3 attention norm",
  // "token embedding", "final norm", "lm head".
  std::string owner;
  int64_t numel() const;
};

// One attention or FFN block of one layer: the provider the model picks for it and what
// that provider declares.
struct PlannedBlock {
  int32_t layer = 0;
  ts_kind kind = TS_KIND_ATTENTION;
  BlockSpec spec;
  std::string prefix;    // of its weights' full names
  std::string norm;      // the norm weight the host applies before it; empty for an identity
  ProviderRef provider;  // the best-scoring candidate that accepts the configuration
  std::string label;     // "layer 3 attention gqa (tessera-attention-cpu)"
  std::optional<BlockLayout> layout;  // nullopt: the provider has no describe

  bool declared() const { return layout.has_value(); }
  bool identity() const { return layout && layout->identity(); }
  // The cache the block declares; kv_heads 0 when it needs none or is undeclared.
  KvLayerShape kv() const { return layout ? layout->kv : KvLayerShape{}; }
  // Elements of its declared weights (unsharded); 0 when undeclared.
  int64_t parameters() const;
  // "file:line:column" of the block in its manifest; empty when unknown.
  std::string where() const;
};

struct WeightPlan {
  Manifest manifest;
  std::vector<PlannedBlock> attention;  // one per layer
  std::vector<PlannedBlock> ffn;        // one per layer
  std::vector<PlannedTensor> tensors;   // sorted by name

  const PlannedTensor* find(const std::string& name) const;
  const PlannedBlock& block(int32_t layer, ts_kind kind) const;
  // Every planned tensor's elements (those of undeclared blocks are unknown: not counted).
  int64_t parameters() const;
  // The blocks whose provider has no describe.
  std::vector<const PlannedBlock*> undeclared() const;
  // K and V of one token over every layer whose attention declares a cache, in each one's
  // dtype.
  size_t kv_bytes_per_token() const;
};

struct PlanOptions {
  ts_device device = TS_DEVICE_CPU;
  const ts_comm* comm = nullptr;  // the ranks the blocks are planned for; NULL: one rank
  const ts_host* host = nullptr;  // lent to describe and supports through the configuration
};

// The dtype the model keeps a weight stored as `t` in: vectors (norms) in f32; matrices in
// [runtime] weight_dtype or, with weight_dtype = "stored", as stored, a quantised one only
// where what reads it accepts its dtype (`accepted`, a mask of 1u << ts_dtype) and f32
// elsewhere. Other dtypes (integers) as they are.
ts_dtype run_dtype(const RuntimeSpec& runtime, const Tensor& t, uint32_t accepted);
// The same for the tensor `name` of the plan, accepted as what reads it declares.
ts_dtype run_dtype(const WeightPlan& plan, const std::string& name, const Tensor& t);

// Picks each block's provider as Model does (best score first, skipping one whose supports
// declines or whose describe reports TS_UNSUPPORTED) and collects what it declares.
// Throws ManifestError at the block's file:line:column (ModelError when the manifest has no
// location) for parameters a provider refuses or a declaration that contradicts another,
// and PluginError naming the layer, the kind and the location when no provider takes a block.
WeightPlan plan_weights(const Manifest& m, const PluginRegistry& registry,
                        const PlanOptions& options = {});

// One block, as plan_weights plans it.
PlannedBlock plan_block(const Manifest& m, const PluginRegistry& registry, int32_t layer,
                        ts_kind kind, const BlockSpec& spec, const PlanOptions& options = {});

// The block's plan with this provider; nullopt (with the reason in *declined) when the
// provider declines the configuration (supports, or describe returning TS_UNSUPPORTED).
std::optional<PlannedBlock> plan_block_with(const Manifest& m, int32_t layer, ts_kind kind,
                                            const BlockSpec& spec, const ProviderRef& provider,
                                            const PlanOptions& options, std::string* declined);

// The providers a block may come from, best first; PluginError naming the layer, kind and
// location when there is none.
std::vector<ProviderRef> block_candidates(const PluginRegistry& registry, int32_t layer,
                                          ts_kind kind, const BlockSpec& spec, ts_device device);
// "layer 3 attention 'gqa' (m.toml:14:1): all 2 providers declined it:\n  ..."
[[noreturn]] void throw_all_declined(int32_t layer, ts_kind kind, const BlockSpec& spec,
                                     size_t candidates, const std::vector<std::string>& declined);

// model.layers.N.self_attn. or model.layers.N.mlp.: where a block's weights are unless its
// spec names a prefix.
std::string default_block_prefix(int32_t layer, ts_kind kind);
// model.layers.N.input_layernorm.weight or model.layers.N.post_attention_layernorm.weight.
std::string block_norm_name(int32_t layer, ts_kind kind);

// Checks that `weights` hold every tensor `block` declares with its declared shape. Throws
// ModelError naming the tensor, the block (layer, kind, plugin), its manifest location, where
// the tensor came from, and the expected and found shapes.
void check_block_weights(const PlannedBlock& block, const WeightStore& weights,
                         const std::string& manifest_name);
// The same for every tensor of the plan, the host-owned ones included.
void check_weights(const WeightPlan& plan, const WeightStore& weights);
// Throws ModelError naming a tensor of `weights` that nothing in the plan reads (tensors under
// an undeclared block's prefix count as read).
void check_no_unread_weights(const WeightPlan& plan, const WeightStore& weights);

// The manifest's name for messages: its file (or the name it was parsed under), else
// "manifest '<name>'".
std::string manifest_display_name(const Manifest& m);

}  // namespace tessera
