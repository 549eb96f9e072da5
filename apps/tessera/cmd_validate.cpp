// tessera validate: read a model (manifest, GGUF file or Hugging Face folder), resolve every
// block to a plugin provider, and check the weights against what the blocks expect by
// assembling the model.
#include <tessera/engine/init_random.hpp>
#include <tessera/engine/manifest.hpp>
#include <tessera/engine/model.hpp>
#include <tessera/engine/plugin_registry.hpp>
#include <tessera/engine/thread_pool.hpp>
#include <tessera/formats/model_source.hpp>

#include <filesystem>
#include <iostream>
#include <memory>
#include <system_error>
#include <utility>

#include "commands.hpp"
#include "setup.hpp"

namespace tessera::cli {
namespace {

struct ValidateArgs {
  std::string manifest;
  std::vector<std::string> plugin_paths;
  bool no_weights = false;
};

ts_device device_of(const Manifest& m) {
  return m.runtime.device == "cuda" ? TS_DEVICE_CUDA : TS_DEVICE_CPU;
}

int run_validate(const ValidateArgs& args) {
  // A manifest is read alone (its weights only when they are checked); a GGUF file or a
  // Hugging Face folder is opened whole, as generate opens it.
  const std::filesystem::path path(args.manifest);
  std::error_code ec;
  const bool is_manifest =
      path.extension() == ".toml" || std::filesystem::exists(path / "manifest.toml", ec);
  LoadedModel loaded;
  if (is_manifest)
    loaded.manifest = load_manifest(resolve_manifest_path(args.manifest));
  else
    loaded = open_model(path);
  const Manifest& manifest = loaded.manifest;
  PluginRegistry registry;
  load_plugins(registry, args.plugin_paths, &manifest);

  const ts_device device = device_of(manifest);
  for (int32_t i = 0; i < manifest.model.num_layers; ++i) {
    const LayerSpec& layer = manifest.layers[static_cast<size_t>(i)];
    registry.find(TS_KIND_ATTENTION, layer.attention.kind, device, layer.attention.plugin);
    registry.find(TS_KIND_FFN, layer.ffn.kind, device, layer.ffn.plugin);
  }
  registry.find(TS_KIND_DECODER,
                manifest.runtime.decoder.kind.empty() ? "greedy" : manifest.runtime.decoder.kind,
                device, manifest.runtime.decoder.plugin);

  std::cout << manifest.source.string() << ": " << manifest.model.num_layers << " layers, hidden "
            << manifest.model.hidden_size << ", vocab " << manifest.model.vocab_size << "\n";
  if (args.no_weights) {
    std::cout << "ok (providers resolved; weights not checked)\n";
    return 0;
  }
  ThreadPool pool(1);
  Model model(manifest, registry,
              is_manifest ? load_weights(manifest, &registry) : std::move(loaded.weights), pool,
              ModelOptions{1, 1, nullptr});
  int64_t parameters = 0;
  for (int32_t i = 0; i < model.num_layers(); ++i) {
    const Block& a = model.attention(i);
    const Block& f = model.ffn(i);
    parameters += a.info().parameters + f.info().parameters;
    std::cout << "  " << a.label() << " | " << f.provider().provider->name << " ("
              << f.provider().plugin_name() << ")\n";
  }
  std::cout << "block parameters " << parameters << ", KV cache "
            << model.kv_cache().bytes_per_token() << " bytes per token\n";
  std::cout << "ok\n";
  return 0;
}

}  // namespace

Runner add_validate_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("validate", "Check a manifest, its plugins and its weights");
  auto args = std::make_shared<ValidateArgs>();
  cmd->add_option("manifest", args->manifest,
                  "Manifest (.toml), model folder, .gguf file or Hugging Face folder")
      ->required();
  cmd->add_option("--plugin-path", args->plugin_paths, "Extra folder to search for plugins")
      ->check(CLI::ExistingDirectory);
  cmd->add_flag("--no-weights", args->no_weights, "Do not load the weights");
  return [args] { return run_validate(*args); };
}

}  // namespace tessera::cli
