// How GGUF files (llama.cpp's naming, architectures llama and deci) name the tensors of the
// blocks Tessera reads from them: data beside the GGUF reader, per block kind. A layer's
// tensors are blk.N.<suffix>; they become <block prefix><local name> (the names the block
// declares through describe), and the block's norm model.layers.N.<norm>.
#pragma once

#include <tessera/abi.h>

#include <span>
#include <string_view>

namespace tessera::gguf_names {

struct TensorName {
  const char* local;  // as the block declares it: "q_proj.weight"
  const char* gguf;   // after "blk.N.": "attn_q.weight"
  // Stored with the rows of each head interleaved for a pairwise RoPE (attn_q, attn_k):
  // the reader puts them back in Hugging Face's order.
  bool rope_rows;
};

struct BlockNames {
  ts_kind kind;
  const char* name;  // the block kind: "gqa"
  // GGUF name of the norm before the block ("attn_norm.weight"), paired with the host's
  // Hugging Face name; null for an identity, which has none.
  const char* norm_gguf;
  const char* norm_hf;
  std::span<const TensorName> tensors;
};

inline constexpr TensorName kGqa[] = {
    {"q_proj.weight", "attn_q.weight", true},
    {"k_proj.weight", "attn_k.weight", true},
    {"v_proj.weight", "attn_v.weight", false},
    {"o_proj.weight", "attn_output.weight", false},
};
// Deci's linear replacement of attention: one [hidden, hidden] matrix in attn_output.
inline constexpr TensorName kLinearAttention[] = {
    {"linear_attn.weight", "attn_output.weight", false},
};
inline constexpr TensorName kSwiglu[] = {
    {"gate_proj.weight", "ffn_gate.weight", false},
    {"up_proj.weight", "ffn_up.weight", false},
    {"down_proj.weight", "ffn_down.weight", false},
};

inline constexpr BlockNames kBlocks[] = {
    {TS_KIND_ATTENTION, "gqa", "attn_norm.weight", "input_layernorm.weight", kGqa},
    {TS_KIND_ATTENTION, "linear", "attn_norm.weight", "input_layernorm.weight", kLinearAttention},
    {TS_KIND_ATTENTION, "noop", nullptr, nullptr, {}},
    {TS_KIND_FFN, "swiglu", "ffn_norm.weight", "post_attention_layernorm.weight", kSwiglu},
    {TS_KIND_FFN, "noop", nullptr, nullptr, {}},
};

// The model-wide tensors: Hugging Face name, GGUF name.
struct ModelTensorName {
  const char* hf;
  const char* gguf;
};
inline constexpr ModelTensorName kModelTensors[] = {
    {"model.embed_tokens.weight", "token_embd.weight"},
    {"model.norm.weight", "output_norm.weight"},
    {"lm_head.weight", "output.weight"},
};

// The names of a block kind, or null when GGUF files have none for it.
inline const BlockNames* find_block(ts_kind kind, std::string_view name) {
  for (const BlockNames& b : kBlocks)
    if (b.kind == kind && name == b.name) return &b;
  return nullptr;
}

}  // namespace tessera::gguf_names
