// Pieces the sub-commands share: finding plugins, opening a model.
#pragma once

#include <tessera/engine/manifest.hpp>
#include <tessera/engine/plugin_registry.hpp>
#include <tessera/engine/weight_plan.hpp>
#include <tessera/formats/model_source.hpp>

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace tessera::cli {

// Adds the manifest's plugin paths (if any) and the command line's, then loads
// every plugin found.
void load_plugins(PluginRegistry& registry, const std::vector<std::string>& cli_paths,
                  const Manifest* manifest = nullptr);

// The plan of the model's manifest (weight_plan.hpp) for the device it names, on one rank.
WeightPlan plan_for(const Manifest& manifest, const PluginRegistry& registry);

// Draws the weights of a manifest with random weights, which open_model leaves empty (what
// they are is what the blocks declare); leaves any other model alone.
void draw_random_weights(LoadedModel& model, const WeightPlan& plan);

// A model argument is a manifest (.toml) or a folder holding manifest.toml
// (what `tessera init-random` writes).
std::filesystem::path resolve_manifest_path(const std::string& model);

// "1,2, 3" -> {1, 2, 3}; throws naming the bad entry.
std::vector<int32_t> parse_token_list(const std::string& text);

// "5GB", "500MB", "64KiB", "1000": a size in bytes (KB/MB/GB are powers of 1000, KiB/MiB/GiB
// of 1024); throws naming the text for anything else or for 0.
uint64_t parse_byte_size(const std::string& text);

}  // namespace tessera::cli
