// Writing a model as a Hugging Face folder: config.json (LlamaForCausalLM, or
// DeciLMForCausalLM with block_configs for heterogeneous models; hf_config.hpp), safetensors
// weights in one file or in shards with model.safetensors.index.json, and the tokenizer files.
#pragma once

#include <tessera/abi.h>
#include <tessera/engine/manifest.hpp>
#include <tessera/engine/weight_plan.hpp>
#include <tessera/engine/weights.hpp>
#include <tessera/text/tokenizer.hpp>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace tessera {

// Where a model folder's tokenizer files come from: a Hugging Face folder's files are copied
// (tokenizer.json, tokenizer_config.json, special_tokens_map.json, chat_template.jinja, those
// present); otherwise a loaded tokenizer (a GGUF file's) is written as tokenizer.json, and
// tokenizer_config.json gets its special tokens and the chat template.
struct TokenizerFiles {
  std::filesystem::path source;                // empty: nothing to copy
  std::shared_ptr<const Tokenizer> tokenizer;  // null: none to write
  std::string chat_template;                   // may be empty
};

// Writes them into `folder`; returns the names written. *note (when given) gets why a
// tokenizer that exists was not written (it cannot be expressed as tokenizer.json), else "".
std::vector<std::string> write_tokenizer_files(const std::filesystem::path& folder,
                                               const TokenizerFiles& files,
                                               std::string* note = nullptr);

struct HfWriteOptions {
  std::optional<ts_dtype> dtype;  // f32, f16 or bf16 for every tensor; unset keeps each one's
  // 0: one model.safetensors. Otherwise shards of at most this many bytes (a larger tensor gets
  // a shard of its own) and model.safetensors.index.json, unless everything fits in one file.
  uint64_t max_shard_bytes = 0;
  bool always_decilm = false;  // DeciLMForCausalLM even for a uniform model
  TokenizerFiles tokenizer;    // the tokenizer files to copy or write
  bool overwrite = false;      // replace an existing non-empty folder
};

struct HfWriteResult {
  std::string architecture;          // "LlamaForCausalLM" or "DeciLMForCausalLM"
  std::vector<std::string> files;    // written, relative to the folder, sorted
  std::vector<std::string> dropped;  // tensors of the store that no block uses
  uint64_t tensor_bytes = 0;         // bytes of tensor data written
  std::string tokenizer_note;        // why a tokenizer was not written; empty otherwise
};

// Writes the model `plan` describes (plan_weights of its manifest): checks everything (the
// config can express the manifest, every tensor the blocks declare is present with its
// declared shape and a float dtype) before writing, writes into a staging folder next to
// `folder` and renames it into place, so that a failure leaves no half-written model. A
// block whose weights have a prefix of their own (a variant) is written under its layer's
// usual names. Throws ModelError naming the layer or tensor, and for a block that declares
// nothing (its provider has no describe).
HfWriteResult write_hf_model(const std::filesystem::path& folder, const WeightPlan& plan,
                             const WeightStore& weights, const HfWriteOptions& options = {});

// The dtype written as torch_dtype and used when options.dtype is unset: that of the embedding.
ts_dtype dominant_dtype(const WeightStore& weights);

}  // namespace tessera
