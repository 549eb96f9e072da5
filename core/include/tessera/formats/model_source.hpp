// Opening a model from any source Tessera reads: a manifest (.toml, or a folder holding
// manifest.toml), a GGUF file, or a Hugging Face folder (config.json + safetensors, single or
// sharded). Every source ends up as the same three things: a complete Manifest, the weights
// under Hugging Face Llama names (model.layers.N.self_attn.q_proj.weight, ...), and the
// tokenizer and chat template when the source carries them.
#pragma once

#include <tessera/engine/manifest.hpp>
#include <tessera/engine/plugin_registry.hpp>
#include <tessera/engine/weights.hpp>
#include <tessera/text/tokenizer.hpp>

#include <filesystem>
#include <memory>
#include <string>

namespace tessera {

enum class ModelFormat {
  kManifest,     // .toml, or a folder with manifest.toml
  kGguf,         // .gguf file (architectures llama and deci)
  kHuggingFace,  // folder with config.json (LlamaForCausalLM, DeciLMForCausalLM)
};

std::string_view to_string(ModelFormat format);

// Decides from the path alone (extension, folder contents); throws ModelError naming the
// path and the accepted forms when it is none of them.
ModelFormat detect_model_format(const std::filesystem::path& path);

struct LoadedModel {
  ModelFormat format = ModelFormat::kManifest;
  std::filesystem::path path;  // what was opened
  // Complete: every layer's blocks, the global shape, runtime defaults. Its [weights] section
  // points back at the source (format "gguf" / "hf" / "safetensors" / "random").
  Manifest manifest;
  // Hugging Face names, f32/f16/bf16 (quantised GGUF tensors dequantised); empty for a manifest
  // with random weights, which Model draws from what the blocks declare.
  WeightStore weights;
  std::shared_ptr<const Tokenizer> tokenizer;  // null when the source has none
  std::string chat_template;                   // the model's Jinja template text; may be empty
  // Where chat_template came from, for messages: "'m.gguf' (tokenizer.chat_template)",
  // "'folder/tokenizer_config.json' (chat_template)", "'folder/chat_template.jinja'".
  std::string chat_template_source;
  // Why `tokenizer` is null (no tokenizer data, or one Tessera cannot use); empty otherwise.
  std::string tokenizer_error;
  // What the source calls its architecture ("LlamaForCausalLM", "DeciLMForCausalLM", GGUF's
  // general.architecture); empty for manifests.
  std::string architecture;
};

// Reads the model and its weights. Options the manifest's [runtime] section sets (threads,
// dtype, plugin paths, decoder) keep their defaults for GGUF and Hugging Face sources.
LoadedModel open_model(const std::filesystem::path& path);

// The format-specific readers open_model dispatches to.
LoadedModel load_gguf_model(const std::filesystem::path& path);
LoadedModel load_hf_model(const std::filesystem::path& path);  // folder or its config.json

// Only the weights of a GGUF file, under Hugging Face names (a manifest's format = "gguf").
WeightStore load_gguf_weights(const std::filesystem::path& path);
// Only the weights of a Hugging Face folder (or its config.json), single file or sharded
// (a manifest's format = "hf"); see hf_model.hpp.
WeightStore load_hf_weights(const std::filesystem::path& path);

// The weights the manifest asks for: "safetensors" reads m.weights.path, "gguf" and "hf" the file
// or folder it names. "random" draws what the blocks declare, so it needs their plugins: with
// a registry, init_random_weights(m, *registry, m.weights.seed); without one, an empty store
// that Model fills when it is built (what open_model gives for such a manifest). Throws
// ModelError for any other format.
WeightStore load_weights(const Manifest& m, const PluginRegistry* registry = nullptr);

}  // namespace tessera
