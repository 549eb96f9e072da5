// The options `tessera generate` and `tessera chat` share: where the model runs (device,
// threads, plugin folders) and how tokens are chosen (decoder and sampling flags).
#pragma once

#include <tessera/chat/chat_template.hpp>
#include <tessera/engine/generator.hpp>
#include <tessera/formats/decoder_weights.hpp>
#include <tessera/formats/model_source.hpp>

#include <CLI/CLI.hpp>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace tessera::cli {

struct RunOptions {
  std::vector<std::string> plugin_paths;
  std::string decoder;
  std::optional<double> temperature;
  std::optional<int64_t> top_k;
  std::optional<double> top_p;
  std::optional<int64_t> seed;
  std::optional<int32_t> threads;
  std::string device;
  std::string kv_dtype;      // empty: the manifest's
  std::string weight_dtype;  // empty: the manifest's
  bool quiet = false;
  std::string decoder_weights;              // --decoder-weights: e.g. Medusa heads
  std::vector<std::string> decoder_params;  // --decoder-param KEY=VALUE
  bool exact = false;                       // --exact: row-invariant passes
};

// Registers --decoder, --temperature, --top-k, --top-p, --seed, --threads, --device,
// --kv-dtype, --weight-dtype, --plugin-path and --quiet on the command.
void add_run_options(CLI::App& cmd, RunOptions& options);

// --kv-dtype f32|bf16|f16, and setting it on a manifest (empty: leave it).
void add_kv_dtype_option(CLI::App& cmd, std::string& kv_dtype);
void apply_kv_dtype(Manifest& manifest, const std::string& kv_dtype);

// --weight-dtype f32|bf16|f16|stored, and setting it on a manifest (empty: leave it).
void add_weight_dtype_option(CLI::App& cmd, std::string& weight_dtype);
void apply_weight_dtype(Manifest& manifest, const std::string& weight_dtype);

// open_model(path) with --device, --threads, --kv-dtype and --weight-dtype applied to its
// manifest.
LoadedModel open_model_for_run(const std::string& path, const RunOptions& options);

// The manifest's decoder, or --decoder, with the sampling flags and --decoder-param as its
// parameters.
GenerateOptions generate_options(const Manifest& manifest, const RunOptions& options,
                                 int32_t max_new_tokens);

// --decoder-weights read for `model` and attached to `options` (whose parameters get the
// weights' config); NULL when the flag is not given. Keep it alive while generating.
std::unique_ptr<DecoderWeights> attach_decoder_weights(const RunOptions& run, const Model& model,
                                                       GenerateOptions& options);

// "model 'PATH' has no tokenizer: WHY; WHAT" for a model without a usable tokenizer.
std::string no_tokenizer_message(const std::string& path, const LoadedModel& model,
                                 const std::string& what_instead);

// The model's chat template. An unrecognised one is an Error naming where it came from
// (chat_template_source, else `path`), followed by `; WHAT_INSTEAD`.
ChatTemplate known_chat_template(const std::string& path, const LoadedModel& model,
                                 const std::string& what_instead);

}  // namespace tessera::cli
