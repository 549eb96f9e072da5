// Activation memory of a training step: what the trainer measured (Trainer::memory) and what
// Megatron's per-layer formula predicts, adapted to this model, to print side by side.
//
// Megatron (Korthikanti et al., "Reducing Activation Recomputation in Large Transformer
// Models") counts s*b*h*(34 + 5*a*s/h) bytes per layer for GPT with 16-bit activations:
// attention 11sbh + 5as^2b, MLP 19sbh, two LayerNorms 4sbh, dropout masks included. Adapted to
// these layers (no dropout, RMSNorm, SwiGLU, grouped-query attention, packed sequences of
// lengths s_i, T = sum s_i tokens, e bytes per element, q = heads * head_dim,
// kv = kv_heads * head_dim, i = intermediate size), per layer:
//   gqa attention    e * (T * (2h + 2q + 2kv) + heads * sum s_i^2)
//                    (norm input, q/k/v input, q, k, v, o input; the softmax probabilities)
//   linear attention e * T * 2h        (norm input, the linear map's input)
//   swiglu ffn       e * T * (2h + 3i) (norm input, gate/up input, gate, up, their product)
//   linear ffn       e * T * 2h
//   no-op            0
// TS_RECOMPUTE_CORE drops the probabilities (Megatron's selective recomputation: 34sbh);
// TS_RECOMPUTE_ALL keeps the layer's input alone, e * T * h (Megatron's 2sbh at e = 2).
#pragma once

#include <tessera/abi.h>
#include <tessera/engine/manifest.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace tessera::train {

// One layer as the formula sees it.
struct LayerShape {
  enum class Attention { none, linear, gqa };
  enum class Ffn { none, linear, swiglu };
  Attention attention = Attention::gqa;
  Ffn ffn = Ffn::swiglu;
  int64_t hidden = 0;
  int64_t heads = 0;
  int64_t kv_heads = 0;
  int64_t head_dim = 0;
  int64_t intermediate = 0;
};

// The formula above, in bytes, for sequences of the given lengths.
double formula_layer_bytes(const LayerShape& layer, const std::vector<int64_t>& lengths,
                           ts_recompute policy, double bytes_per_element);
// Megatron's own, unadapted: s*b*h*(34 + 5*a*s/h) (16-bit activations, dropout, GELU MLP).
double megatron_paper_layer_bytes(int64_t seq, int64_t batch, int64_t hidden, int64_t heads);

// The layer's shape from a manifest when its blocks are of kinds the formula knows (gqa,
// linear, noop; swiglu, linear, noop); nullopt otherwise.
std::optional<LayerShape> layer_shape(const Manifest& manifest, int32_t layer);

// What a training step kept, measured by the trainer.
struct LayerMemory {
  uint64_t host_bytes = 0;       // residual inputs, normalised inputs, norm scales
  uint64_t workspace_bytes = 0;  // the blocks' train_workspace
  uint64_t total() const { return host_bytes + workspace_bytes; }
};

struct MemoryReport {
  ts_recompute policy = TS_RECOMPUTE_NONE;
  std::vector<int64_t> lengths;     // the sequences of the micro-batch measured
  std::vector<LayerMemory> layers;  // kept from the forward to the backward, per layer
  uint64_t head_bytes = 0;          // final norm input, output and scales; the logits
  // High-water mark of every activation buffer of the micro-batch (the kept ones, the
  // transient ones of the recomputation and of the backward), in bytes.
  uint64_t peak_bytes = 0;
  // Per trainable tensor, f32: master copies (when the model keeps another dtype),
  // gradients, and the two AdamW moments.
  uint64_t master_bytes = 0, gradient_bytes = 0, optimizer_bytes = 0;
  // The formula of memory.hpp per layer (nullopt where it does not know the blocks), for
  // f32 activations.
  std::vector<std::optional<double>> formula_bytes;
};

// A table: layer, measured host + workspace bytes, the formula's bytes; then the totals.
std::string format_memory_report(const MemoryReport& report);

// "none", "core", "all" ("?" for another value).
const char* recompute_policy_name(ts_recompute policy);

}  // namespace tessera::train
