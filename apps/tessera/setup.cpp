#include "setup.hpp"

#include <tessera/engine/error.hpp>
#include <tessera/engine/init_random.hpp>

#include <charconv>
#include <cstdint>
#include <filesystem>
#include <string>
#include <utility>

namespace tessera::cli {

void load_plugins(PluginRegistry& registry, const std::vector<std::string>& cli_paths,
                  const Manifest* manifest) {
  for (const auto& p : cli_paths) registry.add_search_path(p);
  if (manifest != nullptr) {
    const RuntimeSpec& rt = manifest->runtime;
    for (size_t i = 0; i < rt.plugin_paths.size(); ++i) {
      // Like --plugin-path: a folder that is not there is an error, not a silent skip.
      std::error_code ec;
      if (!std::filesystem::is_directory(rt.plugin_paths[i], ec)) {
        const std::string what =
            "'plugin_paths' entry '" + rt.plugin_paths[i].string() + "' in [runtime] " +
            (std::filesystem::exists(rt.plugin_paths[i], ec) ? "is not a folder"
                                                             : "does not exist") +
            "; expected a folder of libtessera-*.so plugins";
        if (i < rt.plugin_path_locations.size() && rt.plugin_path_locations[i].line > 0) {
          const SourceLocation& at = rt.plugin_path_locations[i];
          throw ManifestError(at.file, at.line, at.column, what);
        }
        throw Error(manifest_display_name(*manifest) + ": " + what);
      }
      registry.add_search_path(rt.plugin_paths[i]);
    }
  }
  // A broken library on the path does not stop the others: it is reported by `plugins` and
  // in the error of a lookup it might have served.
  registry.load_all(/*skip_broken=*/true);
}

WeightPlan plan_for(const Manifest& manifest, const PluginRegistry& registry) {
  PlanOptions options;
  options.device = manifest.runtime.device == "cuda" ? TS_DEVICE_CUDA : TS_DEVICE_CPU;
  return plan_weights(manifest, registry, options);
}

void draw_random_weights(LoadedModel& model, const WeightPlan& plan) {
  if (model.manifest.weights.format != "random" || !model.weights.all().empty()) return;
  model.weights = init_random_weights(plan, model.manifest.weights.seed);
}

std::filesystem::path resolve_manifest_path(const std::string& model) {
  namespace fs = std::filesystem;
  fs::path p(model);
  if (fs::is_directory(p)) {
    if (fs::exists(p / "manifest.toml")) return p / "manifest.toml";
    throw Error("model folder '" + model + "' has no manifest.toml");
  }
  if (!fs::exists(p)) throw Error("model '" + model + "' does not exist");
  if (p.extension() != ".toml")
    throw Error("model '" + model +
                "' is not a manifest (.toml) or a folder with manifest.toml, which this command "
                "needs (`tessera convert MODEL DIR --to manifest` writes one for a GGUF file or a "
                "Hugging Face folder)");
  return p;
}

std::vector<int32_t> parse_token_list(const std::string& text) {
  std::vector<int32_t> out;
  size_t pos = 0;
  int index = 0;
  while (pos <= text.size()) {
    size_t end = text.find(',', pos);
    if (end == std::string::npos) end = text.size();
    std::string item = text.substr(pos, end - pos);
    const auto first = item.find_first_not_of(" \t");
    const auto last = item.find_last_not_of(" \t");
    item = first == std::string::npos ? "" : item.substr(first, last - first + 1);
    int32_t value = 0;
    auto [ptr, ec] = std::from_chars(item.data(), item.data() + item.size(), value);
    if (item.empty() || ec != std::errc() || ptr != item.data() + item.size() || value < 0)
      throw Error("--tokens entry " + std::to_string(index) + " ('" + item +
                  "') is not a non-negative integer token id");
    out.push_back(value);
    ++index;
    pos = end + 1;
  }
  return out;
}

uint64_t parse_byte_size(const std::string& text) {
  uint64_t value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  const std::string unit(end, text.data() + text.size());
  static const std::pair<const char*, uint64_t> kUnits[] = {{"", 1},
                                                            {"B", 1},
                                                            {"KB", 1000},
                                                            {"MB", 1000 * 1000},
                                                            {"GB", 1000 * 1000 * 1000},
                                                            {"KiB", 1024},
                                                            {"MiB", 1024 * 1024},
                                                            {"GiB", 1024ull * 1024 * 1024}};
  if (ec == std::errc() && end != text.data() && value > 0) {
    for (const auto& [name, scale] : kUnits) {
      if (unit == name && value <= UINT64_MAX / scale) return value * scale;
    }
  }
  throw Error("size '" + text +
              "' is not a positive number of bytes with an optional unit (B, KB, MB, GB, KiB, "
              "MiB, GiB)");
}

}  // namespace tessera::cli
