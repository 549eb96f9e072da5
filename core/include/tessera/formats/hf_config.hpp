// A Hugging Face config.json as a Manifest and back, for the two architectures Tessera runs:
//
//   LlamaForCausalLM   (model_type "llama"): every layer gqa + swiglu
//   DeciLMForCausalLM  (model_type "nemotron-nas", or "deci"): Puzzle children, one
//                      block_configs entry per layer (gqa with n_heads_in_group, linear, no-op
//                      attention; swiglu with ffn_mult, linear, no-op FFN). The older "deci"
//                      form with num_key_value_heads_per_layer is read too.
//
// What Tessera cannot run (other architectures, biases, other activations, window or sink
// attention, sparsified blocks, unknown RoPE scaling, quantised checkpoints) is refused by name,
// never ignored.
#pragma once

#include <tessera/abi.h>
#include <tessera/engine/manifest.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace tessera {

// DeciLM's FFN width rule: int(2 * ffn_mult * hidden / 3) rounded up to a multiple of 256,
// with ffn_mult first rounded to 6 decimals as DeciLM's config does. Throws ModelError when
// ffn_mult is not a finite number > 0 or the width would not fit an int32.
int64_t decilm_ffn_width(double ffn_mult, int64_t hidden_size);

// An ffn_mult for which decilm_ffn_width gives `width` back exactly: 3 * width / (2 * hidden)
// when that has at most 6 decimals, else the one with the fewest decimals; nullopt when there
// is none (the width is not a positive multiple of 256).
std::optional<double> decilm_ffn_mult_for_width(int64_t width, int64_t hidden_size);

struct HfConfig {
  std::string architecture;  // "LlamaForCausalLM" or "DeciLMForCausalLM"
  // Complete, with weights format "hf" and an empty path (the caller knows the folder), and
  // every DeciLM layer's kv_heads / intermediate_size given explicitly.
  Manifest manifest;
};

// Reads config.json text. Throws ModelError naming source_name, the JSON key (with the layer
// index for block_configs) and what was expected.
HfConfig parse_hf_config(std::string_view json_text, const std::string& source_name);

struct HfConfigWriteOptions {
  bool always_decilm = false;  // DeciLMForCausalLM even when every layer is the same
  ts_dtype torch_dtype = TS_BF16;
};

// True when every layer is gqa + swiglu with the same KV heads and width, so that the model is
// a plain LlamaForCausalLM.
bool is_uniform_llama(const Manifest& m);

// config.json text for the manifest (LlamaForCausalLM when uniform and not always_decilm,
// DeciLMForCausalLM otherwise). Throws ModelError naming the layer for anything the format
// cannot express: kinds other than gqa/linear/noop and swiglu/linear/noop, block parameters
// other than kv_heads / intermediate_size, and FFN widths the DeciLM rule cannot give (with the
// nearest widths it can).
std::string hf_config_json(const Manifest& m, const HfConfigWriteOptions& options = {});

}  // namespace tessera
