// Writing a model as a Hugging Face folder: config.json (LlamaForCausalLM, or
// DeciLMForCausalLM with block_configs for heterogeneous models; hf_config.hpp), safetensors
// weights in one file or in shards with model.safetensors.index.json, and the tokenizer files.
#pragma once

#include <tessera/abi.h>
#include <tessera/core/manifest.hpp>
#include <tessera/core/weights.hpp>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace tessera {

struct HfWriteOptions {
  std::optional<ts_dtype> dtype;  // f32, f16 or bf16 for every tensor; unset keeps each one's
  // 0: one model.safetensors. Otherwise shards of at most this many bytes (a larger tensor gets
  // a shard of its own) and model.safetensors.index.json, unless everything fits in one file.
  uint64_t max_shard_bytes = 0;
  bool always_decilm = false;  // DeciLMForCausalLM even for a uniform model
  // A Hugging Face folder whose tokenizer.json, tokenizer_config.json, special_tokens_map.json
  // and chat_template.jinja are copied (those present); empty: none.
  std::filesystem::path tokenizer_source;
  // Written as tokenizer_config.json {"chat_template": ...} when none is copied.
  std::string chat_template;
  bool overwrite = false;  // replace an existing non-empty folder
};

struct HfWriteResult {
  std::string architecture;          // "LlamaForCausalLM" or "DeciLMForCausalLM"
  std::vector<std::string> files;    // written, relative to the folder, sorted
  std::vector<std::string> dropped;  // tensors of the store that no block uses
  uint64_t tensor_bytes = 0;         // bytes of tensor data written
};

// Checks everything (the config can express the manifest, every tensor the blocks need is
// present with its shape and a float dtype) before writing, writes into a staging folder next
// to `folder` and renames it into place, so that a failure leaves no half-written model.
// Throws ModelError naming the layer or tensor.
HfWriteResult write_hf_model(const std::filesystem::path& folder, const Manifest& manifest,
                             const WeightStore& weights, const HfWriteOptions& options = {});

// The dtype written as torch_dtype and used when options.dtype is unset: that of the embedding.
ts_dtype dominant_dtype(const WeightStore& weights);

}  // namespace tessera
