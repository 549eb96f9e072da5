// Hugging Face folders (config.json, safetensors single or sharded, tokenizer.json).
#include <tessera/core/error.hpp>
#include <tessera/core/model_source.hpp>

namespace tessera {

LoadedModel load_hf_model(const std::filesystem::path& path) {
  throw ModelError("'" + path.string() + "': reading Hugging Face models is not implemented yet");
}

}  // namespace tessera
