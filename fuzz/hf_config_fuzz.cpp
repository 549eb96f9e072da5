// libFuzzer target for config.json -> Manifest (hf_config.hpp). Any input must either be
// refused with tessera::ModelError or give a manifest that
//   - the manifest parser accepts again after to_toml (same layers), and
//   - when config.json can express it, writes back to a config.json that reads as the same
//     layers.
// Anything else (another exception, a crash, a sanitizer report, a broken property) is a bug.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <tessera/engine/error.hpp>
#include <tessera/engine/manifest.hpp>
#include <tessera/formats/hf_config.hpp>
#include <vector>

namespace {

// Each layer's kinds with the values its blocks receive.
std::vector<std::string> effective_layers(const tessera::Manifest& m) {
  std::vector<std::string> out;
  for (const tessera::LayerSpec& layer : m.layers) {
    std::string text = layer.attention.kind + "|" + layer.ffn.kind;
    for (const char* key : {"kv_heads", "intermediate_size"}) {
      const tessera::BlockSpec& block =
          std::string(key) == "kv_heads" ? layer.attention : layer.ffn;
      if (block.kind != "gqa" && block.kind != "swiglu") continue;
      const tessera::ParamList params = m.block_params(block);
      const tessera::ParamValue* value = params.find(key);
      if (value == nullptr) __builtin_trap();
      text += "|" + std::to_string(std::get<int64_t>(*value));
    }
    out.push_back(text);
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  tessera::HfConfig config;
  try {
    config = tessera::parse_hf_config(text, "config.json");
  } catch (const tessera::ModelError&) {
    return 0;
  }
  const std::vector<std::string> layers = effective_layers(config.manifest);
  config.manifest.weights.path = "model";  // the reader fills in the folder
  try {
    const tessera::Manifest back =
        tessera::parse_manifest(tessera::to_toml(config.manifest), "fuzz.toml", ".");
    if (effective_layers(back) != layers) __builtin_trap();
  } catch (const tessera::ManifestError&) {
    __builtin_trap();  // a config we accept must make a valid manifest
  }
  std::string written;
  try {
    written = tessera::hf_config_json(config.manifest);
  } catch (const tessera::ModelError&) {
    return 0;  // e.g. a block intermediate_size that no ffn_mult gives
  }
  try {
    const tessera::HfConfig again = tessera::parse_hf_config(written, "written.json");
    if (effective_layers(again.manifest) != layers) __builtin_trap();
    if (!(again.manifest.model.rope_scaling == config.manifest.model.rope_scaling)) {
      __builtin_trap();
    }
  } catch (const tessera::ModelError&) {
    __builtin_trap();  // what we write we must read
  }
  return 0;
}
