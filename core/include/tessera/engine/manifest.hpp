// Model manifests: the TOML document that assembles a model from plugins.
//
//   [model]    global shape (hidden_size, num_layers, num_heads, vocab_size, ...)
//   [weights]  where the weights come from
//   [[layers]] range = "0-15", attention = { kind = "gqa", kv_heads = 8 }, ffn = {...}
//   [runtime]  device, dtype, threads, plugin_paths, [runtime.decoder]
//
// See docs/manifest.md for every key. Unknown keys are errors.
#pragma once

#include <tessera/abi.h>
#include <tessera/engine/params.hpp>
#include <tessera/engine/rope_scaling.hpp>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace tessera {

struct SourceLocation {
  std::string file;
  int line = 0;
  int column = 0;
};

// One sub-block or decoder: its kind, optionally the plugin that must provide
// it, and its own parameters (everything in the table except kind, plugin and, in
// a layer's blocks, prefix).
struct BlockSpec {
  std::string kind;
  std::string plugin;  // empty: choose the best-scoring provider
  // Put before the block-local names of its weights ("model.layers.3.variants.ffn_50pct.");
  // empty: model.layers.N.self_attn. / model.layers.N.mlp. Layer blocks only.
  std::string prefix;
  ParamList params;
  SourceLocation where;
};

// The most layers a model may declare: the layer table is built before any weight is read,
// so a mistyped count must not allocate it (real models have a few hundred at most).
inline constexpr int32_t kMaxLayers = 1 << 20;

struct ModelSpec {
  std::string name;
  int32_t hidden_size = 0;
  int32_t num_layers = 0;
  int32_t num_heads = 0;
  int32_t head_dim = 0;           // default hidden_size / num_heads
  int32_t num_kv_heads = 0;       // default for gqa blocks that give none; default num_heads
  int32_t intermediate_size = 0;  // default for swiglu blocks that give none
  int32_t vocab_size = 0;
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;  // none unless [model] rope_scaling is given
  double rms_norm_eps = 1e-5;
  int32_t max_seq_len = 2048;
  bool tie_embeddings = false;
  int32_t bos_token_id = -1;
  std::vector<int64_t> eos_token_ids;
};

struct WeightsSpec {
  std::string format;          // "safetensors" or "random"
  std::filesystem::path path;  // resolved against the manifest's folder; empty for random
  uint64_t seed = 0;           // for "random"
  // unread = "allow": the file may hold tensors this model does not read (a Puzzle library
  // holds every variant); the default refuses them, naming the first.
  bool allow_unread = false;
  SourceLocation where;
};

struct LayerSpec {
  BlockSpec attention;
  BlockSpec ffn;
};

struct RuntimeSpec {
  std::string device = "cpu";
  ts_dtype dtype = TS_F32;         // activations (the CPU blocks need f32)
  ts_dtype weight_dtype = TS_F32;  // block matrices, embedding and lm head; norms stay f32
  // weight_dtype = "stored": each matrix runs in the dtype its file stores it in, a quantised
  // one (ABI 2.3) kept quantised where the block that reads it accepts that, else
  // dequantised to f32.
  bool weights_as_stored = false;
  int32_t threads = 0;  // 0: every core
  // The KV cache's dtype, passed to every block as the parameter kv_dtype (a
  // block's own kv_dtype wins); unset: each attention block keeps its default.
  std::optional<ts_dtype> kv_dtype;
  std::vector<std::filesystem::path> plugin_paths;    // resolved against the manifest's folder
  std::vector<SourceLocation> plugin_path_locations;  // of each entry, when parsed from a file
  BlockSpec decoder;                                  // kind defaults to "greedy"
  BlockSpec parallel;                                 // kind defaults to "local"

  // Every matrix in `dtype` (f32, f16 or bf16), whatever the file stores.
  void set_weight_dtype(ts_dtype matrices) {
    weight_dtype = matrices;
    weights_as_stored = false;
  }
};

struct Manifest {
  std::filesystem::path source;  // file it was read from; empty when parsed from text
  ModelSpec model;
  WeightsSpec weights;
  std::vector<LayerSpec> layers;  // exactly model.num_layers, one per layer
  RuntimeSpec runtime;

  // Model-wide fields as block parameters (num_heads, head_dim, rope_theta, ...),
  // followed by the block's own.
  ParamList block_params(const BlockSpec& block) const;
};

// Throws ManifestError with file:line:column and what was expected.
Manifest load_manifest(const std::filesystem::path& path);
Manifest parse_manifest(std::string_view text, const std::string& source_name,
                        const std::filesystem::path& base_dir);

// Writes a manifest back as TOML (layers with equal blocks merged into ranges).
std::string to_toml(const Manifest& manifest);

}  // namespace tessera
