#include "model_folder.hpp"

#include <tessera/engine/error.hpp>
#include <tessera/formats/safetensors.hpp>
#include <tessera/tools/staging_folder.hpp>

#include <fstream>
#include <iostream>
#include <string>

namespace tessera::cli {
namespace {

namespace fs = std::filesystem;

// The folder whose tokenizer files travel with the model: a Hugging Face source's own folder,
// or a manifest's folder when it holds tokenizer.json.
fs::path tokenizer_folder(const LoadedModel& model) {
  std::error_code ec;
  if (model.format == ModelFormat::kHuggingFace) {
    return fs::is_directory(model.path, ec) ? model.path : model.path.parent_path();
  }
  if (model.format == ModelFormat::kManifest) {
    if (model.manifest.weights.format == "hf") return model.manifest.weights.path;
    fs::path folder = model.manifest.source.parent_path();
    if (fs::exists(folder / "tokenizer.json", ec)) return folder;
  }
  return {};
}

}  // namespace

TokenizerFiles tokenizer_files(const LoadedModel& model) {
  TokenizerFiles files;
  files.source = tokenizer_folder(model);
  files.tokenizer = model.tokenizer;
  files.chat_template = model.chat_template;
  return files;
}

void note_tokenizer(const LoadedModel& model, const std::string& why_not_written) {
  if (why_not_written.empty()) return;
  std::cerr << "note: the " << to_string(model.format) << " tokenizer was not written ("
            << why_not_written << "); "
            << (model.chat_template.empty() ? "nothing of it is written"
                                            : "only its chat template is written")
            << "\n";
}

uint64_t write_manifest_folder(
    const fs::path& destination, const LoadedModel& model, const WeightStore& weights,
    std::optional<ts_dtype> dtype, bool overwrite,
    const std::vector<std::pair<std::string, std::string>>& extra_files) {
  WeightStore out;
  uint64_t bytes = 0;
  for (const auto& [name, tensor] : weights.all()) {
    const bool convert = dtype && tensor.dtype() != *dtype;
    out.add(name, convert ? tensor.to(*dtype) : tensor);
    bytes += out.get(name).bytes();
  }
  Manifest manifest = model.manifest;
  manifest.source.clear();
  manifest.weights.format = "safetensors";
  manifest.weights.path = "model.safetensors";  // relative: the folder can move
  manifest.weights.seed = 0;

  StagingFolder staging(destination, overwrite);
  write_safetensors(staging.path() / "model.safetensors", out, {{"format", "pt"}});
  {
    std::ofstream file(staging.path() / "manifest.toml");
    file << to_toml(manifest);
    file.flush();
    if (!file) throw Error("cannot write " + (staging.path() / "manifest.toml").string());
  }
  for (const auto& [name, contents] : extra_files) {
    std::ofstream file(staging.path() / name, std::ios::binary);
    file << contents;
    file.flush();
    if (!file) throw Error("cannot write " + (staging.path() / name).string());
  }
  std::string why_not_written;
  write_tokenizer_files(staging.path(), tokenizer_files(model), &why_not_written);
  note_tokenizer(model, why_not_written);
  staging.commit();
  return bytes;
}

}  // namespace tessera::cli
