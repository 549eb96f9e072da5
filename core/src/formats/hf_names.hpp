// How Hugging Face checkpoints (LlamaForCausalLM, DeciLMForCausalLM) name the tensors of the
// blocks their config.json describes: data beside the Hugging Face reader, per block kind.
// A layer's tensors are model.layers.N.self_attn.<local> and model.layers.N.mlp.<local>, the
// block-local names being those the blocks declare through describe; the norms before them
// are model.layers.N.input_layernorm.weight and model.layers.N.post_attention_layernorm.weight.
#pragma once

#include <tessera/abi.h>

#include <span>
#include <string_view>

namespace tessera::hf_names {

struct BlockNames {
  ts_kind kind;
  const char* name;                      // the block kind: "gqa"
  bool has_norm;                         // false for an identity, which has no norm either
  std::span<const char* const> tensors;  // block-local names
};

inline constexpr const char* kGqa[] = {"q_proj.weight", "k_proj.weight", "v_proj.weight",
                                       "o_proj.weight"};
// DeciLM's "replace_with_linear": one [hidden, hidden] matrix.
inline constexpr const char* kLinearAttention[] = {"linear_attn.weight"};
inline constexpr const char* kSwiglu[] = {"gate_proj.weight", "up_proj.weight", "down_proj.weight"};
inline constexpr const char* kLinearFfn[] = {"linear_mlp.weight"};

inline constexpr BlockNames kBlocks[] = {
    {TS_KIND_ATTENTION, "gqa", true, kGqa},
    {TS_KIND_ATTENTION, "linear", true, kLinearAttention},
    {TS_KIND_ATTENTION, "noop", false, {}},
    {TS_KIND_FFN, "swiglu", true, kSwiglu},
    {TS_KIND_FFN, "linear", true, kLinearFfn},
    {TS_KIND_FFN, "noop", false, {}},
};

// The names of a block kind, or null when Hugging Face checkpoints have none for it.
inline const BlockNames* find_block(ts_kind kind, std::string_view name) {
  for (const BlockNames& b : kBlocks)
    if (b.kind == kind && name == b.name) return &b;
  return nullptr;
}

}  // namespace tessera::hf_names
