#include "run_options.hpp"
#include "numeric_flags.hpp"

#include <tessera/dtype.hpp>
#include <tessera/engine/error.hpp>
#include <tessera/engine/thread_pool.hpp>

#include <cerrno>
#include <cstdlib>
#include <string>
#include <utility>

namespace tessera::cli {

void add_kv_dtype_option(CLI::App& cmd, std::string& kv_dtype) {
  cmd.add_option("--kv-dtype", kv_dtype,
                 "KV cache dtype: f32, bf16 or f16 (overrides [runtime] kv_dtype; 16-bit halves "
                 "the cache)")
      ->check(CLI::IsMember({"f32", "bf16", "f16"}));
}

void apply_kv_dtype(Manifest& manifest, const std::string& kv_dtype) {
  if (kv_dtype.empty()) return;
  manifest.runtime.kv_dtype = parse_dtype(kv_dtype);  // CLI11 let only f32, bf16 and f16 through
}

void add_weight_dtype_option(CLI::App& cmd, std::string& weight_dtype) {
  cmd.add_option("--weight-dtype", weight_dtype,
                 "Weights: f32, bf16 or f16 for every matrix (default: the manifest's, f32 for a "
                 "GGUF file), or stored: each as its file stores it, quantised ones kept "
                 "quantised")
      ->check(CLI::IsMember({"f32", "bf16", "f16", "stored"}));
}

void apply_weight_dtype(Manifest& manifest, const std::string& weight_dtype) {
  if (weight_dtype.empty()) return;
  if (weight_dtype == "stored") {
    manifest.runtime.weights_as_stored = true;
    return;
  }
  manifest.runtime.set_weight_dtype(parse_dtype(weight_dtype).value());  // CLI11 checked it
}

void add_run_options(CLI::App& cmd, RunOptions& o) {
  cmd.add_option("--decoder", o.decoder, "Decoder provider: greedy, sampling, ...");
  cmd.add_option("--temperature", o.temperature, "Sampling temperature (> 0)")
      ->check(number_in(0, HUGE_VAL, true));
  cmd.add_option("--top-k", o.top_k, "Keep the k most likely tokens (0 = all)")
      ->check(integer_in(0, INT32_MAX));
  cmd.add_option("--top-p", o.top_p, "Keep the smallest set with this probability mass")
      ->check(number_in(0, 1, true));
  cmd.add_option("--seed", o.seed, "Sampling seed: same seed, same tokens")
      ->check(integer_in(0, INT64_MAX));
  cmd.add_option("--threads", o.threads, "CPU threads (0 = every core)")
      ->check(integer_in(0, ThreadPool::kMaxThreads));
  cmd.add_option("--device", o.device, "cpu or cuda (overrides the manifest)");
  add_kv_dtype_option(cmd, o.kv_dtype);
  add_weight_dtype_option(cmd, o.weight_dtype);
  cmd.add_option("--plugin-path", o.plugin_paths, "Extra folder to search for plugins")
      ->check(CLI::ExistingDirectory);
  cmd.add_flag("-q,--quiet", o.quiet, "No statistics on stderr");
  cmd.add_option("--decoder-weights", o.decoder_weights,
                 "The decoder's own weights: a folder of .safetensors (and config.json) or one "
                 "file, e.g. Medusa heads");
  cmd.add_option("--decoder-param", o.decoder_params,
                 "A decoder parameter KEY=VALUE (repeatable), e.g. tree=chain-3");
  cmd.add_flag("--exact", o.exact,
               "Row-invariant passes: a token's logits do not depend on the rest of its pass, so "
               "Medusa gives exactly greedy's tokens and a batch each sequence alone (slower)");
}

LoadedModel open_model_for_run(const std::string& path, const RunOptions& o) {
  if (!o.device.empty() && o.device != "cpu" && o.device != "cuda")
    throw Error("--device must be cpu or cuda, not '" + o.device + "'");
  LoadedModel model = open_model(path);
  if (!o.device.empty()) model.manifest.runtime.device = o.device;
  if (o.threads) model.manifest.runtime.threads = *o.threads;
  apply_kv_dtype(model.manifest, o.kv_dtype);
  apply_weight_dtype(model.manifest, o.weight_dtype);
  return model;
}

GenerateOptions generate_options(const Manifest& manifest, const RunOptions& o,
                                 int32_t max_new_tokens) {
  GenerateOptions options;
  options.max_new_tokens = max_new_tokens;
  options.row_invariant = o.exact;
  options.decoder = manifest.runtime.decoder;
  if (!o.decoder.empty()) {
    options.decoder = BlockSpec{};
    options.decoder.kind = o.decoder;
  }
  if (options.decoder.kind.empty()) options.decoder.kind = "greedy";
  // Sampling settings ask for the sampling decoder: taken when none was named, refused with
  // the way out when greedy was.
  std::string sampling_flags;
  for (const auto& [given, flag] :
       {std::pair<bool, const char*>{o.temperature.has_value(), "--temperature"},
        {o.top_k.has_value(), "--top-k"},
        {o.top_p.has_value(), "--top-p"},
        {o.seed.has_value(), "--seed"}})
    if (given) sampling_flags += (sampling_flags.empty() ? "" : ", ") + std::string(flag);
  if (!sampling_flags.empty() && options.decoder.kind == "greedy") {
    if (!o.decoder.empty())
      throw Error(sampling_flags + " set how to sample, and --decoder greedy does not sample; " +
                  "use --decoder sampling, or leave out " + sampling_flags);
    options.decoder.kind = "sampling";
  }
  if (o.temperature) options.decoder.params.set("temperature", *o.temperature);
  if (o.top_k) options.decoder.params.set("top_k", *o.top_k);
  if (o.top_p) options.decoder.params.set("top_p", *o.top_p);
  if (o.seed) options.decoder.params.set("seed", *o.seed);
  for (const std::string& kv : o.decoder_params) {
    const size_t eq = kv.find('=');
    if (eq == std::string::npos || eq == 0)
      throw Error("--decoder-param '" + kv + "': expected KEY=VALUE");
    const std::string key = kv.substr(0, eq), value = kv.substr(eq + 1);
    // An integer, else a number, else the text itself.
    char* end = nullptr;
    errno = 0;
    const long long i = std::strtoll(value.c_str(), &end, 10);
    if (!value.empty() && *end == '\0' && errno == 0) {
      options.decoder.params.set(key, static_cast<int64_t>(i));
      continue;
    }
    const double d = std::strtod(value.c_str(), &end);
    if (!value.empty() && *end == '\0')
      options.decoder.params.set(key, d);
    else
      options.decoder.params.set(key, value);
  }
  return options;
}

std::unique_ptr<DecoderWeights> attach_decoder_weights(const RunOptions& run, const Model& model,
                                                       GenerateOptions& options) {
  if (run.decoder_weights.empty()) return nullptr;
  auto weights = std::make_unique<DecoderWeights>(run.decoder_weights, options.decoder.kind,
                                                  options.decoder.params, &model.lm_head());
  options.decoder_weights = weights->c_weights();
  return weights;
}

std::string no_tokenizer_message(const std::string& path, const LoadedModel& model,
                                 const std::string& what_instead) {
  const std::string why = model.tokenizer_error.empty()
                              ? std::string("tokenizers come with GGUF and Hugging Face models")
                              : model.tokenizer_error;
  return "model '" + path + "' has no tokenizer (" + why + "); " + what_instead;
}

ChatTemplate known_chat_template(const std::string& path, const LoadedModel& model,
                                 const std::string& what_instead) {
  try {
    return ChatTemplate::from_template_text(model.chat_template);
  } catch (const ChatTemplateError& e) {
    const std::string from = model.chat_template_source.empty() ? path : model.chat_template_source;
    throw Error(from + ": " + e.what() + "; " + what_instead);
  }
}

}  // namespace tessera::cli
