// tessera generate: run a model on a prompt and stream the new tokens.
#include <tessera/core/error.hpp>
#include <tessera/core/generator.hpp>
#include <tessera/core/init_random.hpp>
#include <tessera/core/manifest.hpp>
#include <tessera/core/model.hpp>
#include <tessera/core/thread_pool.hpp>

#include <iostream>
#include <memory>
#include <optional>

#include "commands.hpp"
#include "setup.hpp"

namespace tessera::cli {
namespace {

struct GenerateArgs {
  std::string model;
  std::string prompt;
  std::string tokens;
  std::vector<std::string> plugin_paths;
  int32_t max_tokens = 32;
  std::string decoder;
  std::optional<double> temperature;
  std::optional<int64_t> top_k;
  std::optional<double> top_p;
  std::optional<int64_t> seed;
  std::optional<int32_t> threads;
  std::string device;
  bool quiet = false;
};

int run_generate(const GenerateArgs& args) {
  Manifest manifest = load_manifest(resolve_manifest_path(args.model));
  if (!args.device.empty()) {
    if (args.device != "cpu" && args.device != "cuda")
      throw Error("--device must be cpu or cuda, not '" + args.device + "'");
    manifest.runtime.device = args.device;
  }
  if (args.threads) manifest.runtime.threads = *args.threads;

  std::vector<int32_t> prompt;
  if (!args.tokens.empty()) {
    prompt = parse_token_list(args.tokens);
  } else if (!args.prompt.empty()) {
    throw Error("model '" + args.model +
                "' has no tokenizer (tokenizers come with GGUF and Hugging Face models); pass "
                "token ids with --tokens");
  } else {
    throw Error("give a prompt: --tokens 1,2,3");
  }

  GenerateOptions options;
  options.max_new_tokens = args.max_tokens;
  options.decoder = manifest.runtime.decoder;
  if (!args.decoder.empty()) {
    options.decoder = BlockSpec{};
    options.decoder.kind = args.decoder;
  }
  if (options.decoder.kind.empty()) options.decoder.kind = "greedy";
  if (args.temperature) options.decoder.params.set("temperature", *args.temperature);
  if (args.top_k) options.decoder.params.set("top_k", *args.top_k);
  if (args.top_p) options.decoder.params.set("top_p", *args.top_p);
  if (args.seed) options.decoder.params.set("seed", *args.seed);

  PluginRegistry registry;
  load_plugins(registry, args.plugin_paths, &manifest);
  ThreadPool pool(manifest.runtime.threads);
  const int32_t capacity = std::min<int32_t>(manifest.model.max_seq_len,
                                             static_cast<int32_t>(prompt.size()) + args.max_tokens);
  Model model(manifest, registry, load_weights(manifest), pool, ModelOptions{1, capacity, nullptr});
  Generator generator(model, registry);

  const GenerateResult result = generator.generate(
      prompt, options, [&](int32_t token) { std::cout << token << ' ' << std::flush; });
  std::cout << std::endl;
  if (!args.quiet) {
    const auto n_prompt = static_cast<double>(prompt.size());
    const auto n_decoded = static_cast<double>(result.tokens.size()) - 1;
    const double prefill_tps = result.prefill_seconds > 0 ? n_prompt / result.prefill_seconds : 0;
    const double decode_tps =
        result.decode_seconds > 0 && n_decoded > 0 ? n_decoded / result.decode_seconds : 0;
    std::cerr << "prompt " << prompt.size() << " tokens, " << prefill_tps << " tok/s; generated "
              << result.tokens.size() << " tokens, " << decode_tps << " tok/s"
              << (result.stopped_on_eos ? " (end token)" : "") << "\n";
  }
  return 0;
}

}  // namespace

Runner add_generate_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("generate", "Generate tokens from a model");
  auto a = std::make_shared<GenerateArgs>();
  cmd->add_option("model", a->model, "Manifest (.toml) or model folder")->required();
  auto* prompt = cmd->add_option("-p,--prompt", a->prompt, "Prompt text (needs a tokenizer)");
  cmd->add_option("-t,--tokens", a->tokens, "Prompt as comma-separated token ids")
      ->excludes(prompt);
  cmd->add_option("-n,--max-tokens", a->max_tokens, "Most tokens to generate")
      ->check(CLI::Range(1, 1 << 20));
  cmd->add_option("--decoder", a->decoder, "Decoder provider: greedy, sampling, ...");
  cmd->add_option("--temperature", a->temperature, "Sampling temperature (> 0)");
  cmd->add_option("--top-k", a->top_k, "Keep the k most likely tokens (0 = all)");
  cmd->add_option("--top-p", a->top_p, "Keep the smallest set with this probability mass");
  cmd->add_option("--seed", a->seed, "Sampling seed: same seed, same tokens");
  cmd->add_option("--threads", a->threads, "CPU threads (0 = every core)")
      ->check(CLI::Range(0, 1024));
  cmd->add_option("--device", a->device, "cpu or cuda (overrides the manifest)");
  cmd->add_option("--plugin-path", a->plugin_paths, "Extra folder to search for plugins");
  cmd->add_flag("-q,--quiet", a->quiet, "No statistics on stderr");
  return [a] { return run_generate(*a); };
}

}  // namespace tessera::cli
