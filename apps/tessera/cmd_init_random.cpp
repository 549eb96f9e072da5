// tessera init-random: a model of a given shape with seeded random weights
// (same seed, same bytes), written as manifest.toml + model.safetensors.
#include <tessera/engine/error.hpp>
#include <tessera/engine/init_random.hpp>
#include <tessera/engine/manifest.hpp>
#include <tessera/engine/plugin_registry.hpp>
#include <tessera/engine/weights.hpp>
#include <tessera/formats/safetensors.hpp>
#include <tessera/tools/staging_folder.hpp>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>

#include "commands.hpp"
#include "numeric_flags.hpp"
#include "setup.hpp"

namespace tessera::cli {
namespace {

struct InitRandomArgs {
  std::string shape;
  std::string manifest;
  std::string output;
  uint64_t seed = 0;
  bool force = false;
  std::vector<std::string> plugin_paths;
};

int run_init_random(const InitRandomArgs& args) {
  namespace fs = std::filesystem;
  if (args.shape.empty() == args.manifest.empty())
    throw Error("give exactly one of --shape (" + [] {
      std::string names;
      for (const auto& n : builtin_shape_names()) names += (names.empty() ? "" : ", ") + n;
      return names;
    }() + ") or --manifest");
  Manifest manifest = args.shape.empty() ? load_manifest(resolve_manifest_path(args.manifest))
                                         : builtin_shape(args.shape);

  const fs::path out(args.output);
  // Everything goes into a staging folder that replaces the output only once complete: a
  // failed write (disk full, a file-size limit) leaves no half-written model, and an existing
  // non-empty folder is replaced only with --force.
  StagingFolder staging(out, args.force);

  // The tensors and their laws are what the blocks declare: their plugins say.
  PluginRegistry registry;
  load_plugins(registry, args.plugin_paths, &manifest);
  const WeightPlan plan = plan_for(manifest, registry);
  const WeightStore weights = init_random_weights(plan, args.seed);
  write_safetensors(staging.path() / "model.safetensors", weights,
                    {{"format", "pt"}, {"tessera.seed", std::to_string(args.seed)}});
  manifest.weights.format = "safetensors";
  manifest.weights.path = "model.safetensors";
  manifest.weights.seed = 0;
  {
    std::ofstream f(staging.path() / "manifest.toml");
    f << to_toml(manifest);
    f.flush();
    if (!f) throw Error("cannot write " + (out / "manifest.toml").string());
  }
  staging.commit();
  int64_t parameters = 0;
  for (const auto& [name, t] : weights.all()) parameters += t.numel();
  std::cout << "wrote " << (out / "manifest.toml").string() << " and model.safetensors ("
            << parameters << " parameters, seed " << args.seed << ")\n";
  return 0;
}

}  // namespace

Runner add_init_random_command(CLI::App& app) {
  auto* cmd =
      app.add_subcommand("init-random", "Write a model of a given shape with random weights");
  auto a = std::make_shared<InitRandomArgs>();
  cmd->add_option("--shape", a->shape, "Built-in shape: smollm2-135m, llama-3.1-8b");
  cmd->add_option("--manifest", a->manifest, "Or a manifest giving a (heterogeneous) layout");
  cmd->add_option("-o,--output", a->output, "Folder to write")->required();
  cmd->add_option("--seed", a->seed, "Seed: same seed, same bytes")->check(unsigned_integer());
  cmd->add_flag("-f,--force", a->force, "Replace an existing non-empty output folder");
  cmd->add_option("--plugin-path", a->plugin_paths, "Extra folder to search for plugins")
      ->check(CLI::ExistingDirectory);
  return [a] { return run_init_random(*a); };
}

}  // namespace tessera::cli
