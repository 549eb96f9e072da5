#include <tessera/engine/error.hpp>
#include <tessera/formats/decoder_weights.hpp>
#include <tessera/formats/safetensors.hpp>
#include <tessera/plugin.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <fstream>

namespace tessera {
namespace fs = std::filesystem;

namespace {

// config.json's "<kind>_*" keys as parameters, unless the caller set them.
void add_config_params(const fs::path& file, const std::string& kind, ParamList& params) {
  std::ifstream in(file);
  if (!in) throw Error(file.string() + ": cannot be read");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(in);
  } catch (const nlohmann::json::parse_error& e) {
    throw Error(file.string() + ": not valid JSON (" + e.what() + ")");
  }
  if (!j.is_object()) throw Error(file.string() + ": expected a JSON object");
  const std::string prefix = kind + "_";
  for (const auto& [key, value] : j.items()) {
    if (key.rfind(prefix, 0) != 0 || params.find(key) != nullptr) continue;
    if (value.is_boolean())
      params.set(key, value.get<bool>());
    else if (value.is_number_integer())
      params.set(key, value.get<int64_t>());
    else if (value.is_number())
      params.set(key, value.get<double>());
    else if (value.is_string())
      params.set(key, value.get<std::string>());
    else if (!value.is_null())
      params.set(key, value.dump());
  }
}

}  // namespace

DecoderWeights::DecoderWeights(const fs::path& path, const std::string& kind, ParamList& params,
                               const Tensor* lm_head)
    : path_(path), lm_head_(lm_head) {
  std::error_code ec;
  std::vector<fs::path> files;
  if (fs::is_directory(path, ec)) {
    for (const fs::directory_entry& e : fs::directory_iterator(path, ec))
      if (e.path().extension() == ".safetensors") files.push_back(e.path());
    std::sort(files.begin(), files.end());
    if (files.empty())
      throw Error("decoder weights " + path.string() +
                  ": the folder holds no .safetensors file; expected the decoder's tensors "
                  "(e.g. medusa_lm_head.safetensors)");
    if (fs::exists(path / "config.json", ec)) add_config_params(path / "config.json", kind, params);
  } else if (fs::is_regular_file(path, ec)) {
    files.push_back(path);
  } else {
    throw Error("decoder weights " + path.string() +
                ": no such file or folder; expected a folder of .safetensors files or one file");
  }
  for (const fs::path& f : files) {
    WeightStore part = read_safetensors(f);
    for (const auto& [name, tensor] : part.all()) {
      if (store_.has(name))
        throw Error("decoder weights " + path.string() + ": tensor '" + name + "' is in " +
                    store_.origin(name) + " and again in " + f.filename().string());
      store_.add(name, tensor);
      store_.set_origin(name, f.filename().string());
    }
  }
  c_.ctx = this;
  c_.get = &DecoderWeights::get;
}

int DecoderWeights::get(void* ctx, const char* name, ts_tensor* out, ts_error* err) {
  const auto* self = static_cast<const DecoderWeights*>(ctx);
  if (name == nullptr || out == nullptr) {
    sdk::set_error(err, "decoder weights: get called with a NULL name or output");
    return TS_ERROR;
  }
  if (self->store_.has(name)) {
    *out = self->store_.get(name).view();
    return TS_OK;
  }
  if (std::string(name) == "lm_head.weight" && self->lm_head_ != nullptr) {
    *out = self->lm_head_->view();
    return TS_OK;
  }
  sdk::set_error(err, "decoder weights " + self->path_.string() + " hold no tensor '" + name + "'");
  return TS_ERROR;
}

}  // namespace tessera
