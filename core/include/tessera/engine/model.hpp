// A model assembled from a manifest: embedding, per layer [RMSNorm, attention,
// residual; RMSNorm, FFN, residual], final RMSNorm, lm head (tied or untied).
// Blocks come from plugins; the norms, embedding and lm head live here.
#pragma once

#include <tessera/abi.h>
#include <tessera/engine/block.hpp>
#include <tessera/engine/kv_cache.hpp>
#include <tessera/engine/manifest.hpp>
#include <tessera/engine/plugin_registry.hpp>
#include <tessera/engine/thread_pool.hpp>
#include <tessera/engine/weights.hpp>

#include <memory>
#include <vector>

namespace tessera {

struct ModelOptions {
  int32_t slots = 1;              // KV-cache slots: sequences that can run at once
  int32_t capacity = 0;           // tokens per slot; 0: manifest's max_seq_len
  const ts_comm* comm = nullptr;  // NULL: unsharded (rank 0 of 1)
};

// A batch of new tokens for several sequences (see ts_batch for the layout).
struct ForwardBatch {
  std::vector<int32_t> slots;
  std::vector<int32_t> offsets;            // n_seqs + 1
  std::vector<int32_t> tokens;             // offsets.back()
  std::vector<int32_t> positions;          // empty: consecutive after each slot's cached length
  std::vector<const uint8_t*> tree_masks;  // empty, or one per sequence (NULL = causal)
  // Logits and hidden get only the last token of each sequence: [n_seqs, ...]
  // instead of [n_tokens, ...] (prefill needs no logits for the other tokens).
  bool last_only = false;
  // Every token gets the bits it would get alone (TS_BATCH_ROW_INVARIANT): a verified
  // tree then matches token-by-token decoding exactly, and a batch each sequence alone.
  // Slower (a GEMV per row). Needs every non-identity block to honour it.
  bool row_invariant = false;
};

class Model {
 public:
  // Plans the weights (weight_plan.hpp: each block's provider and what it declares), checks
  // that `weights` hold every declared tensor with its declared shape, then makes the blocks
  // and sizes the KV cache from the declarations (checked against each block's info()).
  // A manifest whose [weights] format is "random", given an empty store, gets its weights
  // drawn from the plan (init_random_weights with the manifest's seed).
  Model(const Manifest& manifest, const PluginRegistry& registry, WeightStore weights,
        ThreadPool& pool, ModelOptions options = {});
  ~Model();

  const Manifest& manifest() const { return manifest_; }
  int32_t vocab() const { return manifest_.model.vocab_size; }
  int32_t hidden() const { return manifest_.model.hidden_size; }
  int32_t num_layers() const { return manifest_.model.num_layers; }
  const Block& attention(int32_t layer) const;
  const Block& ffn(int32_t layer) const;
  // The blocks themselves, for a trainer that runs them forward and backward.
  Block& attention(int32_t layer);
  Block& ffn(int32_t layer);
  KvCache& kv_cache() { return kv_; }
  const WeightStore& weights() const { return weights_; }
  // The lm head [vocab, hidden] (the embedding when tied), as forward() reads it.
  const Tensor& lm_head() const;
  ThreadPool& pool() { return pool_; }

  // Runs the batch through every layer, appends its K/V rows and advances each
  // slot's length. logits: f32 [n_tokens, vocab] (or NULL); hidden: the final-norm
  // output, f32 [n_tokens, hidden] (or NULL).
  void forward(const ForwardBatch& batch, float* logits, float* hidden);

  // Building blocks of forward(), for tests and tools that run layers by hand.
  // x is f32 [n_tokens, hidden], updated in place.
  void embed(const std::vector<int32_t>& tokens, float* x) const;
  void run_layer(int32_t layer, const ts_batch& batch, float* x, int32_t n_tokens);
  void final_norm_and_head(const float* x, int32_t n_tokens, float* logits, float* hidden,
                           bool row_invariant = false) const;
  // Empty when every block honours row-invariant passes; else the first that does not
  // ("layer 3 ffn swiglu (my-plugin): ...").
  std::string row_invariant_unsupported() const;

  // Replaces one sub-block (TS_KIND_ATTENTION or TS_KIND_FFN) of one layer
  // without reloading the rest; resets that layer's KV cache if its shape changes.
  // The new block's weights must be in weights() (add_weights first if needed), under
  // spec.prefix when it names one: variants of a layer kept side by side in one store
  // (model.layers.3.variants.ffn_50pct.*) switch without loading anything.
  // Strong guarantee: when building the new block fails, the model is unchanged.
  // A KV-shape change reallocates the cache and resets EVERY slot's length to 0
  // (the cached rows of the other layers no longer match a consistent prefix).
  // manifest() is updated to describe the new block.
  void swap_block(int32_t layer, ts_kind kind, const BlockSpec& spec);
  // Adds or replaces a weight in place (matrices converted to [runtime] weight_dtype,
  // vectors to f32, like the model's own). Blocks built earlier keep the tensor they
  // were given until they are swapped out.
  void add_weights(const std::string& name, Tensor t);

  // Keeps cache rows first_row + keep[i] (ascending, i < n_keep) of a slot, moved
  // to first_row + i in every layer, and sets its length to first_row + n_keep.
  // Uses each attention plugin's compact_kv when it has one.
  void compact_kv(int32_t slot, int32_t first_row, const int32_t* keep, int32_t n_keep);

  int32_t capacity() const { return kv_.capacity(); }
  int32_t slots() const { return options_.slots; }

  // Clears a slot's cached tokens.
  void reset(int32_t slot);

 private:
  struct Impl;
  Manifest manifest_;
  const PluginRegistry& registry_;
  WeightStore weights_;
  ThreadPool& pool_;
  ModelOptions options_;
  KvCache kv_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tessera
