// Picks the reader for a model path and, for manifests, loads the weights they name.
#include <tessera/engine/error.hpp>
#include <tessera/engine/init_random.hpp>
#include <tessera/formats/gguf_model.hpp>
#include <tessera/formats/hf_model.hpp>
#include <tessera/formats/model_source.hpp>
#include <tessera/formats/safetensors.hpp>

namespace fs = std::filesystem;

namespace tessera {

std::string_view to_string(ModelFormat format) {
  switch (format) {
    case ModelFormat::kManifest:
      return "manifest";
    case ModelFormat::kGguf:
      return "gguf";
    case ModelFormat::kHuggingFace:
      return "hf";
  }
  return "unknown";
}

ModelFormat detect_model_format(const fs::path& path) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    if (fs::exists(path / "manifest.toml")) return ModelFormat::kManifest;
    if (fs::exists(path / "config.json")) return ModelFormat::kHuggingFace;
    throw ModelError("model folder '" + path.string() +
                     "' holds neither manifest.toml nor config.json; expected a manifest "
                     "(.toml), a GGUF file (.gguf) or a Hugging Face folder (config.json)");
  }
  if (!fs::exists(path, ec)) throw ModelError("model '" + path.string() + "' does not exist");
  const std::string ext = path.extension().string();
  if (ext == ".toml") return ModelFormat::kManifest;
  if (ext == ".gguf") return ModelFormat::kGguf;
  if (path.filename() == "config.json") return ModelFormat::kHuggingFace;
  throw ModelError("model '" + path.string() +
                   "' is not a known kind of model; expected a manifest (.toml), a GGUF file "
                   "(.gguf), a Hugging Face folder or its config.json");
}

LoadedModel open_model(const fs::path& path) {
  switch (detect_model_format(path)) {
    case ModelFormat::kGguf:
      return load_gguf_model(path);
    case ModelFormat::kHuggingFace:
      return load_hf_model(path);
    case ModelFormat::kManifest:
      break;
  }
  LoadedModel out;
  out.format = ModelFormat::kManifest;
  out.path = path;
  out.manifest = load_manifest(fs::is_directory(path) ? path / "manifest.toml" : path);
  out.weights = load_weights(out.manifest);
  out.weights.refuse_unread =
      out.manifest.weights.format != "random" && !out.manifest.weights.allow_unread;
  // A manifest over a GGUF file's weights also gets that file's tokenizer and chat template.
  if (out.manifest.weights.format == "gguf") {
    attach_gguf_tokenizer(GgufFile::open(out.manifest.weights.path), out);
  }
  // One over a Hugging Face folder gets the folder's tokenizer files; so does one with
  // tokenizer.json next to it (what `tessera convert --to manifest` writes).
  const fs::path& weights_path = out.manifest.weights.path;
  const fs::path manifest_folder = out.manifest.source.parent_path();
  std::error_code ec;
  if (out.manifest.weights.format == "hf") {
    attach_hf_tokenizer(
        fs::is_directory(weights_path, ec) ? weights_path : weights_path.parent_path(), out);
  } else if (out.manifest.weights.format != "gguf" &&
             fs::exists(manifest_folder / "tokenizer.json", ec)) {
    attach_hf_tokenizer(manifest_folder, out);
  }
  return out;
}

WeightStore load_weights(const Manifest& m, const PluginRegistry* registry) {
  if (m.weights.format == "safetensors") return read_safetensors(m.weights.path);
  if (m.weights.format == "gguf") return load_gguf_weights(m.weights.path);
  if (m.weights.format == "hf") return load_hf_weights(m.weights.path);
  if (m.weights.format == "random") {
    if (registry != nullptr) return init_random_weights(m, *registry, m.weights.seed);
    // What to draw is what the blocks declare, known once their plugins are: the model
    // draws them when it is built with this (empty) store.
    WeightStore deferred;
    deferred.source = "random weights (seed " + std::to_string(m.weights.seed) + ")";
    return deferred;
  }
  throw ModelError((m.source.empty()
                        ? (m.model.name.empty() ? std::string("<manifest>") : m.model.name)
                        : m.source.string()) +
                   ": weights format '" + m.weights.format +
                   "' is not supported; expected \"safetensors\", \"gguf\", \"hf\" or \"random\"");
}

}  // namespace tessera
